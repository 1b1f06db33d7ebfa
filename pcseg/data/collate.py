"""Scenes -> one batch of concatenated torch tensors (DESIGN.md "Data contract").

Batch keys:
    coord        float32 [N, 3]   all scenes' points concatenated
    feat         float32 [N, C]   requested input features concatenated (see FEATURES)
    label        int64   [N]      dense ground truth (evaluation only); IGNORE if absent
    weak_label   int64   [N]      training labels; IGNORE if absent
    pseudo_label int64   [N]      only if every scene has one
    instance     int64   [N]      only if every scene has one
    batch        int64   [N]      scene index of each point, sorted
    offset       int64   [B]      cumulative point counts, offset[-1] == N
    names        list[str]        scene names (scene["name"], else "scene<i>")
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from pcseg.data.contract import IGNORE, Scene, num_points

# Input feature name -> channels. coord_z is the height above the scene's lowest point.
FEATURES: dict[str, int] = {"color": 3, "normal": 3, "coord": 3, "coord_z": 1}


def feature_channels(features: Sequence[str]) -> int:
    """Channels C of `feat` for these feature names (the model's in_channels)."""
    check_features(features)
    return sum(FEATURES[f] for f in features)


def check_features(features: Sequence[str]) -> None:
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"unknown input feature(s) {', '.join(map(repr, unknown))}; valid: {', '.join(FEATURES)}")


def scene_features(scene: Scene, features: Sequence[str]) -> np.ndarray:
    """float32 [N, C]: the named features of one scene side by side."""
    check_features(features)
    n = num_points(scene)
    parts = []
    for f in features:
        if f == "coord_z":
            z = scene["coord"][:, 2:3]
            parts.append(z - z.min() if n else z)
        elif f not in scene:
            name = scene.get("name", "scene")
            raise ValueError(f"{name}: input feature {f!r} requested but the scene has no {f!r} "
                             f"(it has {', '.join(k for k in scene)})")
        else:
            parts.append(scene[f])
    if not parts:
        return np.zeros((n, 0), dtype=np.float32)
    return np.concatenate(parts, axis=1).astype(np.float32)


def _labels(scene: Scene, key: str) -> np.ndarray:
    if key in scene:
        return np.asarray(scene[key], dtype=np.int64)
    return np.full(num_points(scene), IGNORE, dtype=np.int64)


def collate_scenes(scenes: Sequence[Scene], features: Sequence[str] = ("color",)) -> dict:
    """Concatenate scenes into the batch described in the module docstring."""
    if not scenes:
        raise ValueError("collate_scenes: got no scenes")
    counts = np.array([num_points(s) for s in scenes], dtype=np.int64)
    batch = {
        "coord": torch.from_numpy(np.concatenate([s["coord"] for s in scenes]).astype(np.float32)),
        "feat": torch.from_numpy(np.concatenate([scene_features(s, features) for s in scenes])),
        "label": torch.from_numpy(np.concatenate([_labels(s, "label") for s in scenes])),
        "weak_label": torch.from_numpy(np.concatenate([_labels(s, "weak_label") for s in scenes])),
    }
    for key in ("pseudo_label", "instance"):
        if all(key in s for s in scenes):
            batch[key] = torch.from_numpy(np.concatenate([_labels(s, key) for s in scenes]))
    batch["batch"] = torch.repeat_interleave(torch.arange(len(scenes)), torch.from_numpy(counts))
    batch["offset"] = torch.from_numpy(np.cumsum(counts))
    batch["names"] = [str(s.get("name", f"scene{i}")) for i, s in enumerate(scenes)]
    return batch
