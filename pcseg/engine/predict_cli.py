"""`pcseg predict CHECKPOINT INPUT... --out DIR [--format ply,npy,scannet] [--votes K]`.

Per input file: labels and confidences of every original point, written as
- ply: the input's vertex properties (PLY inputs) or x/y/z (others), plus `label`
  (`pred_label` if the input already has one), `confidence` and the class colour (as
  red/green/blue when the input has no colour, else class_red/class_green/class_blue);
- npy: `<stem>_label.npy` int64 [N] and `<stem>_confidence.npy` float32 [N];
- scannet: `<stem>.txt`, one raw dataset id (NYU40 for ScanNet) per line, the benchmark's
  submission format.
Checkpoints of image runs write palette PNGs and overlays instead (`predict_images.py`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from pcseg.data.meta import DatasetMeta
from pcseg.engine import distributed as dist
from pcseg.engine.build import is_images, load_trained, scene_batcher
from pcseg.engine.checkpoint import resolve_checkpoint
from pcseg.engine.inference import predict_scene
from pcseg.engine.trainer import make_logits_fn

FORMATS = ("ply", "npy", "scannet")
DEFAULT_FORMATS = "ply,npy"


def write_ply(path: Path, source: Path, scene: dict, label: np.ndarray, confidence: np.ndarray,
              meta: DatasetMeta) -> None:
    from numpy.lib import recfunctions
    from plyfile import PlyData, PlyElement

    if source.suffix.lower() == ".ply":
        vertex = PlyData.read(str(source))["vertex"].data
    else:
        coord = scene["coord"]
        vertex = np.empty(len(coord), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
        vertex["x"], vertex["y"], vertex["z"] = coord[:, 0], coord[:, 1], coord[:, 2]
    have = set(vertex.dtype.names)
    colour = meta.colors[label]
    prefix = "class_" if {"red", "green", "blue"} <= have else ""
    names = ["pred_label" if "label" in have else "label", "confidence",
             f"{prefix}red", f"{prefix}green", f"{prefix}blue"]
    data = [label.astype(np.int32), confidence.astype(np.float32), colour[:, 0], colour[:, 1], colour[:, 2]]
    out = recfunctions.append_fields(vertex, names, data, usemask=False)
    PlyData([PlyElement.describe(out, "vertex")], text=False, byte_order="<").write(str(path))


def write_scannet(path: Path, label: np.ndarray, meta: DatasetMeta) -> None:
    if meta.raw_ids is None:
        raise ValueError(f"--format scannet needs a dataset with raw ids (e.g. scannet); "
                         f"the checkpoint's dataset {meta.name!r} has none")
    raw = np.asarray(meta.raw_ids, dtype=np.int64)[label]
    path.write_text("\n".join(str(int(v)) for v in raw) + "\n", encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        print(f"pcseg predict: {err}", file=sys.stderr)
        return 2
    device = dist.resolve_device(args.device)
    model, cfg, meta = load_trained(ckpt, device)
    if is_images(cfg):
        from pcseg.engine.predict_images import predict_images
        return predict_images(args, model, cfg, meta, device)
    formats = [f.strip() for f in (args.format or DEFAULT_FORMATS).split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        print(f"pcseg predict: --format {args.format!r}: expected a comma list of {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    if "scannet" in formats and meta.raw_ids is None:
        print(f"pcseg predict: --format scannet needs a dataset with raw ids; {meta.name!r} has none", file=sys.stderr)
        return 2
    fn = make_logits_fn(lambda batch: model(batch)["logits"], scene_batcher(cfg.data.features), device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from pcseg.data.readers.files import load_scene_file
    for item in args.inputs:
        path = Path(item)
        try:
            scene = load_scene_file(path)
        except (ValueError, FileNotFoundError) as err:
            print(f"pcseg predict: {err}", file=sys.stderr)
            return 2
        prob = predict_scene(fn, scene, votes=args.votes, max_points=cfg.train.eval_max_points)
        label = prob.argmax(axis=1).astype(np.int64)
        confidence = prob.max(axis=1).astype(np.float32)
        if "ply" in formats:
            write_ply(out / f"{path.stem}.ply", path, scene, label, confidence, meta)
        if "npy" in formats:
            np.save(out / f"{path.stem}_label.npy", label)
            np.save(out / f"{path.stem}_confidence.npy", confidence)
        if "scannet" in formats:
            write_scannet(out / f"{path.stem}.txt", label, meta)
        counts = np.bincount(label, minlength=meta.num_classes)
        top = ", ".join(f"{meta.class_names[c]} {counts[c] / len(label):.0%}" for c in np.argsort(-counts)[:3])
        print(f"{path}: {len(label)} points -> {out}/{path.stem}.* ({top})")
    return 0
