"""Headless rendering: exact class colours where the classes are, from a known camera, with
Open3D and with the matplotlib fallback (both must agree with `project`)."""
import logging

import numpy as np
import pytest

from pcseg.viz import render
from pcseg.viz.camera import Camera, below_ceiling, project, room_camera
from pcseg.viz.colors import WRONG_RED, colorize
from pcseg.viz.panels import build_panels, render_panels
from pcseg.viz.render import Layer, render_layers

W, H = 320, 240
PALETTE = np.array([[255, 0, 0], [0, 0, 255], [0, 160, 0]], np.uint8)
TOP_DOWN = Camera(eye=(0.0, 0.0, 3.0), center=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov_deg=60.0)


def half_and_half_plane() -> tuple[np.ndarray, np.ndarray]:
    """A 2 m x 1.5 m grid at z=0: class 0 where x < 0, class 1 where x > 0."""
    xs, ys = np.meshgrid(np.linspace(-1, 1, 101), np.linspace(-0.75, 0.75, 76))
    coord = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1).astype(np.float32)
    return coord, (coord[:, 0] > 0).astype(np.int64)


def count(image: np.ndarray, rgb) -> int:
    return int(np.all(image == np.asarray(rgb, np.uint8), axis=-1).sum())


def test_project_hand_computed():
    uv, depth = project(np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 1.0], [0.0, 0.0, 4.0]]), TOP_DOWN, W, H)
    focal = (H / 2) / np.tan(np.deg2rad(30))
    np.testing.assert_allclose(uv[0], [W / 2, H / 2])
    np.testing.assert_allclose(uv[1], [W / 2 + focal * 1 / 2, H / 2 - focal * 0.5 / 2])
    np.testing.assert_allclose(depth, [3.0, 2.0, -1.0])
    with pytest.raises(ValueError, match="parallel"):
        project(np.zeros((1, 3)), Camera(eye=(0, 0, 3), center=(0, 0, 0)), W, H)


def test_below_ceiling_by_geometry():
    rng = np.random.default_rng(0)
    floor = np.c_[rng.uniform(0, 4, (800, 2)), np.zeros(800)]
    ceiling = np.c_[rng.uniform(0, 4, (200, 2)), np.full(200, 3.0)]
    table = np.c_[rng.uniform(1, 2, (100, 2)), np.full(100, 0.75)]
    coord = np.concatenate([floor, ceiling, table])
    keep = below_ceiling(coord)
    np.testing.assert_array_equal(keep, coord[:, 2] < 2.0)
    flat = coord.copy()
    flat[:, 2] *= 0.1  # 30 cm tall: not a room, nothing removed
    assert below_ceiling(flat).all()


def test_room_camera_frames_every_point():
    rng = np.random.default_rng(1)
    coord = rng.uniform([0, 0, 0], [8, 3, 2.5], (500, 3))
    cam = room_camera(coord, W, H)
    uv, depth = project(coord, cam, W, H)
    assert (depth > 0).all()
    assert (uv >= 0).all() and (uv[:, 0] <= W).all() and (uv[:, 1] <= H).all()
    # As near as possible: the box's corners touch 95% of the frame in one direction.
    corners = np.array([[x, y, z] for x in (0, 8) for y in (0, 3) for z in (0, 2.5)])
    cuv, _ = project(corners, room_camera(corners, W, H), W, H)
    reach = max(np.abs(cuv[:, 0] - W / 2).max() / (W / 2), np.abs(cuv[:, 1] - H / 2).max() / (H / 2))
    assert reach == pytest.approx(0.95, abs=1e-3)
    assert cam.eye[2] > coord[:, 2].max()  # from above


@pytest.mark.parametrize("backend", ["open3d", "matplotlib"])
def test_class_colours_land_on_their_half(backend):
    if backend == "open3d":
        pytest.importorskip("open3d")
    coord, label = half_and_half_plane()
    image, used = render_layers([Layer(coord, colorize(label, PALETTE), 3.0)], TOP_DOWN, W, H, backend)
    assert used == backend
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    left, right = image[:, : W // 2 - 10], image[:, W // 2 + 10:]
    # The plane covers ~138 x 104 px: each half holds ~69 x 104 px of its own class only.
    assert count(left, PALETTE[0]) > 5000 and count(left, PALETTE[1]) == 0
    assert count(right, PALETTE[1]) > 5000 and count(right, PALETTE[0]) == 0
    # The drawn area is where `project` puts the plane's corners (same camera convention).
    drawn = np.argwhere(np.any(image < 250, axis=-1))
    uv, _ = project(coord, TOP_DOWN, W, H)
    np.testing.assert_allclose(drawn.min(axis=0), [uv[:, 1].min(), uv[:, 0].min()], atol=3)
    np.testing.assert_allclose(drawn.max(axis=0), [uv[:, 1].max(), uv[:, 0].max()], atol=3)


def test_nearer_points_hide_farther_ones():
    pytest.importorskip("open3d")
    coord, _ = half_and_half_plane()
    low = Layer(coord, np.tile([1.0, 0, 0], (len(coord), 1)), 3.0)
    high = Layer(coord + [0, 0, 0.5], np.tile([0, 0, 1.0], (len(coord), 1)), 3.0)
    for backend in ("open3d", "matplotlib"):
        image, _ = render_layers([high, low], TOP_DOWN, W, H, backend)
        centre = image[H // 2 - 20: H // 2 + 20, W // 2 - 20: W // 2 + 20]
        assert count(centre, [0, 0, 255]) == centre.shape[0] * centre.shape[1], backend


def test_fallback_when_open3d_fails(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no EGL display\nsecond line")

    monkeypatch.setattr(render, "_render_open3d", broken)
    monkeypatch.setattr(render, "_OPEN3D_FAILURE", [])
    coord, label = half_and_half_plane()
    layers = [Layer(coord, colorize(label, PALETTE), 3.0)]
    with caplog.at_level(logging.WARNING, logger="pcseg.viz"):
        image, used = render_layers(layers, TOP_DOWN, W, H)
        again, used_again = render_layers(layers, TOP_DOWN, W, H)
    assert used == used_again == "matplotlib"
    assert [r.getMessage() for r in caplog.records] == [
        "pcseg viz: Open3D cannot render here (RuntimeError: no EGL display); using the matplotlib fallback"]
    assert count(image[:, : W // 2 - 10], PALETTE[0]) > 5000
    np.testing.assert_array_equal(image, again)
    with pytest.raises(RuntimeError, match="no EGL display"):
        render_layers(layers, TOP_DOWN, W, H, backend="open3d")


def test_panels_present_only_with_their_data():
    coord, label = half_and_half_plane()
    assert [p.title for p in build_panels({"coord": coord}, PALETTE, pred=label)] == ["prediction"]
    weak = np.full(len(label), -1)
    weak[[0, 5, 7000]] = label[[0, 5, 7000]]
    scene = {"coord": coord, "color": np.full((len(label), 3), 0.5, np.float32), "label": label,
             "weak_label": weak}
    panels = build_panels(scene, PALETTE, pred=1 - label)
    assert [p.title for p in panels] == ["RGB", "ground truth", "prediction", "errors", "labelled points (3)"]
    enlarged = panels[-1].layers[1]
    np.testing.assert_array_equal(enlarged.coord, coord[[0, 5, 7000]])
    assert enlarged.point_size == 3 * panels[0].layers[0].point_size
    with pytest.raises(ValueError, match="pred has 3 entries but the scene has 7676 points"):
        build_panels(scene, PALETTE, pred=label[:3])


@pytest.mark.parametrize("backend", ["auto", "matplotlib"])
def test_render_panels_png(tmp_path, backend):
    from PIL import Image

    coord, label = half_and_half_plane()
    pred = label.copy()
    pred[:100] = 2
    scene = {"coord": coord, "label": label}
    out = tmp_path / "panels.png"
    used = render_panels(scene, pred, palette=PALETTE, class_names=["a", "b", "c"], out_png=out,
                         width=W, height=H, camera=TOP_DOWN, backend=backend)
    assert used in ("open3d", "matplotlib") and (backend == "auto" or used == "matplotlib")
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (H + 28 + 56, 3 * W, 3)  # truth | prediction | errors, titles, legend
    truth = image[28: 28 + H, :W]
    assert count(truth[:, : W // 2 - 10], PALETTE[0]) > 3000
    assert count(truth[:, W // 2 + 10:], PALETTE[1]) > 3000
    # The 100 wrong points are the plane's first grid row, y = -0.75: the image's bottom edge.
    errors = image[28: 28 + H, 2 * W:].astype(int)
    wrong = np.argwhere((np.abs(errors - WRONG_RED * 255) < 40).all(axis=-1))
    assert len(wrong) > 100 and wrong[:, 0].min() > H // 2


def test_synthetic_room_from_above_without_ceiling(tmp_path):
    synthetic = pytest.importorskip("pcseg.data.synthetic")
    from PIL import Image

    from pcseg.data.meta import load_dataset_meta

    meta = load_dataset_meta("synthetic_rooms")
    scene = synthetic.generate_room(seed=0, num_points=20000)
    ceiling, floor = meta.class_names.index("ceiling"), meta.class_names.index("floor")
    assert (scene["label"] == ceiling).any()
    out = tmp_path / "room.png"
    render_panels(scene, palette=meta.colors, class_names=meta.class_names, out_png=out, width=W, height=H)
    image = np.asarray(Image.open(out).convert("RGB"))
    assert image.shape == (H + 28 + 56, 2 * W, 3)  # RGB | ground truth
    truth = image[28: 28 + H, W:]
    assert (truth != 255).any(axis=-1).mean() > 0.2  # not blank
    # Seen from above with the ceiling cut away: the floor shows, the ceiling does not.
    assert count(truth, meta.colors[floor]) > 1000
    assert count(truth, meta.colors[ceiling]) == 0
