"""Coloured PLY files of predictions and errors that MeshLab and CloudCompare open:
binary little-endian vertices `x y z red green blue label [confidence]`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.data.contract import Scene
from pcseg.viz.colors import colorize, error_colors


def write_ply(path: str | Path, coord: np.ndarray, color: np.ndarray, label: np.ndarray,
              confidence: np.ndarray | None = None) -> Path:
    """Write one point cloud.

    coord: float [N, 3] metres (stored float32); color: float [N, 3] 0..1 or uint8 [N, 3]
    (stored uint8); label: int [N] (stored int32, IGNORE = -1 kept); confidence: float [N]
    (stored float32) or None.
    """
    from plyfile import PlyData, PlyElement

    coord = np.asarray(coord)
    n = len(coord)
    color = np.asarray(color)
    if not np.issubdtype(color.dtype, np.integer):
        color = np.round(np.clip(color, 0.0, 1.0) * 255.0)
    columns = [("x", "<f4", coord[:, 0]), ("y", "<f4", coord[:, 1]), ("z", "<f4", coord[:, 2]),
               ("red", "u1", color[:, 0]), ("green", "u1", color[:, 1]), ("blue", "u1", color[:, 2]),
               ("label", "<i4", np.asarray(label))]
    if confidence is not None:
        columns.append(("confidence", "<f4", np.asarray(confidence)))
    for name, _, values in columns:
        if len(values) != n:
            raise ValueError(f"{path}: '{name}' has {len(values)} values for {n} points")
    vertex = np.empty(n, dtype=[(name, dtype) for name, dtype, _ in columns])
    for name, _, values in columns:
        vertex[name] = values
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<").write(str(path))
    return path


def export_prediction(path: str | Path, scene: Scene, pred: np.ndarray, palette: np.ndarray,
                      errors: bool = False, confidence: np.ndarray | None = None) -> Path:
    """PLY of a prediction: points coloured by predicted class, or, with `errors`, red where
    the prediction differs from the scene's `label` and grey where it agrees. The `label`
    property always holds the predicted class.

    scene: per the data contract; pred: int [N]; palette: uint8 [K, 3]; confidence: float [N].
    """
    if errors and "label" not in scene:
        raise ValueError(f"{path}: an error PLY needs the scene's ground truth 'label'")
    color = error_colors(pred, scene["label"]) if errors else colorize(pred, palette)
    return write_ply(path, scene["coord"], color, pred, confidence)
