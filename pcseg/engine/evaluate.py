"""Evaluation over a scene source on full-resolution original points.

Each process evaluates a disjoint share of the scenes (`names[rank::world_size]`: every
scene exactly once, no padding duplicates), then only the confusion matrix is summed
across processes.
"""
from __future__ import annotations

from typing import Optional, Protocol

import numpy as np
from tqdm import tqdm

from pcseg.data.contract import Scene
from pcseg.engine import distributed as dist
from pcseg.engine.inference import LogitsFn, ScenePredictor, predict_scene
from pcseg.metrics import ConfusionMatrix


class SceneSource(Protocol):
    def names(self) -> list[str]: ...

    def load(self, name: str) -> Scene: ...


def evaluate_source(logits_fn: LogitsFn, source: SceneSource, num_classes: int, votes: int = 1,
                    max_points: Optional[int] = None, progress: bool = False,
                    names: Optional[list[str]] = None, predict: ScenePredictor = predict_scene) -> ConfusionMatrix:
    """Confusion matrix over all scenes of `source` (or `names`), summed over processes.

    Ground truth is each scene's dense `label` (IGNORE skipped; images: [H, W], row-major like
    the predictions), predictions the argmax of `predict` (`predict_scene` for 3D scenes).
    """
    names = list(source.names()) if names is None else names
    mine = names[dist.rank()::dist.world_size()]
    matrix = ConfusionMatrix(num_classes)
    for name in tqdm(mine, desc="eval", unit="scene", disable=not progress, leave=False):
        scene = source.load(name)
        prob = predict(logits_fn, scene, votes=votes, max_points=max_points)
        matrix.update(np.argmax(prob, axis=1), scene["label"])
    matrix.all_reduce()
    return matrix
