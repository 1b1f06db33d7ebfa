"""PASCAL VOC 2012 segmentation, with SBD's `train_aug` set.

Layout (root = VOC2012 folder):
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png      palette PNG, read as palette indices; 255 = border -> IGNORE
    SegmentationObject/<id>.png     palette PNG, object k = k (0 background, 255 border -> -1)
    SegmentationClassAug/<id>.png   SBD masks (grey index PNGs, same values), for train_aug
    ImageSets/Segmentation/<split>.txt   train | val | trainval | train_aug
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pcseg.data.images.io import map_raw_ids
from pcseg.data.images.source import FileImageSource, ImageEntry, read_name_list
from pcseg.data.meta import load_dataset_meta


def voc_instance(raw: np.ndarray, source: str) -> np.ndarray:
    """int64 [H, W]: SegmentationObject values -> object id, -1 on background and border."""
    raw = np.asarray(raw, dtype=np.int64)
    return np.where((raw == 0) | (raw == 255), -1, raw)


def voc_source(root: str | os.PathLike, split: str | None = None) -> FileImageSource:
    """VOC images of `split` (ImageSets/Segmentation/<split>.txt); `split=None` takes every
    image that has a mask. `train_aug` reads masks from SegmentationClassAug."""
    root = Path(root)
    meta = load_dataset_meta("voc")
    mask_dir = root / ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"VOC root {root}: no {mask_dir.name}/ folder (expected {meta.extra['raw_layout']})")
    if split is None:
        names = sorted(p.stem for p in mask_dir.glob("*.png"))
    else:
        names = read_name_list(root / "ImageSets" / "Segmentation" / f"{split}.txt")
    object_dir = root / "SegmentationObject"
    entries = {}
    for name in names:
        obj = object_dir / f"{name}.png"
        entries[name] = ImageEntry(image=root / "JPEGImages" / f"{name}.jpg", mask=mask_dir / f"{name}.png",
                                   instance=obj if obj.is_file() else None)
    return FileImageSource(entries, meta, lambda raw, src: map_raw_ids(raw, meta, src), voc_instance,
                           where=f"{root} split {split}")
