import numpy as np
import pytest
from plyfile import PlyData

from pcseg.viz.export import export_prediction, write_ply

PALETTE = np.array([[255, 0, 0], [0, 0, 255], [0, 160, 0]], np.uint8)
COORD = np.array([[0, 0, 0], [1.5, 0, 0], [0, 2.25, -1], [3, 3, 3]], np.float32)
LABEL = np.array([0, 1, 2, -1])
PRED = np.array([0, 2, 2, 1])


def test_ply_header_and_values(tmp_path):
    path = export_prediction(tmp_path / "pred.ply", {"coord": COORD, "label": LABEL}, PRED, PALETTE,
                             confidence=np.array([0.9, 0.5, 0.25, 1.0]))
    raw = path.read_bytes()
    header = raw[: raw.index(b"end_header\n")].decode()
    assert "format binary_little_endian 1.0" in header
    assert [line.split()[-1] for line in header.splitlines() if line.startswith("property")] == [
        "x", "y", "z", "red", "green", "blue", "label", "confidence"]
    v = PlyData.read(str(path))["vertex"].data
    np.testing.assert_array_equal(np.c_[v["x"], v["y"], v["z"]], COORD)
    np.testing.assert_array_equal(np.c_[v["red"], v["green"], v["blue"]], [[255, 0, 0], [0, 160, 0], [0, 160, 0], [0, 0, 255]])
    np.testing.assert_array_equal(v["label"], PRED)
    np.testing.assert_allclose(v["confidence"], [0.9, 0.5, 0.25, 1.0], rtol=1e-7)
    assert v.dtype["label"] == np.dtype("<i4") and v.dtype["red"] == np.dtype("u1")


def test_error_ply_read_by_open3d(tmp_path):
    o3d = pytest.importorskip("open3d")
    path = export_prediction(tmp_path / "errors.ply", {"coord": COORD, "label": LABEL}, PRED, PALETTE, errors=True)
    cloud = o3d.io.read_point_cloud(str(path))
    np.testing.assert_allclose(np.asarray(cloud.points), COORD)
    # right, wrong, right, no ground truth -> grey, red, grey, light grey (0..255 rounded)
    expected = np.round(np.array([[0.55] * 3, [0.9, 0.05, 0.05], [0.55] * 3, [0.78] * 3]) * 255) / 255
    np.testing.assert_allclose(np.asarray(cloud.colors), expected, atol=1e-9)
    assert "confidence" not in PlyData.read(str(path))["vertex"].data.dtype.names


def test_uint8_colours_and_errors(tmp_path):
    path = write_ply(tmp_path / "x.ply", COORD, np.full((4, 3), 7, np.uint8), LABEL)
    assert (PlyData.read(str(path))["vertex"].data["red"] == 7).all()
    with pytest.raises(ValueError, match="'label' has 3 values for 4 points"):
        write_ply(tmp_path / "y.ply", COORD, np.zeros((4, 3)), LABEL[:3])
    with pytest.raises(ValueError, match="needs the scene's ground truth"):
        export_prediction(tmp_path / "z.ply", {"coord": COORD}, PRED, PALETTE, errors=True)
