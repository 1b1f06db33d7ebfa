"""`PropagatedSource`: a scene source whose scenes carry `pseudo_label` propagated from their
weak labels to unlabelled points, by one of two propagators (`method.propagation.mode`):

- `radius`: the nearest labelled point closer than `radius` in `[coord, color_scale * color]`
  (metres; colour 0..1), so neighbours are close in space and alike in colour
  (`pcseg.weak.propagate.nearest_label_propagation`);
- `segments`: the nearest labelled point of the same surface segment
  (`pcseg.data.segments.surface_segments`: connected patches of similar colour and normal),
  at any distance (`pcseg.weak.propagate.segment_label_propagation`).

Pseudo labels are computed once per scene, on the full scene before any augmentation, and
cached.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from pcseg.data.contract import IGNORE, Scene
from pcseg.data.segments import surface_segments
from pcseg.weak.propagate import nearest_label_propagation, segment_label_propagation
from pcseg.weak.protocol import Protocol, SceneSource

# (scene, weak labels int64 [N] with IGNORE) -> pseudo labels int64 [N]
Propagator = Callable[[Scene, np.ndarray], np.ndarray]

MODES = ("radius", "segments")


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


def radius_propagator(radius: float, color_scale: float) -> Propagator:
    """radius: metres in the joint (coord, scaled colour) space; color_scale: metres per unit of
    colour difference (0 = space alone)."""
    if radius <= 0:
        raise ValueError(f"config key 'method.propagation.radius': expected > 0, got {radius}")

    def propagate(scene: Scene, weak: np.ndarray) -> np.ndarray:
        features = propagation_features(scene, color_scale)
        return nearest_label_propagation(features, torch.from_numpy(weak), radius).numpy()
    return propagate


def segment_propagator(neighbours: int, max_distance: float, max_color: float, min_normal_cos: float) -> Propagator:
    """The thresholds of `pcseg.data.segments.surface_segments`; scenes without colour are
    segmented on geometry alone, scenes without normals on estimated ones."""
    checks = {"segment_neighbours": neighbours >= 1, "segment_max_distance": max_distance > 0,
              "segment_max_color": max_color > 0, "segment_min_normal_cos": -1.0 <= min_normal_cos <= 1.0}
    values = dict(zip(checks, (neighbours, max_distance, max_color, min_normal_cos)))
    for key, ok in checks.items():
        if not ok:
            raise ValueError(f"config key 'method.propagation.{key}': out of range, got {values[key]} "
                             "(neighbours >= 1, distance and colour > 0, normal cosine in -1..1)")

    def propagate(scene: Scene, weak: np.ndarray) -> np.ndarray:
        coord = np.asarray(scene["coord"], dtype=np.float64)
        color = scene["color"] if "color" in scene else np.zeros_like(coord)
        segments = surface_segments(coord, color, scene.get("normal"), neighbours, max_distance, max_color,
                                    min_normal_cos)
        return segment_label_propagation(torch.from_numpy(coord), torch.from_numpy(weak),
                                         torch.from_numpy(segments)).numpy()
    return propagate


def build_propagator(cfg) -> Propagator:
    """The propagator of config section `method.propagation` (`pcseg.config.PropagationConfig`)."""
    if cfg.mode == "radius":
        return radius_propagator(cfg.radius, cfg.color_scale)
    if cfg.mode == "segments":
        return segment_propagator(cfg.segment_neighbours, cfg.segment_max_distance, cfg.segment_max_color,
                                  cfg.segment_min_normal_cos)
    raise ValueError(f"config key 'method.propagation.mode': expected one of {', '.join(MODES)}, got {cfg.mode!r}")


class PropagatedSource:
    """The scenes of `source` with `pseudo_label` int64 [N] from the weak labels of `protocol`,
    spread by `propagate` (`radius_propagator`, `segment_propagator`)."""

    def __init__(self, source: SceneSource, protocol: Protocol, propagate: Propagator):
        self.source, self.protocol, self.propagate = source, protocol, propagate
        self._pseudo: dict[str, np.ndarray] = {}

    def names(self) -> list[str]:
        return self.source.names()

    def pseudo_labels(self, name: str, scene: Scene) -> np.ndarray:
        if name not in self._pseudo:
            self._pseudo[name] = self.propagate(scene, weak_labels_of(self.protocol, name, len(scene["coord"])))
        return self._pseudo[name]

    def load(self, name: str) -> Scene:
        scene = dict(self.source.load(name))
        scene["pseudo_label"] = self.pseudo_labels(name, scene)
        return scene
