"""The scene data contract, declared once (DESIGN.md "Data contract").

A scene is a dict of numpy arrays. The keys in `POINT_KEYS` are per-point (first axis = N);
every transform and crop indexes all of them, and nothing guesses per-point keys from shapes.

    coord        float32 [N, 3]  metres
    color        float32 [N, 3]  0..1
    normal       float32 [N, 3]  unit vectors (optional)
    label        int64   [N]     dense ground truth, IGNORE where unknown (evaluation only)
    instance     int64   [N]     instance id, -1 where none (optional)
    weak_label   int64   [N]     labels visible to training: `label` on the protocol's
                                 points, IGNORE elsewhere
    pseudo_label int64   [N]     pseudo labels, IGNORE where none (never overwrites labels)

Other keys (`name`, `num_classes`, ...) are per-scene metadata and are never indexed.
"""
from __future__ import annotations

from typing import Any

import numpy as np

IGNORE = -1

POINT_KEYS: tuple[str, ...] = ("coord", "color", "normal", "label", "instance", "weak_label", "pseudo_label")

Scene = dict[str, Any]


def point_keys(scene: Scene) -> list[str]:
    """The per-point keys present in `scene`, in contract order."""
    return [k for k in POINT_KEYS if k in scene]


def num_points(scene: Scene) -> int:
    return int(len(scene["coord"]))


def index_scene(scene: Scene, index: np.ndarray) -> Scene:
    """A new scene keeping the points `index` (int array or bool mask) of every per-point key."""
    out = dict(scene)
    for key in point_keys(scene):
        out[key] = scene[key][index]
    return out


def validate_scene(scene: Scene, num_classes: int | None = None, source: str = "scene") -> None:
    """Raise ValueError naming `source` and the key if `scene` breaks the contract."""
    if "coord" not in scene:
        raise ValueError(f"{source}: missing 'coord'")
    n = num_points(scene)
    for key in point_keys(scene):
        if len(scene[key]) != n:
            raise ValueError(f"{source}: '{key}' has {len(scene[key])} rows, 'coord' has {n}")
    if num_classes is not None:
        for key in ("label", "weak_label", "pseudo_label"):
            if key in scene and n:
                lab = scene[key]
                bad = (lab != IGNORE) & ((lab < 0) | (lab >= num_classes))
                if bad.any():
                    i = int(np.flatnonzero(bad)[0])
                    raise ValueError(
                        f"{source}: '{key}' value {int(lab[i])} at point {i} is outside "
                        f"0..{num_classes - 1} (and is not IGNORE={IGNORE})"
                    )
