"""The ways a scene is coloured — RGB, ground truth, prediction, errors, labelled points —
shared by the headless panels and the interactive viewer."""
from __future__ import annotations

import numpy as np

from pcseg.data.contract import IGNORE, Scene
from pcseg.viz.colors import UNLABELLED_GREY, colorize, error_colors

# mode -> title, in display order.
MODES: dict[str, str] = {
    "rgb": "RGB",
    "truth": "ground truth",
    "pred": "prediction",
    "errors": "errors",
    "labelled": "labelled points",
}


def labelled_mask(scene: Scene, weak_mask: np.ndarray | None = None) -> np.ndarray | None:
    """bool [N]: the weakly labelled points — `weak_mask` when given, else the scene's
    `weak_label` != IGNORE — or None when there are none to show (no mask, or no labels to
    colour them by: the scene has neither `weak_label` nor `label`)."""
    if "weak_label" not in scene and "label" not in scene:
        return None
    if weak_mask is not None:
        mask = np.asarray(weak_mask, dtype=bool)
        if len(mask) != len(scene["coord"]):
            raise ValueError(f"weak_mask has {len(mask)} entries but the scene has {len(scene['coord'])} points")
        return mask
    if "weak_label" not in scene:
        return None
    return np.asarray(scene["weak_label"]) != IGNORE


def mode_colors(scene: Scene, palette: np.ndarray, pred: np.ndarray | None = None,
                weak_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """mode -> float32 [N, 3] point colours, for the modes (see `MODES`) whose data exists.

    scene: per the data contract (`coord`, optional `color`, `label`, `weak_label`);
    palette: uint8 [K, 3]; pred: int [N]; weak_mask: bool [N] (see `labelled_mask`).
    "labelled": each labelled point in the colour of its weak label (its ground truth when
    the scene has no `weak_label`), all other points grey.
    """
    n = len(scene["coord"])
    if pred is not None and len(pred) != n:
        raise ValueError(f"pred has {len(pred)} entries but the scene has {n} points")
    label = scene.get("label")
    colors: dict[str, np.ndarray] = {}
    if "color" in scene:
        colors["rgb"] = np.asarray(scene["color"], dtype=np.float32)
    if label is not None:
        colors["truth"] = colorize(label, palette)
    if pred is not None:
        colors["pred"] = colorize(pred, palette)
        if label is not None:
            colors["errors"] = error_colors(pred, label)
    mask = labelled_mask(scene, weak_mask)
    if mask is not None:
        source = np.asarray(scene["weak_label"] if "weak_label" in scene else label)
        labelled = np.tile(UNLABELLED_GREY, (n, 1))
        labelled[mask] = colorize(source[mask], palette)
        colors["labelled"] = labelled
    return colors
