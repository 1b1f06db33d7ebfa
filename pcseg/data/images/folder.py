"""Generic folder layouts: an image folder, a mask folder and a class YAML.

    folder_source(images/, masks/, "camvid" or "my_classes.yaml", mask_suffix="_P")
    mmseg_source(root, "loveda")            # root/img_dir[/split], root/ann_dir[/split]

Masks are matched to images by file stem (+ `mask_suffix`, any image extension). The label
rule comes from the class YAML: `mask_encoding: index` (default) maps raw values through the
classes' `id`s (or takes them as class indices, with `raw_ignore`), `rgb` maps each pixel's
colour to the class of that `color` (ISPRS Potsdam/Vaihingen originals); anything else -> IGNORE.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pcseg.data.images.io import map_raw_ids, rgb_to_label
from pcseg.data.images.source import FileImageSource, ImageEntry, LabelRule
from pcseg.data.meta import DatasetMeta, load_dataset_meta

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
MASK_ENCODINGS = ("index", "rgb")


def label_rule(meta: DatasetMeta, encoding: str | None = None) -> LabelRule:
    """The raw-mask -> class-index rule of `meta` (`encoding` overrides its `mask_encoding`)."""
    encoding = encoding or meta.extra.get("mask_encoding", "index")
    if encoding not in MASK_ENCODINGS:
        raise ValueError(f"dataset {meta.name}: mask_encoding {encoding!r}; expected one of {MASK_ENCODINGS}")

    def rule(raw: np.ndarray, source: str) -> np.ndarray:
        if encoding == "rgb":
            if raw.ndim != 3:
                raise ValueError(f"{source}: mask_encoding 'rgb' but the mask has one channel")
            return rgb_to_label(raw, meta.colors)
        if raw.ndim != 2:
            raise ValueError(f"{source}: an RGB mask, but dataset {meta.name} expects index masks "
                             "(mask_encoding: index); pass mask_encoding='rgb' for colour-coded masks")
        return map_raw_ids(raw, meta, source)

    return rule


def _find(folder: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def folder_source(image_dir: str | os.PathLike, mask_dir: str | os.PathLike | None, classes: str,
                  mask_suffix: str = "", mask_encoding: str | None = None) -> FileImageSource:
    """Every image in `image_dir` (sorted by name) with its mask `<stem><mask_suffix>.*` in
    `mask_dir`; `classes` is a shipped dataset name or a class YAML path. `mask_dir=None`
    serves unlabelled images. An image without its mask is an error naming both paths."""
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder {image_dir} does not exist")
    meta = load_dataset_meta(classes)
    entries = {}
    for image in sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS):
        mask = None
        if mask_dir is not None:
            mask = _find(Path(mask_dir), image.stem + mask_suffix)
            if mask is None:
                raise FileNotFoundError(f"image {image} has no mask {Path(mask_dir) / (image.stem + mask_suffix)}"
                                        f".{{{','.join(e[1:] for e in IMAGE_EXTENSIONS)}}}")
        entries[image.stem] = ImageEntry(image=image, mask=mask)
    if not entries:
        raise FileNotFoundError(f"image folder {image_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return FileImageSource(entries, meta, label_rule(meta, mask_encoding), where=str(image_dir))


def mmseg_source(root: str | os.PathLike, classes: str, split: str | None = None,
                 mask_encoding: str | None = None) -> FileImageSource:
    """mmsegmentation layout: `root/img_dir[/split]` + `root/ann_dir[/split]` (LoveDA,
    Potsdam, Vaihingen, ...), masks named like their images."""
    root = Path(root)
    sub = (lambda d: root / d / split) if split else (lambda d: root / d)
    return folder_source(sub("img_dir"), sub("ann_dir"), classes, mask_encoding=mask_encoding)


def camvid_source(root: str | os.PathLike) -> FileImageSource:
    """CamVid: `images/<frame>.png` + `labels/<frame>_P.png`; `codes.txt`, when present, must
    list the same classes as datasets/camvid.yaml (so index masks mean what we think)."""
    root = Path(root)
    meta = load_dataset_meta("camvid")
    codes = root / "codes.txt"
    if codes.is_file():
        names = [line.strip() for line in codes.read_text(encoding="utf-8").splitlines() if line.strip()]
        expected = {i: n for n, i in zip(meta.class_names, meta.raw_ids or ())}
        for i, name in enumerate(names):
            if i in expected and expected[i] != name:
                raise ValueError(f"{codes}: line {i + 1} is {name!r}, datasets/camvid.yaml has id {i} = {expected[i]!r}")
    return folder_source(root / "images", root / "labels", "camvid", mask_suffix="_P")
