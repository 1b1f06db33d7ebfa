"""Rendering coloured points to an image headless: Open3D's offscreen renderer, or, when
Open3D cannot render here, a matplotlib scatter with the same camera."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from pcseg.viz.camera import Camera, project
from pcseg.viz.o3d import import_open3d

log = logging.getLogger("pcseg.viz")

Backend = Literal["auto", "open3d", "matplotlib"]
BACKGROUND = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Layer:
    """Points drawn with one point size: coord float [N, 3] metres, color float [N, 3] 0..1,
    point_size in pixels."""

    coord: np.ndarray
    color: np.ndarray
    point_size: float = 2.0


# One offscreen renderer lives for the whole process (creating it costs more than a render);
# it is replaced when the image size changes, never doubled: Filament aborts the process at
# exit when two were alive at once. A failure to render is remembered, not retried.
_RENDERER: dict[str, Any] = {"size": None, "renderer": None}
_OPEN3D_FAILURE: list[str] = []


def render_layers(layers: list[Layer], camera: Camera, width: int, height: int,
                  backend: Backend = "auto") -> tuple[np.ndarray, str]:
    """Render `layers` seen by `camera`; nearer points hide farther ones across all layers.

    Returns (image uint8 [height, width, 3], the backend that drew it: "open3d" | "matplotlib").
    backend "auto" tries Open3D and falls back to matplotlib with one warning line.
    """
    if backend not in ("auto", "open3d", "matplotlib"):
        raise ValueError(f"unknown render backend {backend!r}; expected auto, open3d or matplotlib")
    if backend != "matplotlib":
        if not _OPEN3D_FAILURE:
            try:
                return _render_open3d(layers, camera, width, height), "open3d"
            except Exception as err:  # noqa: BLE001 - any renderer failure means: fall back
                if backend == "open3d":
                    raise
                _OPEN3D_FAILURE.append(f"{type(err).__name__}: {err}".splitlines()[0])
                log.warning("pcseg viz: Open3D cannot render here (%s); using the matplotlib fallback",
                            _OPEN3D_FAILURE[0])
        elif backend == "open3d":
            raise RuntimeError(f"Open3D cannot render here: {_OPEN3D_FAILURE[0]}")
    return _render_matplotlib(layers, camera, width, height), "matplotlib"


def _render_open3d(layers: list[Layer], camera: Camera, width: int, height: int) -> np.ndarray:
    o3d = import_open3d(headless=True)
    rendering = o3d.visualization.rendering
    if _RENDERER["size"] != (width, height):
        _RENDERER.update(size=None, renderer=None)  # the old one is gone before the new one starts
        renderer = rendering.OffscreenRenderer(width, height)
        # Exact palette colours in the image: no tone mapping, no lighting.
        renderer.scene.view.set_post_processing(False)
        renderer.scene.set_background([*BACKGROUND, 1.0])
        _RENDERER.update(size=(width, height), renderer=renderer)
    renderer = _RENDERER["renderer"]
    scene = renderer.scene
    scene.clear_geometry()
    for i, layer in enumerate(layers):
        if len(layer.coord) == 0:
            continue
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(layer.coord, np.float64)))
        cloud.colors = o3d.utility.Vector3dVector(np.clip(np.asarray(layer.color, np.float64), 0, 1))
        material = rendering.MaterialRecord()
        material.shader = "defaultUnlit"
        material.point_size = float(layer.point_size)
        scene.add_geometry(f"layer{i}", cloud, material)
    renderer.setup_camera(camera.fov_deg, np.asarray(camera.center, np.float32),
                          np.asarray(camera.eye, np.float32), np.asarray(camera.up, np.float32))
    image = np.asarray(renderer.render_to_image())
    scene.clear_geometry()
    return np.ascontiguousarray(image[..., :3], dtype=np.uint8)


def _render_matplotlib(layers: list[Layer], camera: Camera, width: int, height: int) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100.0
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor=BACKGROUND)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    uv, depth, color, size = [], [], [], []
    for layer in layers:
        p, d = project(layer.coord, camera, width, height)
        uv.append(p)
        depth.append(d)
        color.append(np.clip(np.asarray(layer.color, np.float64), 0, 1))
        size.append(np.full(len(d), layer.point_size))
    uv, depth, color, size = (np.concatenate(a) for a in (uv, depth, color, size))
    visible = depth > 1e-6
    # Painter's algorithm: far points first, so near ones cover them as a z-buffer would.
    order = np.flatnonzero(visible)[np.argsort(-depth[visible], kind="stable")]
    points_per_pixel = 72.0 / dpi
    ax.scatter(uv[order, 0], uv[order, 1], c=color[order], s=(size[order] * points_per_pixel) ** 2,
               marker="s", linewidths=0)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
