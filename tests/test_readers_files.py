import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from pcseg.data.readers.files import load_scene_file

RNG = np.random.default_rng(0)
N = 7
XYZ = np.round(RNG.uniform(-3, 3, (N, 3)), 3).astype(np.float32)
RGB = RNG.integers(0, 256, (N, 3)).astype(np.uint8)
LABEL = np.array([0, 1, 2, 1, 0, -1, 2])


def _classes(tmp_path, ids=None):
    # a new file name per class list: load_dataset_meta caches by path
    path = tmp_path / ("classes.yaml" if ids is None else "classes_ids.yaml")
    rows = [f"  - {{name: c{i}, color: [1, 2, 3]{'' if ids is None else f', id: {ids[i]}'}}}" for i in range(3)]
    path.write_text("name: mine\nclasses:\n" + "\n".join(rows) + "\n")
    return str(path)


def _check(scene, color=True, label=True):
    np.testing.assert_array_equal(scene["coord"], XYZ)
    assert scene["coord"].dtype == np.float32
    if color:
        np.testing.assert_allclose(scene["color"], RGB / 255.0, atol=1e-7)
        assert scene["color"].dtype == np.float32
    if label:
        assert scene["label"].tolist() == LABEL.tolist() and scene["label"].dtype == np.int64


def test_ply_cloudcompare_names_with_field_map(tmp_path):
    v = np.empty(N, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("r", "u1"), ("g", "u1"), ("b", "u1"),
                           ("scalar_Classification", "f4")])
    v["x"], v["y"], v["z"] = XYZ.T
    v["r"], v["g"], v["b"] = RGB.T
    v["scalar_Classification"] = LABEL
    PlyData([PlyElement.describe(v, "vertex")], text=False).write(str(tmp_path / "scan.ply"))
    scene = load_scene_file(tmp_path / "scan.ply", classes=_classes(tmp_path),
                            fields={"label": "scalar_Classification", "color": ["r", "g", "b"]})
    _check(scene)
    _check(load_scene_file(tmp_path / "scan.ply"))  # auto-detected: r/g/b and scalar_classification
    assert scene["name"] == "scan"


def test_ply_ascii_red_green_blue_label(tmp_path):
    v = np.empty(N, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                           ("blue", "u1"), ("label", "i4")])
    v["x"], v["y"], v["z"] = XYZ.T
    v["red"], v["green"], v["blue"] = RGB.T
    v["label"] = LABEL
    PlyData([PlyElement.describe(v, "vertex")], text=True).write(str(tmp_path / "scan.ply"))
    _check(load_scene_file(tmp_path / "scan.ply"))


def test_npy_columns_and_npz_arrays(tmp_path):
    np.save(tmp_path / "a.npy", np.concatenate([XYZ, RGB, LABEL[:, None]], axis=1).astype(np.float64))
    _check(load_scene_file(tmp_path / "a.npy"))
    np.savez(tmp_path / "b.npz", xyz=XYZ, rgb=RGB, semantic=LABEL)
    _check(load_scene_file(tmp_path / "b.npz"))
    np.savez(tmp_path / "c.npz", pts=XYZ, cls=LABEL)
    _check(load_scene_file(tmp_path / "c.npz", fields={"coord": "pts", "label": "cls"}), color=False)
    np.save(tmp_path / "d.npy", np.concatenate([LABEL[:, None], XYZ], axis=1))
    _check(load_scene_file(tmp_path / "d.npy", fields={"coord": [1, 2, 3], "label": 0}), color=False)


def test_txt_csv_with_and_without_header(tmp_path):
    rows = [f"{x:.3f} {y:.3f} {z:.3f} {r} {g} {b} {lab}" for (x, y, z), (r, g, b), lab in zip(XYZ, RGB, LABEL)]
    (tmp_path / "a.txt").write_text("\n".join(rows) + "\n")
    _check(load_scene_file(tmp_path / "a.txt"))
    csv_rows = ["//X,Y,Z,R,G,B,Classification"] + [r.replace(" ", ",") for r in rows]
    (tmp_path / "b.csv").write_text("\r\n".join(csv_rows))
    _check(load_scene_file(tmp_path / "b.csv"))
    tab_rows = ["lab\tpx\tpy\tpz"] + [f"{lab}\t{x:.3f}\t{y:.3f}\t{z:.3f}" for (x, y, z), lab in zip(XYZ, LABEL)]
    (tmp_path / "c.txt").write_text("\n".join(tab_rows))
    _check(load_scene_file(tmp_path / "c.txt", fields={"coord": ["px", "py", "pz"], "label": "lab"}), color=False)


def test_txt_bad_line_names_file_line(tmp_path):
    (tmp_path / "a.csv").write_text("x,y,z\n1,2,3\n1,2\n")
    with pytest.raises(ValueError, match=r"a.csv:3: expected 3 numbers, got '1 2'"):
        load_scene_file(tmp_path / "a.csv")


def test_las_round_trip(tmp_path):
    laspy = pytest.importorskip("laspy")
    header = laspy.LasHeader(point_format=3, version="1.2")
    header.scales = np.array([0.001, 0.001, 0.001])
    header.offsets = np.array([500000.0, 4000000.0, 0.0])
    las = laspy.LasData(header)
    utm = XYZ.astype(np.float64) + np.array([500100.0, 4000200.0, 50.0])
    las.x, las.y, las.z = utm.T
    las.red, las.green, las.blue = (RGB.astype(np.uint16) * 257).T  # 16-bit colour, as LAS stores it
    las.classification = np.array([1, 2, 3, 2, 1, 1, 3], dtype=np.uint8)
    las.write(str(tmp_path / "scan.las"))
    scene = load_scene_file(tmp_path / "scan.las", classes=_classes(tmp_path, ids=[1, 2, 3]))
    np.testing.assert_allclose(scene["coord"] + scene["origin"], utm, atol=1e-3)
    np.testing.assert_array_equal(scene["origin"], np.floor(utm.min(axis=0)))
    np.testing.assert_allclose(scene["color"], RGB / 255.0, atol=1e-6)
    assert scene["label"].tolist() == [0, 1, 2, 1, 0, 0, 2]


def test_label_out_of_range_names_file_and_value(tmp_path):
    np.save(tmp_path / "a.npy", np.concatenate([XYZ, (LABEL + 2)[:, None]], axis=1))
    with pytest.raises(ValueError, match=r"a.npy: label 3 is outside the 3 classes of mine"):
        load_scene_file(tmp_path / "a.npy", classes=_classes(tmp_path))
    with pytest.raises(ValueError, match=r"a.npy: label 4 is not a class id of mine \(ids: 1, 2, 3\)"):
        load_scene_file(tmp_path / "a.npy", classes=_classes(tmp_path, ids=[1, 2, 3]))


def test_unknown_field_and_missing_column(tmp_path):
    np.save(tmp_path / "a.npy", XYZ)
    with pytest.raises(ValueError, match="unknown scene key"):
        load_scene_file(tmp_path / "a.npy", fields={"colour": [3, 4, 5]})
    with pytest.raises(ValueError, match=r"fields\['label'\] = 5 not found; available: 0, 1, 2"):
        load_scene_file(tmp_path / "a.npy", fields={"label": 5})
    with pytest.raises(ValueError, match="unsupported file type '.obj'"):
        load_scene_file(tmp_path / "a.obj")
