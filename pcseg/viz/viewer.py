"""The interactive Open3D viewer: one scene, coloured by RGB / ground truth / prediction /
errors / labelled points, switched with number keys. Everything but the window itself is
plain numpy here, so it is testable without a display."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pcseg.data.contract import Scene
from pcseg.viz.colors import legend_text
from pcseg.viz.modes import labelled_mask, mode_colors

# key -> (mode of `pcseg.viz.modes.MODES`, what it shows); offered only when its data exists.
KEYS: dict[str, tuple[str, str]] = {
    "1": ("rgb", "RGB colours"),
    "2": ("truth", "ground truth classes"),
    "3": ("pred", "predicted classes"),
    "4": ("errors", "errors: wrong red, right grey"),
    "5": ("labelled", "weakly labelled points, enlarged"),
}

NO_WINDOW = "cannot open a window here (no display); render headless with --png OUT.png"


def key_help(modes: Sequence[str]) -> str:
    """The key bindings for the available `modes`, one per line."""
    lines = [f"  {key}  {text}" for key, (mode, text) in KEYS.items() if mode in modes]
    lines += ["  +/-  point size", "  H  this help (Open3D's own keys too)", "  Q  quit"]
    return "keys:\n" + "\n".join(lines)


def marker_mesh(coord: np.ndarray, color: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One octahedron per point, so a few labelled points stand out at any point size.

    coord: float [L, 3]; color: float [L, 3] 0..1; radius: metres, centre to vertex.
    Returns (vertices float64 [6L, 3], triangles int32 [8L, 3] wound outwards, vertex colours
    float64 [6L, 3]).
    """
    axes = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float64)
    # Faces of the unit octahedron (+x -x +y -y +z -z = 0..5), counter-clockwise seen from outside.
    faces = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4],
                      [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]], np.int32)
    coord = np.asarray(coord, np.float64)
    vertices = (coord[:, None, :] + radius * axes[None]).reshape(-1, 3)
    triangles = (faces[None] + 6 * np.arange(len(coord), dtype=np.int32)[:, None, None]).reshape(-1, 3)
    colors = np.repeat(np.asarray(color, np.float64), 6, axis=0)
    return vertices, triangles, colors


def show(scene: Scene, palette: np.ndarray, class_names: Sequence[str], pred: np.ndarray | None = None,
         weak_mask: np.ndarray | None = None, title: str = "pcseg") -> None:
    """Open the viewer window; prints the key help and the class legend.

    Raises RuntimeError when no window can open (no display: render with `--png` instead).
    """
    from pcseg.viz.o3d import has_display, import_open3d

    if not has_display():
        raise RuntimeError(NO_WINDOW)
    o3d = import_open3d()
    colors = mode_colors(scene, palette, pred, weak_mask)
    if not colors:
        raise ValueError("nothing to show: the scene has no color, label or weak_label, and no prediction")
    coord = np.asarray(scene["coord"], np.float64)
    mask = labelled_mask(scene, weak_mask)
    if mask is None:
        mask = np.zeros(len(coord), bool)
    shown = [a for a in (scene.get("label"), scene.get("weak_label"), pred) if a is not None]
    print(key_help(list(colors)))
    print("classes:\n" + legend_text(palette, class_names, np.unique(np.concatenate(shown)) if shown else None))

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(coord))
    diagonal = float(np.linalg.norm(coord.max(axis=0) - coord.min(axis=0))) if len(coord) else 1.0
    vertices, triangles, marker_colors = marker_mesh(
        coord[mask], colors["labelled"][mask] if mask.any() else np.zeros((0, 3)), 0.004 * diagonal)
    markers = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(vertices), o3d.utility.Vector3iVector(triangles))
    markers.vertex_colors = o3d.utility.Vector3dVector(marker_colors)
    state = {"markers": False}

    vis = o3d.visualization.VisualizerWithKeyCallback()

    def switch(mode: str):
        def callback(v) -> bool:
            cloud.colors = o3d.utility.Vector3dVector(colors[mode].astype(np.float64))
            v.update_geometry(cloud)
            want_markers = mode == "labelled" and len(triangles) > 0
            if want_markers != state["markers"]:
                (v.add_geometry if want_markers else v.remove_geometry)(markers, reset_bounding_box=False)
                state["markers"] = want_markers
            print(f"showing: {_describe(mode)}")
            return True
        return callback

    if not vis.create_window(window_name=title):
        raise RuntimeError(NO_WINDOW)
    vis.add_geometry(cloud)
    switch(next(iter(colors)))(vis)
    for key, (mode, _) in KEYS.items():
        if mode in colors:
            vis.register_key_callback(ord(key), switch(mode))
    vis.get_render_option().point_size = 2.0
    vis.run()
    vis.destroy_window()


def _describe(mode: str) -> str:
    return next(text for m, text in KEYS.values() if m == mode)
