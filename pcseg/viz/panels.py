"""The side-by-side figure of one scene: RGB | ground truth | prediction | errors | labelled
points, one camera for all, with titles and a class legend."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from pcseg.data.contract import Scene, index_scene
from pcseg.viz.camera import Camera, below_ceiling, room_camera
from pcseg.viz.colors import CORRECT_GREY, UNLABELLED_GREY, WRONG_RED, legend_entries
from pcseg.viz.modes import MODES, labelled_mask, mode_colors
from pcseg.viz.render import Backend, Layer, render_layers

# Labelled points are a sparse 0.1-1% of the scene: drawn this many times larger to be seen.
LABELLED_SCALE = 3.0


@dataclass(frozen=True)
class Panel:
    """One view of the scene: a title and the layers it draws."""

    title: str
    layers: list[Layer]


def build_panels(scene: Scene, palette: np.ndarray, pred: np.ndarray | None = None,
                 weak_mask: np.ndarray | None = None, point_size: float = 2.0,
                 num_labelled: int | None = None) -> list[Panel]:
    """The panels whose data exists, in the order of `MODES`: RGB, ground truth, prediction,
    errors, labelled points (see `mode_colors`).

    scene: per the data contract; pred: int [N]; weak_mask: bool [N] (default: the scene's
    `weak_label` != IGNORE). Labelled points are drawn LABELLED_SCALE times larger over the
    others; that panel's title counts `num_labelled` (default: the labelled points drawn).
    """
    coord = np.asarray(scene["coord"])
    colors = mode_colors(scene, palette, pred, weak_mask)
    if not colors:
        raise ValueError("nothing to draw: the scene has no color, label or weak_label, and no prediction")
    panels = [Panel(MODES[mode], [Layer(coord, color, point_size)]) for mode, color in colors.items()
              if mode != "labelled"]
    if "labelled" in colors:
        mask = labelled_mask(scene, weak_mask)
        count = int(mask.sum()) if num_labelled is None else num_labelled
        panels.append(Panel(f"{MODES['labelled']} ({count})", [
            Layer(coord[~mask], colors["labelled"][~mask], point_size),
            Layer(coord[mask], colors["labelled"][mask], point_size * LABELLED_SCALE),
        ]))
    return panels


def render_panels(scene: Scene, pred: np.ndarray | None = None, weak_mask: np.ndarray | None = None,
                  *, palette: np.ndarray, class_names: Sequence[str], out_png: str | Path,
                  width: int = 480, height: int = 360, camera: Camera | None = None,
                  remove_ceiling: bool = True, point_size: float = 2.0,
                  backend: Backend = "auto") -> str:
    """Render the scene's panels (see `build_panels`) side by side into `out_png`.

    scene: per the data contract; pred: int [N]; weak_mask: bool [N]; palette: uint8 [K, 3];
    width x height: pixels of one panel. Without `camera`, the room is framed from above at an
    angle, after its ceiling is cut away by geometry (`below_ceiling`). Returns the backend
    that drew the panels ("open3d" or "matplotlib", which is used when Open3D cannot render).
    """
    n = len(scene["coord"])
    if pred is not None and len(pred) != n:
        raise ValueError(f"pred has {len(pred)} entries but the scene has {n} points")
    weak_mask = labelled_mask(scene, weak_mask)
    num_labelled = None if weak_mask is None else int(weak_mask.sum())
    if remove_ceiling:
        keep = below_ceiling(np.asarray(scene["coord"]))
        scene = index_scene(scene, keep)
        pred = None if pred is None else np.asarray(pred)[keep]
        weak_mask = None if weak_mask is None else weak_mask[keep]
    panels = build_panels(scene, palette, pred, weak_mask, point_size, num_labelled)
    coord = np.asarray(scene["coord"])
    if camera is None:
        camera = room_camera(coord, width, height)
    images, used = [], "open3d"
    for panel in panels:
        image, used = render_layers(panel.layers, camera, width, height, backend)
        images.append(image)
    classes = _classes_shown(scene, pred)
    _compose(images, [p.title for p in panels], palette, class_names, classes,
             errors=pred is not None and "label" in scene, out_png=Path(out_png))
    return used


def _classes_shown(scene: Scene, pred: np.ndarray | None) -> np.ndarray:
    found = [np.asarray(a) for a in (scene.get("label"), scene.get("weak_label"), pred) if a is not None]
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def _compose(images: list[np.ndarray], titles: list[str], palette: np.ndarray,
             class_names: Sequence[str], classes: np.ndarray, errors: bool, out_png: Path) -> None:
    """Panels in a row with titles, and a legend of the classes shown underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    h, w = images[0].shape[:2]
    dpi = 100.0
    title_px, legend_px = 28, 56
    fig = Figure(figsize=(w * len(images) / dpi, (h + title_px + legend_px) / dpi), dpi=dpi,
                 facecolor="white")
    FigureCanvasAgg(fig)
    total_h = h + title_px + legend_px
    for i, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_axes((i / len(images), legend_px / total_h, 1 / len(images), h / total_h))
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=11)
    handles = [Patch(facecolor=rgb, edgecolor="none", label=name)
               for _, name, rgb in legend_entries(palette, list(class_names), classes)]
    if errors:
        handles += [Patch(facecolor=CORRECT_GREY, label="correct"), Patch(facecolor=WRONG_RED, label="wrong")]
    handles.append(Patch(facecolor=UNLABELLED_GREY, label="unlabelled"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), max(4, 2 * len(images))),
               fontsize=8, frameon=False, handlelength=1.2, columnspacing=1.0)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=dpi, facecolor="white")
