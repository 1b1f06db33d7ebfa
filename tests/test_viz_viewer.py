"""The viewer's colours, markers and key switching (with a stand-in window), and `pcseg viz`."""
import argparse

import numpy as np
import pytest

from pcseg.viz.colors import UNLABELLED_GREY, colorize
from pcseg.viz.modes import mode_colors
from pcseg.viz.viewer import NO_WINDOW, key_help, marker_mesh, show

PALETTE = np.array([[255, 0, 0], [0, 0, 255], [0, 160, 0]], np.uint8)
NAMES = ["a", "b", "c"]


def small_scene() -> dict:
    rng = np.random.default_rng(0)
    label = np.array([0, 0, 1, 1, 2, 2, -1, 1])
    weak = np.full(8, -1)
    weak[[1, 4]] = label[[1, 4]]
    return {"coord": rng.uniform(0, 3, (8, 3)).astype(np.float32),
            "color": rng.uniform(0, 1, (8, 3)).astype(np.float32), "label": label, "weak_label": weak}


def test_mode_colors():
    scene = small_scene()
    pred = np.array([0, 1, 1, 1, 2, 0, 0, 1])
    colors = mode_colors(scene, PALETTE, pred)
    assert list(colors) == ["rgb", "truth", "pred", "errors", "labelled"]
    np.testing.assert_array_equal(colors["truth"], colorize(scene["label"], PALETTE))
    np.testing.assert_allclose(colors["labelled"][[1, 4]], [[1, 0, 0], [0, 160 / 255, 0]], atol=1e-7)
    np.testing.assert_array_equal(colors["labelled"][[0, 2, 3, 5, 6, 7]], np.tile(UNLABELLED_GREY, (6, 1)))
    wrong = np.flatnonzero(np.any(colors["errors"] != colors["errors"][0], axis=1))
    np.testing.assert_array_equal(wrong, [1, 5, 6])  # 1 and 5 wrong, 6 has no ground truth
    assert list(mode_colors({"coord": scene["coord"]}, PALETTE, pred)) == ["pred"]
    help_text = key_help(["truth", "pred"])
    assert "2  ground truth classes" in help_text and "3  predicted classes" in help_text
    assert "1  RGB" not in help_text


def test_marker_mesh_octahedra_face_outwards():
    centres = np.array([[0.0, 0, 0], [5, 5, 5]])
    vertices, triangles, colors = marker_mesh(centres, np.array([[1.0, 0, 0], [0, 1, 0]]), 0.5)
    assert vertices.shape == (12, 3) and triangles.shape == (16, 3) and colors.shape == (12, 3)
    np.testing.assert_allclose(np.abs(vertices[:6]).sum(axis=1), 0.5)
    assert triangles[:8].max() == 5 and triangles[8:].min() == 6
    tri = vertices[triangles]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = tri.mean(axis=1) - np.repeat(centres, 8, axis=0)
    assert ((normal * outward).sum(axis=1) > 0).all()
    np.testing.assert_array_equal(colors[6:], np.tile([0, 1, 0], (6, 1)))


class FakeWindow:
    """Stands in for VisualizerWithKeyCallback: `run` presses keys instead of a user."""

    presses = [ord("5"), ord("4"), ord("1")]

    def __init__(self):
        self.callbacks, self.geometries, self.seen = {}, [], []

    def create_window(self, window_name):
        self.title = window_name
        return True

    def add_geometry(self, geometry, reset_bounding_box=True):
        self.geometries.append(geometry)

    def remove_geometry(self, geometry, reset_bounding_box=True):
        self.geometries.remove(geometry)

    def update_geometry(self, geometry):
        pass

    def register_key_callback(self, key, callback):
        self.callbacks[key] = callback

    def get_render_option(self):
        return argparse.Namespace(point_size=1.0)

    def run(self):
        for key in self.presses:
            self.callbacks[key](self)
            self.seen.append((len(self.geometries), np.asarray(self.geometries[0].colors).copy()))

    def destroy_window(self):
        FakeWindow.last = self


def test_show_switches_modes(monkeypatch, capsys):
    o3d = pytest.importorskip("open3d")
    monkeypatch.setattr(o3d.visualization, "VisualizerWithKeyCallback", FakeWindow)
    monkeypatch.setenv("DISPLAY", ":0")
    scene = small_scene()
    show(scene, PALETTE, NAMES, pred=np.array([0, 1, 1, 1, 2, 0, 0, 1]))
    printed = capsys.readouterr().out
    assert "5  weakly labelled points" in printed and "  2 c" in printed
    (n5, c5), (n4, c4), (n1, c1) = FakeWindow.last.seen
    assert (n5, n4, n1) == (2, 1, 1)  # markers shown in "labelled" mode only
    colors = mode_colors(scene, PALETTE, np.array([0, 1, 1, 1, 2, 0, 0, 1]))
    np.testing.assert_allclose(c5, colors["labelled"], atol=1e-7)
    np.testing.assert_allclose(c4, colors["errors"], atol=1e-7)
    np.testing.assert_allclose(c1, colors["rgb"], atol=1e-7)
    assert set(FakeWindow.last.callbacks) == {ord(k) for k in "12345"}


def test_no_display_says_use_png(monkeypatch, tmp_path, capsys):
    from pcseg.viz.cli import main

    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    np.savez(tmp_path / "s.npz", coord=np.zeros((3, 3), np.float32), label=np.array([0, 1, 2]))
    args = argparse.Namespace(input=str(tmp_path / "s.npz"), pred=None, protocol=None, png=None, dataset=None)
    assert main(args) == 2
    assert "no display" in capsys.readouterr().err and "--png" in NO_WINDOW


def test_viz_cli_png(tmp_path, capsys):
    pytest.importorskip("pcseg.data.readers.files")
    from PIL import Image

    from pcseg.viz.cli import main
    from pcseg.weak.protocol import make_protocol
    from pcseg.weak.protocol_file import save_protocol

    xs, ys = np.meshgrid(np.linspace(0, 2, 41), np.linspace(0, 1.5, 31))
    coord = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1).astype(np.float32)
    label = (coord[:, 0] > 1).astype(np.int64)
    np.savez(tmp_path / "room.npz", coord=coord, color=np.full_like(coord, 0.5), label=label)
    np.save(tmp_path / "pred.npy", 1 - label)
    save_protocol(make_protocol("count:20", [("room", {"label": label})], seed=0, source="test"),
                  tmp_path / "weak.npz")
    args = argparse.Namespace(input=str(tmp_path / "room.npz"), pred=str(tmp_path / "pred.npy"),
                              protocol=str(tmp_path / "weak.npz"), png=str(tmp_path / "out.png"),
                              dataset=None)
    assert main(args) == 0
    assert "wrote" in capsys.readouterr().out
    assert Image.open(tmp_path / "out.png").size == (5 * 480, 360 + 28 + 56)

    np.save(tmp_path / "pred.npy", label[:10])
    assert main(args) == 2
    assert "10 predictions for a scene of 1271 points" in capsys.readouterr().err


def test_store_spec():
    from pcseg.viz.inputs import split_store_spec

    assert split_store_spec("data/s3dis.h5:Area_5/office_1") == ("data/s3dis.h5", "Area_5/office_1")
    assert split_store_spec("scan.ply") == ("scan.ply", None)
    assert split_store_spec("C:/scans/a.ply") == ("C:/scans/a.ply", None)


def test_load_input_from_store(tmp_path):
    store_mod = pytest.importorskip("pcseg.data.store")
    from pcseg.viz.inputs import load_input

    scene = small_scene()
    del scene["weak_label"]
    with store_mod.open_for_writing(tmp_path / "s.h5", "synthetic_rooms", NAMES, "test") as f:
        store_mod.write_scene(f, "room_0", scene, "val", "sum")
    loaded, dataset = load_input(f"{tmp_path / 's.h5'}:room_0")
    assert dataset == "synthetic_rooms" and loaded["name"] == "room_0"
    np.testing.assert_array_equal(loaded["label"], scene["label"])
    np.testing.assert_allclose(loaded["coord"], scene["coord"])
    with pytest.raises(ValueError, match="no scene 'room_9'; scenes: room_0"):
        load_input(f"{tmp_path / 's.h5'}:room_9")
