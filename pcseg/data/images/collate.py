"""Image samples -> one batch of torch tensors (docs/images.md "Batch").

Batch keys:
    image        float32 [B, 3, H, W]  0..1, zero-padded (bottom/right) to the largest H, W
    label        int64   [B, H, W]     dense ground truth (evaluation only); IGNORE if absent/padding
    weak_label   int64   [B, H, W]     training labels; IGNORE if absent/padding
    pseudo_label int64   [B, H, W]     only if every sample has one
    instance     int64   [B, H, W]     only if every sample has one (-1 = none/padding)
    batch        int64   [B]           image index, the group id of all its pixels when flattened
    sizes        int64   [B, 2]        (H, W) of each image before padding
    names        list[str]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from pcseg.data.contract import IGNORE
from pcseg.data.images.source import ImageSample

_LABEL_KEYS = ("label", "weak_label")
_OPTIONAL_KEYS = ("pseudo_label", "instance")


def _pad(array: np.ndarray, height: int, width: int, fill: float) -> np.ndarray:
    out = np.full((height, width) + array.shape[2:], fill, dtype=array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out


def collate_images(samples: Sequence[ImageSample]) -> dict[str, Any]:
    """Stack samples (see the module docstring); images of different sizes are padded."""
    if not samples:
        raise ValueError("collate_images: no samples")
    sizes = [s["image"].shape[:2] for s in samples]
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    images = np.stack([_pad(np.asarray(s["image"], dtype=np.float32), height, width, 0.0) for s in samples])
    batch: dict[str, Any] = {"image": torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()}
    for key in _LABEL_KEYS:
        batch[key] = torch.from_numpy(np.stack([
            _pad(np.asarray(s[key], dtype=np.int64), height, width, IGNORE) if key in s
            else np.full((height, width), IGNORE, dtype=np.int64) for s in samples]))
    for key in _OPTIONAL_KEYS:
        if all(key in s for s in samples):
            fill = -1 if key == "instance" else IGNORE
            batch[key] = torch.from_numpy(np.stack([_pad(np.asarray(s[key], dtype=np.int64), height, width, fill)
                                                    for s in samples]))
    batch["batch"] = torch.arange(len(samples), dtype=torch.int64)
    batch["sizes"] = torch.tensor(sizes, dtype=torch.int64).reshape(len(samples), 2)
    batch["names"] = [str(s.get("name", f"image{i}")) for i, s in enumerate(samples)]
    return batch
