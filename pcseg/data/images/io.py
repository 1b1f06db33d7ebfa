"""Image and mask files -> arrays, and raw mask values -> class indices.

    image  float32 [H, W, 3] in 0..1
    label  int64   [H, W]    class index, IGNORE (-1) where unknown
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from pcseg.data.contract import IGNORE
from pcseg.data.meta import DatasetMeta


def read_image(path: str | os.PathLike) -> np.ndarray:
    """float32 [H, W, 3] in 0..1 (grey and palette images are converted to RGB)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist")
    with Image.open(path) as im:
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return rgb.astype(np.float32) / 255.0


def read_mask_values(path: str | os.PathLike) -> np.ndarray:
    """The raw values of a mask file: int64 [H, W] for index/palette PNGs (mode L, P, I;16),
    uint8 [H, W, 3] for RGB-coded masks.

    A palette PNG (mode P) is read as its palette *indices*, never through its colours.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask {path} does not exist")
    with Image.open(path) as im:
        if im.mode in ("RGB", "RGBA"):
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
        if im.mode not in ("L", "P", "I", "I;16"):
            raise ValueError(f"mask {path}: PIL mode {im.mode!r}; expected an index mask (L, P, I;16) or RGB")
        return np.asarray(im).astype(np.int64)


def map_raw_ids(raw: np.ndarray, meta: DatasetMeta, source: str) -> np.ndarray:
    """int64 [H, W]: raw mask ids -> class index through the dataset's class `id`s.

    Ids that are no class's `id` become IGNORE. Without `id`s the raw value is the class
    index itself; then only values listed in the YAML's `raw_ignore` may fall outside
    0..K-1, anything else is an error naming `source`.
    """
    raw = np.asarray(raw, dtype=np.int64)
    if raw.size and raw.min() < 0:
        raise ValueError(f"{source}: negative mask value {int(raw.min())}")
    if meta.raw_ids is not None:
        table = meta.raw_to_label(int(raw.max()) if raw.size else 0)
        return table[raw]
    ignored = np.isin(raw, np.asarray(meta.extra.get("raw_ignore", []), dtype=np.int64))
    bad = ~ignored & (raw >= meta.num_classes)
    if bad.any():
        y, x = np.argwhere(bad)[0]
        raise ValueError(f"{source}: mask value {int(raw[y, x])} at (row {y}, col {x}) is not a class of "
                         f"{meta.name} (0..{meta.num_classes - 1}) nor in raw_ignore "
                         f"{meta.extra.get('raw_ignore', [])}")
    return np.where(ignored, IGNORE, raw)


def rgb_to_label(rgb: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """int64 [H, W]: RGB-coded mask uint8 [H, W, 3] -> index of the class whose colour
    (uint8 [K, 3]) matches exactly; any other colour (e.g. black boundaries) -> IGNORE."""
    rgb = np.asarray(rgb, dtype=np.int64)
    colors = np.asarray(colors, dtype=np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    class_codes = (colors[:, 0] << 16) | (colors[:, 1] << 8) | colors[:, 2]
    if len(np.unique(class_codes)) != len(class_codes):
        raise ValueError("rgb_to_label: two classes share a colour, RGB masks would be ambiguous")
    order = np.argsort(class_codes)
    pos = np.clip(np.searchsorted(class_codes[order], codes), 0, len(order) - 1)
    found = class_codes[order][pos] == codes
    return np.where(found, order[pos], IGNORE).astype(np.int64)
