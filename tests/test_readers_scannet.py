import collections
import csv

import numpy as np
import pytest

from pcseg.data.meta import load_dataset_meta
from pcseg.data.readers.scannet import (
    load_scannet_npy, load_scannet_scene, nyu40_to_label, official_split, read_label_map,
)
from raw_fixtures import write_scannet_scene, write_tsv

XYZ = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1], [2, 0.5, 0.25]], dtype=np.float32)
RGB = np.array([[0, 0, 0], [255, 255, 255], [10, 20, 30], [40, 50, 60], [70, 80, 90], [1, 2, 3]], dtype=np.uint8)
NYU40 = np.array([1, 2, 13, 39, 0, 40])
SEGS = np.array([10, 10, 20, 20, 30, 40])
GROUPS = [{"id": 0, "objectId": 0, "segments": [10], "label": "wall"},
          {"id": 1, "objectId": 1, "segments": [20, 40], "label": "chair"}]
# rotate 90 degrees about z, then shift: (x, y, z) -> (1 - y, x + 2, z + 3)
ALIGN = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], dtype=float)


def test_raw_scene_loads_exactly(tmp_path):
    folder = write_scannet_scene(tmp_path / "scans", "scene0000_00", XYZ, RGB, NYU40, SEGS, GROUPS, ALIGN)
    scene = load_scannet_scene(folder)
    expected_coord = np.stack([1 - XYZ[:, 1], XYZ[:, 0] + 2, XYZ[:, 2] + 3], axis=1)
    np.testing.assert_allclose(scene["coord"], expected_coord, atol=1e-6)
    np.testing.assert_allclose(scene["color"], RGB / 255.0, atol=1e-7)
    # nyu40 1 wall, 2 floor, 13 blinds (not benchmark), 39 otherfurniture, 0 unannotated, 40 otherprop
    assert scene["label"].tolist() == [0, 1, -1, 19, -1, -1]
    assert scene["instance"].tolist() == [0, 0, 1, 1, -1, 1]
    assert scene["coord"].dtype == np.float32 and scene["label"].dtype == np.int64
    assert scene["name"] == "scene0000_00"


def test_labels_from_aggregation_and_tsv(tmp_path):
    folder = write_scannet_scene(tmp_path, "scene0001_00", XYZ, RGB, None, SEGS, GROUPS, None)
    write_tsv(tmp_path / "labels.tsv", [("wall", 1), ("chair", 5)])
    scene = load_scannet_scene(folder, tsv=tmp_path / "labels.tsv")
    chair = load_dataset_meta("scannet").class_names.index("chair")
    assert scene["label"].tolist() == [0, 0, chair, chair, -1, chair]
    np.testing.assert_array_equal(scene["coord"], XYZ)  # no axisAlignment line: identity
    with pytest.raises(ValueError, match="need scannetv2-labels.combined.tsv"):
        load_scannet_scene(folder)


def test_test_scene_has_no_labels(tmp_path):
    folder = write_scannet_scene(tmp_path / "scans_test", "scene0707_00", XYZ, RGB, None, None, None, None)
    scene = load_scannet_scene(folder)
    assert scene["label"].tolist() == [-1] * 6 and scene["instance"].tolist() == [-1] * 6


def test_segs_length_mismatch_fails(tmp_path):
    folder = write_scannet_scene(tmp_path, "scene0002_00", XYZ, RGB, NYU40, SEGS[:5], GROUPS, None)
    with pytest.raises(ValueError, match=r"segs.json: 5 segIndices for a mesh of 6 vertices"):
        load_scannet_scene(folder)


def test_official_splits():
    train, val, test = official_split("train"), official_split("val"), official_split("test")
    assert (len(train), len(val), len(test)) == (1201, 312, 100)
    assert test[0] == "scene0707_00" and test[-1] == "scene0806_00"
    assert not set(train) & set(val) and "scene0000_00" in train
    with pytest.raises(ValueError, match="unknown ScanNet split 'dev'"):
        official_split("dev")


def test_tsv_crlf_and_lf(tmp_path, shared_data):
    write_tsv(tmp_path / "crlf.tsv", [("kitchen cabinets", 3), ("trash can", 39)])
    assert read_label_map(tmp_path / "crlf.tsv") == {"kitchen cabinets": 3, "trash can": 39}
    official = read_label_map(shared_data / "scannet" / "scannetv2-labels.combined.tsv")
    assert len(official) == 607 and official["wall"] == 1 and official["chair"] == 5


def _reference_histogram(nyu40: np.ndarray, tsv_path) -> np.ndarray:
    """Class histogram by a Python loop: the benchmark class of an NYU40 id is the class
    whose name equals that id's `nyu40class` in the official tsv."""
    names = list(load_dataset_meta("scannet").class_names)
    id_to_name = {}
    with open(tsv_path, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            id_to_name[int(row["nyu40id"])] = row["nyu40class"].replace("refridgerator", "refrigerator")
    hist = np.zeros(len(names), dtype=np.int64)
    for raw, count in collections.Counter(nyu40.tolist()).items():
        if id_to_name.get(raw) in names:
            hist[names.index(id_to_name[raw])] += count
    return hist


def test_real_scannet_npy_histogram(shared_data):
    folder = shared_data / "scannet"
    scene = load_scannet_npy(folder, "scene0000_00")
    nyu40 = np.load(folder / "scene0000_00_sem_label_all.npy")
    assert len(scene["coord"]) == 81369 and scene["color"].max() <= 1.0
    expected = _reference_histogram(nyu40, folder / "scannetv2-labels.combined.tsv")
    hist = np.bincount(scene["label"][scene["label"] >= 0], minlength=20)
    assert hist.tolist() == expected.tolist()
    assert int((scene["label"] == -1).sum()) == len(nyu40) - int(expected.sum())
    assert scene["instance"].min() == -1 and len(np.unique(scene["instance"][scene["instance"] >= 0])) == 67


def test_nyu40_to_label_table():
    assert nyu40_to_label(np.array([0, 1, 14, 40, 39, 99])).tolist() == [-1, 0, 12, -1, 19, -1]
