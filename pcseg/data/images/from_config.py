"""Image sources and weak-label protocols as a config describes them (`data.modality: images`).

`data.source` names the reader, `data.images.*` its paths (docs/images.md "Training"):

    synthetic   SyntheticSceneSource(train_images | val_images, synthetic_seed (+1 for val), height, width)
    voc         voc_source(root, split)                         root = the VOC2012 folder
    cityscapes  cityscapes_source(root, split)
    isaid       ISAIDSource(root/image_dir, root/annotations)    paths with {split} filled in
    folder      folder_source(root/image_dir, root/mask_dir, data.dataset, mask_suffix, mask_encoding)
    mmseg       mmseg_source(root, data.dataset, split, mask_encoding)

`data.images.patch` serves the training images as `TiledSource` tiles (they are then the
samples, of the protocol too); validation images stay whole.
Protocols: `images:<f>` (f = 0.0625 or 1/16), `count:N`, `ratio:R`, `per-class:N`,
`clicks:N` on the row-major pixels, `tags` (image-level labels), or a protocol file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np
from omegaconf import DictConfig

from pcseg.data.images.isaid import ISAIDSource, TiledSource
from pcseg.data.images.protocols import image_fraction_protocol, image_tag_protocol, voc_fraction_protocol
from pcseg.data.meta import load_dataset_meta
from pcseg.weak.protocol import Protocol, SceneSource, make_protocol
from pcseg.weak.protocol_file import load_protocol

IMAGE_SOURCES = ("synthetic", "voc", "cityscapes", "isaid", "folder", "mmseg")
# validation scenes are generated from synthetic_seed + 1: image seeds are SeedSequence([seed, i]),
# so the two sets never share an image
VAL_SEED_OFFSET = 1
# sources whose classes are fixed: data.dataset must name that dataset
_FIXED_DATASET = {"synthetic": "synthetic_scenes", "voc": "voc", "cityscapes": "cityscapes", "isaid": "isaid"}
VOC_MODES = ("blended", "classic")


def split_name(cfg: DictConfig, split: str) -> str:
    """The dataset split `split` ("train" / "val") reads: data.train_split / data.val_split."""
    return cfg.data.train_split if split == "train" else cfg.data.val_split


def _root(cfg: DictConfig) -> Path:
    root = cfg.data.images.root
    if not root:
        raise ValueError(f"config key 'data.images.root': data.source={cfg.data.source} needs the dataset folder")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"config key 'data.images.root': {root} is not a folder")
    return root


def _path(cfg: DictConfig, key: str, split: str) -> Path:
    template = cfg.data.images[key]
    try:
        return _root(cfg) / template.format(split=split)
    except (KeyError, IndexError):
        raise ValueError(f"config key 'data.images.{key}': {template!r} may only use {{split}}") from None


def _reader(cfg: DictConfig, split: str) -> SceneSource:
    d, im = cfg.data, cfg.data.images
    name = split_name(cfg, split)
    if d.source == "synthetic":
        from pcseg.data.images.synthetic import SyntheticSceneSource
        train = split == "train"
        return SyntheticSceneSource(im.train_images if train else im.val_images,
                                    d.synthetic_seed + (0 if train else VAL_SEED_OFFSET), im.height, im.width)
    if d.source == "voc":
        from pcseg.data.images.voc import voc_source
        return voc_source(_root(cfg), name)
    if d.source == "cityscapes":
        from pcseg.data.images.cityscapes import cityscapes_source
        return cityscapes_source(_root(cfg), name)
    if d.source == "isaid":
        return ISAIDSource(_path(cfg, "image_dir", name), _path(cfg, "annotations", name))
    if d.source == "folder":
        from pcseg.data.images.folder import folder_source
        return folder_source(_path(cfg, "image_dir", name), _path(cfg, "mask_dir", name), d.dataset,
                             im.mask_suffix, im.mask_encoding)
    if d.source == "mmseg":
        from pcseg.data.images.folder import mmseg_source
        return mmseg_source(_root(cfg), d.dataset, name or None, im.mask_encoding)
    raise ValueError(f"config key 'data.source': unknown image source {d.source!r}; valid with "
                     f"data.modality=images: {', '.join(IMAGE_SOURCES)}")


def build_image_source(cfg: DictConfig, split: str) -> SceneSource:
    """The images of `split` ("train" or "val"). With data.images.patch the training images
    are served as tiles; validation keeps whole images (prediction tiles them, see
    `pcseg.engine.image_inference`), so no pixel is counted twice."""
    d = cfg.data
    fixed = _FIXED_DATASET.get(d.source)
    if fixed is not None and load_dataset_meta(d.dataset).name != fixed:
        raise ValueError(f"config key 'data.dataset': data.source={d.source} serves the classes of {fixed!r}, "
                         f"not {d.dataset!r}")
    source = _reader(cfg, split)
    if d.images.patch and split == "train":
        source = TiledSource(source, d.images.patch, d.images.stride)
    return source


def image_source_identity(cfg: DictConfig) -> str:
    """What a protocol made from the config records as the data it was sampled from."""
    d, im = cfg.data, cfg.data.images
    if d.source == "synthetic":
        base = f"synthetic_scenes:{im.train_images}:{d.synthetic_seed}:{im.height}x{im.width}"
    else:
        base = f"{d.source}:{im.root}:{d.train_split}"
    return base + (f"@{im.patch}/{im.stride}" if im.patch else "")


def flat_samples(source: SceneSource) -> Iterable[tuple[str, dict[str, Any]]]:
    """(name, {label, instance} flattened row-major) of every image: the protocol makers' scenes."""
    for name in source.names():
        sample = source.load(name)
        scene = {"label": np.asarray(sample["label"], dtype=np.int64).reshape(-1)}
        if "instance" in sample:
            scene["instance"] = np.asarray(sample["instance"], dtype=np.int64).reshape(-1)
        yield name, scene


def build_image_protocol(cfg: DictConfig, source: SceneSource, spec: Optional[str] = None) -> Optional[Protocol]:
    """`data.protocol` (or `spec`) for the training images: None (every label), a protocol
    file, `images:<f>` (VOC train_aug: the `data.images.voc_mode` split), `tags`, or a pixel spec."""
    spec = cfg.data.protocol if spec is None else spec
    if spec is None:
        return None
    if Path(spec).is_file() or spec.endswith(".npz"):
        return load_protocol(spec)
    d = cfg.data
    kind, _, value = spec.partition(":")
    if kind == "tags":
        return image_tag_protocol(source, image_source_identity(cfg), d.dataset)
    if kind != "images":
        return make_protocol(spec, flat_samples(source), d.protocol_seed, image_source_identity(cfg), d.dataset)
    if d.images.voc_mode not in VOC_MODES:
        raise ValueError(f"config key 'data.images.voc_mode': {d.images.voc_mode!r}; valid: {', '.join(VOC_MODES)}")
    if d.source == "voc" and d.train_split == "train_aug" and not d.images.patch:
        return voc_fraction_protocol(_root(cfg), value, d.protocol_seed, d.images.voc_mode)
    if d.images.voc_mode != "blended":
        raise ValueError("config key 'data.images.voc_mode': 'classic' needs data.source=voc with "
                         "data.train_split=train_aug")
    return image_fraction_protocol(source, value, d.protocol_seed, image_source_identity(cfg), dataset=d.dataset)
