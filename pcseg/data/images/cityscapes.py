"""Cityscapes fine annotations -> the 19 trainIds.

Layout: leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png and
gtFine/<split>/<city>/<stem>_gtFine_{labelIds,instanceIds}.png. labelIds map to trainIds
through the class `id`s of datasets/cityscapes.yaml; every other labelId is IGNORE.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pcseg.data.images.io import map_raw_ids
from pcseg.data.images.source import FileImageSource, ImageEntry
from pcseg.data.meta import load_dataset_meta

_IMAGE_SUFFIX = "_leftImg8bit.png"


def cityscapes_instance(raw: np.ndarray, source: str) -> np.ndarray:
    """int64 [H, W]: instanceIds (labelId * 1000 + k for objects, plain labelId for stuff)
    -> the instanceId of object pixels, -1 elsewhere."""
    raw = np.asarray(raw, dtype=np.int64)
    return np.where(raw >= 1000, raw, -1)


def cityscapes_source(root: str | os.PathLike, split: str = "val") -> FileImageSource:
    """Every image of `split` (all cities), named `<city>_<seq>_<frame>`."""
    root = Path(root)
    meta = load_dataset_meta("cityscapes")
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Cityscapes root {root}: no leftImg8bit/{split}/ (expected {meta.extra['raw_layout']})")
    entries = {}
    for image in sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}")):
        stem = image.name[: -len(_IMAGE_SUFFIX)]
        gt = root / "gtFine" / split / image.parent.name
        instance = gt / f"{stem}_gtFine_instanceIds.png"
        entries[stem] = ImageEntry(image=image, mask=gt / f"{stem}_gtFine_labelIds.png",
                                   instance=instance if instance.is_file() else None)
    return FileImageSource(entries, meta, lambda raw, src: map_raw_ids(raw, meta, src), cityscapes_instance,
                           where=f"{root} split {split}")
