"""Weak-label protocols for images, in the protocol-file format of pcseg.weak.

An image is a "scene" whose points are its pixels in row-major order (index = y * W + x),
so `pcseg.weak.protocol_file.save_protocol/load_protocol` store these unchanged:

    image_fraction_protocol   a fraction (1/16, 1/8, 1/4, 1/2) of the images fully labelled,
                              the others unlabelled (semi-supervised); spec "images:<f>"
    voc_fraction_protocol     the same on VOC train_aug: "blended" draws the labelled images
                              from all of train_aug, "classic" from the 1,464 train images
    pixel_count_protocol      N labelled pixels per image; spec "count:N"
    image_tag_protocol        image-level tags (classes present) only; spec "tags",
                              tags in `extra["tags"]`, no labelled pixels

Every protocol entry lists all images of the source, so the unlabelled ones keep their
label checksum too. A fully labelled image stores all its non-IGNORE pixel indices
(the format has no "all pixels" marker).
"""
from __future__ import annotations

import os
from fractions import Fraction
from typing import Any, Iterable

import numpy as np

from pcseg.data.contract import IGNORE
from pcseg.data.images.source import ImageSample
from pcseg.data.images.voc import voc_source
from pcseg.weak.protocol import Protocol, SceneSource, apply_protocol, make_entry, make_protocol

VOC_MODES = ("blended", "classic")


def parse_fraction(value: float | str) -> float:
    """0.0625, "0.0625" or "1/16" -> 0.0625; must lie in (0, 1]."""
    try:
        frac = float(Fraction(str(value).strip()))
    except (ValueError, ZeroDivisionError):
        frac = float("nan")
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"labelled-image fraction {value!r}: expected a number or p/q in (0, 1], e.g. 1/16")
    return frac


def flat_label(sample: ImageSample) -> np.ndarray:
    """int64 [H*W]: the sample's label in row-major pixel order (the protocol's point order)."""
    return np.asarray(sample["label"], dtype=np.int64).reshape(-1)


def _flat_scenes(source: SceneSource, names: Iterable[str]) -> Iterable[tuple[str, dict[str, Any]]]:
    for name in names:
        yield name, {"label": flat_label(source.load(name))}


def image_fraction_protocol(source: SceneSource, fraction: float | str, seed: int, source_id: str,
                            pool: list[str] | None = None, dataset: str | None = None) -> Protocol:
    """round(fraction * len(pool)) images of `pool` (default: all of `source`) chosen with
    np.random.default_rng(seed) are fully labelled; every other image of `source` is in
    the protocol with no labelled pixel. `extra["labelled_images"]` lists the chosen ones."""
    frac = parse_fraction(fraction)
    names = source.names()
    pool = sorted(names if pool is None else pool)
    missing = sorted(set(pool) - set(names))
    if missing:
        raise ValueError(f"image_fraction_protocol: {len(missing)} pool images are not in the source, e.g. {missing[:3]}")
    count = max(1, int(np.floor(frac * len(pool) + 0.5)))
    chosen = set(np.random.default_rng(seed).choice(pool, size=count, replace=False).tolist())
    scenes = {}
    for name, scene in _flat_scenes(source, names):
        label = scene["label"]
        idx = np.flatnonzero(label != IGNORE) if name in chosen else np.zeros(0, dtype=np.int64)
        scenes[name] = make_entry(idx, label)
    return Protocol(spec=f"images:{frac:g}", seed=int(seed), source=source_id, scenes=scenes, dataset=dataset,
                    extra={"labelled_images": sorted(chosen), "pool_size": len(pool)})


def voc_fraction_protocol(root: str | os.PathLike, fraction: float | str, seed: int,
                          mode: str = "blended") -> Protocol:
    """VOC semi-supervised split over train_aug: labelled images drawn from train_aug
    ("blended") or from the 1,464 `train` images ("classic"); unlabelled = rest of train_aug."""
    if mode not in VOC_MODES:
        raise ValueError(f"VOC protocol mode {mode!r}; expected one of {VOC_MODES}")
    source = voc_source(root, "train_aug")
    pool = voc_source(root, "train").names() if mode == "classic" else None
    protocol = image_fraction_protocol(source, fraction, seed, source_id=f"voc:{root}:train_aug", pool=pool,
                                       dataset="voc")
    protocol.extra["mode"] = mode
    return protocol


def pixel_count_protocol(source: SceneSource, count: int, seed: int, source_id: str,
                         dataset: str | None = None) -> Protocol:
    """`count` random labelled pixels per image (fewer where fewer are not IGNORE), seeded
    per image name exactly like the 3D `count:N` protocol."""
    return make_protocol(f"count:{int(count)}", _flat_scenes(source, source.names()), seed, source_id, dataset)


def image_tag_protocol(source: SceneSource, source_id: str, dataset: str | None = None) -> Protocol:
    """Image-level labels: `extra["tags"][name]` = sorted classes present in the image;
    no pixel is labelled (so applying it gives an all-IGNORE weak_label)."""
    scenes, tags = {}, {}
    for name, scene in _flat_scenes(source, source.names()):
        label = scene["label"]
        scenes[name] = make_entry(np.zeros(0, dtype=np.int64), label)
        tags[name] = [int(c) for c in np.unique(label[label != IGNORE])]
    return Protocol(spec="tags", seed=None, source=source_id, scenes=scenes, dataset=dataset, extra={"tags": tags})


def image_tags(protocol: Protocol, name: str, num_classes: int) -> np.ndarray:
    """float32 [K] multi-hot tag vector of image `name` from an image_tag_protocol."""
    if "tags" not in protocol.extra:
        raise ValueError(f"protocol {protocol.spec} ({protocol.path or protocol.source}) holds no image tags")
    tags = protocol.extra["tags"]
    if name not in tags:
        raise KeyError(f"image {name!r} has no tags in protocol {protocol.path or protocol.spec}")
    out = np.zeros(num_classes, dtype=np.float32)
    out[np.asarray(tags[name], dtype=np.int64)] = 1.0
    return out


def apply_image_protocol(sample: ImageSample, protocol: Protocol) -> ImageSample:
    """A new sample whose `weak_label` int64 [H, W] is `label` on the protocol's pixels,
    IGNORE elsewhere (checksum-checked like 3D scenes)."""
    label = np.asarray(sample["label"])
    flat = apply_protocol({"label": flat_label(sample), "name": sample["name"]}, protocol)
    out = dict(sample)
    out["weak_label"] = flat["weak_label"].reshape(label.shape)
    return out
