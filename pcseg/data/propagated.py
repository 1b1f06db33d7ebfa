"""`PropagatedSource`: a scene source whose scenes carry `pseudo_label` propagated from their
weak labels to nearby points (`pcseg.weak.propagate.nearest_label_propagation`).

Features of the neighbourhood: `[coord, color_scale * color]` (metres; colour 0..1), so two
points are neighbours when they are close in space and alike in colour. Pseudo labels are
computed once per scene, on the full scene before any augmentation, and cached.
"""
from __future__ import annotations

import numpy as np
import torch

from pcseg.data.contract import IGNORE, Scene
from pcseg.weak.propagate import nearest_label_propagation
from pcseg.weak.protocol import Protocol, SceneSource


def propagation_features(scene: Scene, color_scale: float) -> torch.Tensor:
    """float64 [N, 3 (+3)]: coordinates, then colour times `color_scale` (when colour is present)."""
    parts = [np.asarray(scene["coord"], dtype=np.float64)]
    if "color" in scene and color_scale > 0:
        parts.append(color_scale * np.asarray(scene["color"], dtype=np.float64))
    return torch.from_numpy(np.concatenate(parts, axis=1))


def weak_labels_of(protocol: Protocol, name: str, num_points: int) -> np.ndarray:
    """int64 [N]: the protocol's labels on its points of scene `name`, IGNORE elsewhere."""
    entry = protocol.entry(name)
    labels = np.full(num_points, IGNORE, dtype=np.int64)
    labels[entry.indices] = entry.labels
    return labels


class PropagatedSource:
    """The scenes of `source` with `pseudo_label` int64 [N] from the weak labels of `protocol`.

    radius: metres in the joint (coord, scaled colour) space; color_scale: metres per unit of
    colour difference (0 = space alone).
    """

    def __init__(self, source: SceneSource, protocol: Protocol, radius: float, color_scale: float):
        if radius <= 0:
            raise ValueError(f"config key 'method.propagation.radius': expected > 0, got {radius}")
        self.source, self.protocol, self.radius, self.color_scale = source, protocol, radius, color_scale
        self._pseudo: dict[str, np.ndarray] = {}

    def names(self) -> list[str]:
        return self.source.names()

    def pseudo_labels(self, name: str, scene: Scene) -> np.ndarray:
        if name not in self._pseudo:
            weak = weak_labels_of(self.protocol, name, len(scene["coord"]))
            features = propagation_features(scene, self.color_scale)
            self._pseudo[name] = nearest_label_propagation(features, torch.from_numpy(weak), self.radius).numpy()
        return self._pseudo[name]

    def load(self, name: str) -> Scene:
        scene = dict(self.source.load(name))
        scene["pseudo_label"] = self.pseudo_labels(name, scene)
        return scene
