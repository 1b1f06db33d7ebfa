"""`pcseg predict CHECKPOINT IMAGE... --out DIR [--format png,overlay,npy] [--votes 1|2]` for
checkpoints of image runs. Per input image (any format PIL reads):
- png: `<stem>.png`, a palette PNG whose pixel values are the predicted class indices and
  whose palette holds the class colours of datasets/<dataset>.yaml;
- overlay: `<stem>_overlay.png`, the image blended half and half with the class colours;
- npy: `<stem>_label.npy` int64 [H, W] and `<stem>_confidence.npy` float32 [H, W].
Large images are predicted tile by tile when the run tiles (`data.images.patch`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from torch import nn

from pcseg.data.images.io import read_image
from pcseg.data.meta import DatasetMeta
from pcseg.engine.build_images import image_inference
from pcseg.engine.trainer import make_logits_fn

IMAGE_FORMATS = ("png", "overlay", "npy")
DEFAULT_IMAGE_FORMATS = "png,overlay"
OVERLAY_ALPHA = 0.5


def write_palette_png(path: Path, label: np.ndarray, colors: np.ndarray) -> None:
    """label int [H, W] in 0..K-1 (K <= 256) -> mode-P PNG, palette entry k = colors[k] uint8 [K, 3]."""
    if len(colors) > 256:
        raise ValueError(f"a palette PNG holds at most 256 classes, the dataset has {len(colors)}")
    image = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[: len(colors)] = colors
    image.putpalette(palette.reshape(-1).tolist())
    image.save(path)


def overlay(image: np.ndarray, label: np.ndarray, colors: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """uint8 [H, W, 3]: (1 - alpha) * image float [H, W, 3] 0..1 + alpha * class colour of label [H, W]."""
    blend = (1 - alpha) * np.asarray(image, dtype=np.float64) + alpha * colors[label].astype(np.float64) / 255.0
    return np.clip(np.round(blend * 255.0), 0, 255).astype(np.uint8)


def predict_images(args: argparse.Namespace, model: nn.Module, cfg: DictConfig, meta: DatasetMeta,
                   device: torch.device) -> int:
    """Label every image of `args.inputs` with `model` (eval mode) into `args.out`."""
    formats = [f.strip() for f in (args.format or DEFAULT_IMAGE_FORMATS).split(",") if f.strip()]
    if not formats or any(f not in IMAGE_FORMATS for f in formats):
        print(f"pcseg predict: --format {args.format!r}: an image checkpoint writes a comma list of "
              f"{', '.join(IMAGE_FORMATS)}", file=sys.stderr)
        return 2
    to_batch, predictor = image_inference(cfg)
    fn = make_logits_fn(lambda batch: model(batch)["logits"], to_batch, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for item in args.inputs:
        path = Path(item)
        try:
            image = read_image(path)
            prob = predictor(fn, {"image": image, "name": path.stem}, votes=args.votes)
        except (FileNotFoundError, UnidentifiedImageError, ValueError) as err:
            print(f"pcseg predict: {path}: {err}", file=sys.stderr)
            return 2
        height, width = image.shape[:2]
        label = prob.argmax(axis=1).reshape(height, width).astype(np.int64)
        confidence = prob.max(axis=1).reshape(height, width).astype(np.float32)
        if "png" in formats:
            write_palette_png(out / f"{path.stem}.png", label, meta.colors)
        if "overlay" in formats:
            Image.fromarray(overlay(image, label, meta.colors)).save(out / f"{path.stem}_overlay.png")
        if "npy" in formats:
            np.save(out / f"{path.stem}_label.npy", label)
            np.save(out / f"{path.stem}_confidence.npy", confidence)
        counts = np.bincount(label.reshape(-1), minlength=meta.num_classes)
        top = ", ".join(f"{meta.class_names[c]} {counts[c] / label.size:.0%}" for c in np.argsort(-counts)[:3])
        print(f"{path}: {width}x{height} -> {out}/{path.stem}* ({top})")
    return 0
