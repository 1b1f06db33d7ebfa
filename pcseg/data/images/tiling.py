"""Cutting large images into overlapping patches and putting tile predictions back.

Tiles start every `stride` pixels; the last tile of a row/column is moved back so it ends
flush with the image border, so every pixel is covered and no tile is padded. An image
smaller than `patch` along an axis gets one tile of the image's own size there.
Reassembly averages the tiles' logits over overlaps (in float64, so tiles cut from one
array reassemble to exactly that array).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

Box = tuple[int, int, int, int]  # (y0, x0, y1, x1), half-open


def _starts(size: int, patch: int, stride: int) -> list[int]:
    if size <= patch:
        return [0]
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] + patch < size:
        starts.append(size - patch)
    return starts


def tile_boxes(height: int, width: int, patch: int, stride: int) -> list[Box]:
    """Row-major tile boxes covering a `height` x `width` image (see the module docstring)."""
    if patch < 1 or stride < 1:
        raise ValueError(f"tiling: patch ({patch}) and stride ({stride}) must be >= 1")
    if stride > patch:
        raise ValueError(f"tiling: stride {stride} > patch {patch} would leave pixels uncovered")
    boxes = []
    for y0 in _starts(height, patch, stride):
        for x0 in _starts(width, patch, stride):
            boxes.append((y0, x0, min(y0 + patch, height), min(x0 + patch, width)))
    return boxes


def cut_tiles(array: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
    """Copies of `array[y0:y1, x0:x1, ...]` (HW-first arrays: image [H,W,3], label [H,W])."""
    return [np.array(array[y0:y1, x0:x1]) for y0, x0, y1, x1 in boxes]


def reassemble_logits(tiles: Sequence[torch.Tensor], boxes: Sequence[Box], height: int, width: int) -> torch.Tensor:
    """Full-image logits [K, H, W] (dtype of the tiles) from tile logits [K, h_t, w_t]:
    the mean over every tile covering a pixel. Raises if a pixel is covered by no tile."""
    if len(tiles) != len(boxes) or not tiles:
        raise ValueError(f"reassemble_logits: {len(tiles)} tiles for {len(boxes)} boxes")
    k = tiles[0].shape[0]
    total = torch.zeros(k, height, width, dtype=torch.float64, device=tiles[0].device)
    count = torch.zeros(height, width, dtype=torch.float64, device=tiles[0].device)
    for tile, (y0, x0, y1, x1) in zip(tiles, boxes):
        if tuple(tile.shape) != (k, y1 - y0, x1 - x0):
            raise ValueError(f"reassemble_logits: tile of shape {tuple(tile.shape)} for box {(y0, x0, y1, x1)} "
                             f"(expected {(k, y1 - y0, x1 - x0)})")
        total[:, y0:y1, x0:x1] += tile.to(torch.float64)
        count[y0:y1, x0:x1] += 1
    if bool((count == 0).any()):
        raise ValueError("reassemble_logits: the boxes leave some pixels uncovered")
    return (total / count).to(tiles[0].dtype)


def predict_tiled(predict: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, patch: int,
                  stride: int) -> torch.Tensor:
    """Full-image logits [K, H, W] of image float [3, H, W] from `predict`, which maps one
    tile [1, 3, h, w] to logits [1, K, h, w] (e.g. `lambda x: model(x)["logits"]`)."""
    height, width = image.shape[-2:]
    boxes = tile_boxes(height, width, patch, stride)
    tiles = [predict(image[None, :, y0:y1, x0:x1])[0] for y0, x0, y1, x1 in boxes]
    return reassemble_logits(tiles, boxes, height, width)
