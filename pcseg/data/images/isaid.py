"""iSAID: semantic masks rasterised from the COCO-style instance json, and tiled sources.

    isaid_source(image_dir, "iSAID_train.json")   full images (often 4000 px and more)
    TiledSource(source, patch=896, stride=512)    overlapping patches of any image source

Polygons are filled with PIL (boundary pixels included) in order of decreasing area, so a
small object lying on a large one (a car on a bridge, a ship in a harbour) stays visible.
Pixels in no polygon are background (class 0); `instance` is the annotation's position in
the json (-1 = none).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw

from pcseg.data.images.io import read_image
from pcseg.data.images.source import ImageSample
from pcseg.data.images.tiling import Box, cut_tiles, tile_boxes
from pcseg.data.meta import DatasetMeta, load_dataset_meta


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


def category_table(categories: Sequence[dict[str, Any]], meta: DatasetMeta, source: str) -> dict[int, int]:
    """json category id -> class index, matching names (case, '-', ' ' ignored; YAML aliases)."""
    aliases = {_norm(k): _norm(v) for k, v in meta.extra.get("aliases", {}).items()}
    by_name = {_norm(n): i for i, n in enumerate(meta.class_names)}
    table = {}
    for cat in categories:
        name = aliases.get(_norm(cat["name"]), _norm(cat["name"]))
        if name not in by_name:
            raise ValueError(f"{source}: category {cat['name']!r} (id {cat['id']}) is not a class of "
                             f"{meta.name}: {', '.join(meta.class_names)}")
        table[int(cat["id"])] = by_name[name]
    return table


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def rasterise_polygons(height: int, width: int, polygons: Sequence[tuple[int, Sequence[float]]],
                       background: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(label int64 [H, W], instance int64 [H, W]) from (class, flat [x0, y0, x1, y1, ...])
    polygons in pixel coordinates; polygon j paints instance j; larger areas first."""
    label = np.full((height, width), background, dtype=np.int64)
    instance = np.full((height, width), -1, dtype=np.int64)
    shapes = []
    for j, (cls, flat) in enumerate(polygons):
        xy = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
        if len(xy) >= 3:
            shapes.append((_polygon_area(xy), j, cls, xy))
    for _, j, cls, xy in sorted(shapes, key=lambda s: (-s[0], s[1])):
        # Draw inside the polygon's bounding box only: full-size canvases per object would
        # cost H*W each on 4000x13000 aerial images with hundreds of objects.
        x0 = max(int(np.floor(xy[:, 0].min())), 0)
        y0 = max(int(np.floor(xy[:, 1].min())), 0)
        x1 = min(int(np.ceil(xy[:, 0].max())) + 1, width)
        y1 = min(int(np.ceil(xy[:, 1].max())) + 1, height)
        if x1 <= x0 or y1 <= y0:
            continue
        canvas = Image.new("1", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(canvas).polygon([(float(x) - x0, float(y) - y0) for x, y in xy], fill=1, outline=1)
        inside = np.asarray(canvas, dtype=bool)
        label[y0:y1, x0:x1][inside] = cls
        instance[y0:y1, x0:x1][inside] = j
    return label, instance


class ISAIDSource:
    """iSAID images with masks rasterised from `annotation_json` (COCO: images, annotations
    with polygon `segmentation`, categories). Names are image file stems."""

    def __init__(self, image_dir: str | os.PathLike, annotation_json: str | os.PathLike) -> None:
        self.meta = load_dataset_meta("isaid")
        self._image_dir = Path(image_dir)
        path = Path(annotation_json)
        if not path.is_file():
            raise FileNotFoundError(f"iSAID annotation file {path} does not exist")
        with open(path, encoding="utf-8") as f:
            coco = json.load(f)
        for key in ("images", "annotations", "categories"):
            if key not in coco:
                raise ValueError(f"{path}: COCO json without {key!r} (keys: {', '.join(coco)})")
        table = category_table(coco["categories"], self.meta, str(path))
        self._images: dict[str, dict[str, Any]] = {}
        by_id: dict[int, str] = {}
        for im in sorted(coco["images"], key=lambda im: im["file_name"]):
            name = Path(im["file_name"]).stem
            self._images[name] = {"file": im["file_name"], "size": (int(im["height"]), int(im["width"])),
                                  "polygons": []}
            by_id[int(im["id"])] = name
        for a, ann in enumerate(coco["annotations"]):
            if int(ann["image_id"]) not in by_id:
                raise ValueError(f"{path}: annotation {a} refers to image_id {ann['image_id']}, not in 'images'")
            if int(ann["category_id"]) not in table:
                raise ValueError(f"{path}: annotation {a} has category_id {ann['category_id']}, not in 'categories'")
            seg = ann.get("segmentation")
            if not isinstance(seg, list):
                raise ValueError(f"{path}: annotation {a}: expected polygon 'segmentation' lists (got RLE or none)")
            for poly in seg:
                self._images[by_id[int(ann["image_id"])]]["polygons"].append((table[int(ann["category_id"])], poly))

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    def names(self) -> list[str]:
        return list(self._images)

    def image_size(self, name: str) -> tuple[int, int]:
        """(H, W) from the json, without reading the image."""
        return self._images[name]["size"]

    def load(self, name: str) -> ImageSample:
        if name not in self._images:
            raise KeyError(f"image {name!r} is not in this iSAID json ({len(self._images)} images)")
        info = self._images[name]
        image = read_image(self._image_dir / info["file"])
        if image.shape[:2] != info["size"]:
            raise ValueError(f"{self._image_dir / info['file']}: {image.shape[:2]} pixels, the json says {info['size']}")
        label, instance = rasterise_polygons(*info["size"], info["polygons"])
        return {"image": image, "label": label, "instance": instance, "name": name}


def _image_size(source: Any, name: str) -> tuple[int, int]:
    if hasattr(source, "image_size"):
        return tuple(source.image_size(name))
    return tuple(source.load(name)["image"].shape[:2])


class TiledSource:
    """Overlapping `patch` x `patch` tiles (every `stride` px, see pcseg.data.images.tiling)
    of every image of `source`. Tile names are `<image>@<y0>_<x0>`; a tile sample carries
    `parent` (image name) and `box` (y0, x0, y1, x1) for reassembly."""

    def __init__(self, source: Any, patch: int, stride: int) -> None:
        self.source = source
        self.meta = getattr(source, "meta", None)
        self.patch, self.stride = int(patch), int(stride)
        self._tiles: dict[str, tuple[str, Box]] = {}
        for name in source.names():
            for box in tile_boxes(*_image_size(source, name), self.patch, self.stride):
                self._tiles[f"{name}@{box[0]}_{box[1]}"] = (name, box)

    def names(self) -> list[str]:
        return list(self._tiles)

    def boxes(self, parent: str) -> list[tuple[str, Box]]:
        """(tile name, box) of every tile of image `parent`, in names() order."""
        return [(n, b) for n, (p, b) in self._tiles.items() if p == parent]

    def load(self, name: str) -> ImageSample:
        if name not in self._tiles:
            raise KeyError(f"tile {name!r} does not exist (names look like '<image>@<y0>_<x0>')")
        parent, box = self._tiles[name]
        full = self.source.load(parent)
        tile: ImageSample = {"name": name, "parent": parent, "box": box}
        for key in ("image", "label", "instance", "weak_label"):
            if key in full:
                tile[key] = cut_tiles(full[key], [box])[0]
        return tile
