"""The image source every reader returns: named (image, mask) files -> image samples.

An image sample is a dict:
    image     float32 [H, W, 3] 0..1
    label     int64   [H, W]    class index, IGNORE (-1) where unknown
    instance  int64   [H, W]    object id, -1 where none (only where the dataset has them)
    name      str

Like the 3D scene sources it has `names()` and `load(name)`, so protocol makers and
loaders treat both alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from pcseg.data.images.io import read_image, read_mask_values
from pcseg.data.meta import DatasetMeta

ImageSample = dict[str, Any]

# raw mask values (int64 [H, W] or uint8 [H, W, 3]), the mask's path for messages -> label
LabelRule = Callable[[np.ndarray, str], np.ndarray]
# raw instance-file values, path -> int64 [H, W] object ids (-1 = none)
InstanceRule = Callable[[np.ndarray, str], np.ndarray]


@dataclass(frozen=True)
class ImageEntry:
    """Where one image's files are; `mask`/`instance` None when the dataset has none."""

    image: Path
    mask: Path | None = None
    instance: Path | None = None


class FileImageSource:
    """Images and masks on disk, decoded by the dataset's label rule.

    entries: name -> ImageEntry (names() keeps this order); meta: the dataset's facts;
    label_rule: turns raw mask values into class indices.
    """

    def __init__(self, entries: dict[str, ImageEntry], meta: DatasetMeta, label_rule: LabelRule,
                 instance_rule: InstanceRule | None = None, where: str = "") -> None:
        self._entries = dict(entries)
        self.meta = meta
        self._label_rule = label_rule
        self._instance_rule = instance_rule
        self._where = where

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def names(self) -> list[str]:
        return list(self._entries)

    def image_size(self, name: str) -> tuple[int, int]:
        """(H, W) read from the image header, without decoding the pixels."""
        with Image.open(self._entry(name).image) as im:
            return im.height, im.width

    def _entry(self, name: str) -> ImageEntry:
        if name not in self._entries:
            raise KeyError(f"image {name!r} is not in {self.meta.name} {self._where} "
                           f"({len(self._entries)} images, e.g. {self.names()[:3]})")
        return self._entries[name]

    def load(self, name: str) -> ImageSample:
        entry = self._entry(name)
        image = read_image(entry.image)
        sample: ImageSample = {"image": image, "name": name}
        if entry.mask is not None:
            label = self._label_rule(read_mask_values(entry.mask), str(entry.mask))
            if label.shape != image.shape[:2]:
                raise ValueError(f"mask {entry.mask} is {label.shape[1]}x{label.shape[0]} but image "
                                 f"{entry.image} is {image.shape[1]}x{image.shape[0]}")
            sample["label"] = label
        if entry.instance is not None and self._instance_rule is not None:
            sample["instance"] = self._instance_rule(read_mask_values(entry.instance), str(entry.instance))
        return sample


def read_name_list(path: Path) -> list[str]:
    """Names from a split list (one a line; VOC's SBD lists may hold 'img mask' pairs)."""
    if not path.is_file():
        raise FileNotFoundError(f"split list {path} does not exist")
    names = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            names.append(Path(line.split()[0]).stem)
    return names
