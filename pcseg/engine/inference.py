"""Full-resolution prediction of one scene: test-time voting and bounded-memory chunks.

`logits_fn(scene) -> float [n, K]` runs the network on a (sub)scene's original points (the
Segmentor voxelizes inside and slices back through the inverse map). Around it:
- votes: vote v rotates the scene about the vertical axis through its centre by 2*pi*v/V,
  mirroring x on odd votes; the softmax of all votes is averaged;
- chunks: a scene over `max_points` is split by recursive median cuts on x/y into blocks of
  at most `max_points` core points; each block is run with a margin of `overlap` metres of
  context around its core, and points covered by several blocks average their softmax.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import torch

from pcseg.data.contract import Scene, index_scene

LogitsFn = Callable[[Scene], torch.Tensor]
# (logits_fn, scene, votes, max_points) -> probabilities float32 [N, K]: `predict_scene`, or
# `pcseg.engine.image_inference.ImagePredictor` for images
ScenePredictor = Callable[..., np.ndarray]


def vote_transform(scene: Scene, vote: int, votes: int) -> Scene:
    """A copy of `scene` rotated by 2*pi*vote/votes about z through its xy centre, x mirrored on odd votes."""
    if vote == 0:
        return scene
    angle = 2 * math.pi * vote / votes
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)
    if vote % 2 == 1:
        rot = rot @ np.diag([-1.0, 1.0, 1.0])
    out = dict(scene)
    coord = scene["coord"].astype(np.float64)
    centre = np.array([*coord[:, :2].mean(axis=0), 0.0]) if len(coord) else np.zeros(3)
    out["coord"] = ((coord - centre) @ rot.T + centre).astype(np.float32)
    if "normal" in scene:
        out["normal"] = (scene["normal"].astype(np.float64) @ rot.T).astype(np.float32)
    return out


def spatial_blocks(coord: np.ndarray, max_points: int, overlap: float) -> list[np.ndarray]:
    """Index arrays (int64) of blocks covering every point of `coord` float [N, 3].

    Cores come from recursive median cuts on the longer of x/y until each holds at most
    `max_points`; each returned block is its core's xy box grown by `overlap` metres, so it
    may exceed `max_points` by the margin's points.
    """
    if max_points <= 0:
        raise ValueError(f"max_points must be positive, got {max_points}")
    cores: list[np.ndarray] = []
    todo = [np.arange(len(coord), dtype=np.int64)]
    while todo:
        idx = todo.pop()
        if len(idx) <= max_points:
            cores.append(idx)
            continue
        xy = coord[idx, :2]
        axis = int(np.argmax(xy.max(axis=0) - xy.min(axis=0)))
        # Sorting (not a value threshold) splits even when many points share a coordinate.
        order = np.argsort(xy[:, axis], kind="stable")
        half = len(idx) // 2
        todo += [idx[order[half:]], idx[order[:half]]]
    blocks = []
    for core in cores:
        lo = coord[core, :2].min(axis=0) - overlap
        hi = coord[core, :2].max(axis=0) + overlap
        inside = np.all((coord[:, :2] >= lo) & (coord[:, :2] <= hi), axis=1)
        blocks.append(np.flatnonzero(inside))
    return blocks


def _softmax(logits_fn: LogitsFn, scene: Scene) -> np.ndarray:
    logits = logits_fn(scene)
    return torch.softmax(logits.float(), dim=1).cpu().numpy()


@torch.no_grad()
def predict_scene(logits_fn: LogitsFn, scene: Scene, votes: int = 1, max_points: Optional[int] = None,
                  overlap: float = 1.0) -> np.ndarray:
    """Class probabilities float32 [N, K] for every original point of `scene`.

    votes >= 1; max_points None = one pass over the whole scene.
    """
    if votes < 1:
        raise ValueError(f"votes must be >= 1, got {votes}")
    n = len(scene["coord"])
    blocks = [None] if max_points is None or n <= max_points else spatial_blocks(scene["coord"], max_points, overlap)
    total: Optional[np.ndarray] = None
    count = np.zeros(n, dtype=np.float32)
    for v in range(votes):
        voted = vote_transform(scene, v, votes)
        for block in blocks:
            part = voted if block is None else index_scene(voted, block)
            prob = _softmax(logits_fn, part)
            if total is None:
                total = np.zeros((n, prob.shape[1]), dtype=np.float32)
            if block is None:
                total += prob
                count += 1
            else:
                total[block] += prob
                count[block] += 1
    assert total is not None
    return total / count[:, None]
