"""Image samples -> a training/inference batch in the flat contract of the 3D batches.

`collate_flat(samples)` is `collate_images` (docs/images.md "Batch") with every per-pixel
key flattened to the real pixels of all images, in (image, row, column) order, padding left
out - the rows `pcseg.weak`, the methods and the metrics work on:

    image         float32 [B, 3, H, W]  0..1, zero-padded bottom/right (the network's input)
    label, weak_label, pseudo_label, instance
                  int64   [M]           M = sum of H_i * W_i (pseudo_label / instance only
                                        when every sample has one)
    batch         int64   [M]           image index of each pixel (the group ids)
    offset        int64   [B]           cumulative pixel counts, offset[-1] == M
    pixel_index   int64   [M]           only when some image is padded: the pixel's row in
                                        the padded [B*H*W] grid (`ImageSegmentor` gathers
                                        its logits through it)
    sizes, names                        as collate_images

Padding is left out rather than marked IGNORE: an IGNORE pixel is an *unlabelled* pixel to
the methods, so padding would enter DARS histograms, consistency and cross terms.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from pcseg.data.images.collate import collate_images
from pcseg.data.images.source import ImageSample

PIXEL_BATCH_KEYS = ("label", "weak_label", "pseudo_label", "instance")


def padded_pixel_index(sizes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """int64 [M]: rows of the real pixels in a padded [B, H, W] grid; sizes int64 [B, 2] (H_i, W_i)."""
    rows = []
    for i, (h, w) in enumerate(sizes.tolist()):
        y = torch.arange(h).unsqueeze(1) * width
        x = torch.arange(w).unsqueeze(0)
        rows.append((i * height * width + y + x).reshape(-1))
    return torch.cat(rows)


def collate_flat(samples: Sequence[ImageSample]) -> dict[str, Any]:
    """Stack `samples` and flatten their per-pixel keys (see the module docstring)."""
    batch = collate_images(samples)
    num, _, height, width = batch["image"].shape
    sizes = batch["sizes"]
    padded = bool((sizes != torch.tensor([height, width])).any())
    index = padded_pixel_index(sizes, height, width) if padded else None
    for key in PIXEL_BATCH_KEYS:
        if key in batch:
            flat = batch[key].reshape(-1)
            batch[key] = flat if index is None else flat[index]
    counts = sizes[:, 0] * sizes[:, 1]
    batch["batch"] = torch.repeat_interleave(torch.arange(num), counts)
    batch["offset"] = torch.cumsum(counts, 0)
    if index is not None:
        batch["pixel_index"] = index
    return batch
