import hashlib
import pickle

import h5py
import numpy as np
import pytest

from pcseg import __version__
from pcseg.data.store import SceneStore, complete_scenes, open_for_writing, sha256_files, write_scene


def _scene(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "coord": rng.uniform(-5, 5, (n, 3)).astype(np.float32),
        "color": (rng.integers(0, 256, (n, 3)) / 255.0).astype(np.float32),
        "label": rng.integers(-1, 13, n).astype(np.int64),
        "instance": rng.integers(-1, 40, n).astype(np.int64),
    }


def _write(path, scenes: dict[str, tuple[dict, str]]) -> None:
    with open_for_writing(path, "s3dis", ["a", "b"], "1") as store:
        for name, (scene, split) in scenes.items():
            write_scene(store, name, scene, split, f"sum-{name}")


def test_round_trip_dtypes_and_attrs(tmp_path):
    a, b = _scene(100, 0), _scene(70000, 1)  # b spans two chunks
    a["normal"] = np.tile(np.array([[0, 0, 1]], dtype=np.float32), (100, 1))
    _write(tmp_path / "s.h5", {"room_a": (a, "Area_1"), "room_b": (b, "Area_5")})
    store = SceneStore(tmp_path / "s.h5")
    assert store.names() == ["room_a", "room_b"] and store.splits() == ["Area_1", "Area_5"]
    assert store.dataset == "s3dis" and store.class_names == ["a", "b"] and store.reader_version == "1"
    for name, scene in (("room_a", a), ("room_b", b)):
        loaded = store.load(name)
        assert loaded["name"] == name
        for key, value in scene.items():
            assert loaded[key].dtype == value.dtype, key
            np.testing.assert_array_equal(loaded[key], value, err_msg=key)  # k/255 colours survive uint8
    assert store.num_points("room_b") == 70000 and store.checksum("room_a") == "sum-room_a"
    with h5py.File(tmp_path / "s.h5", "r") as f:
        assert f.attrs["pcseg_version"] == __version__
        g = f["room_b"]
        assert g["coord"].dtype == np.float32 and g["color"].dtype == np.uint8
        assert g["label"].dtype == np.int16 and g["instance"].dtype == np.int32
        assert g["coord"].compression is not None and g["coord"].chunks[0] < 70000
        assert g.attrs["split"] == "Area_5" and bool(g.attrs["complete"])


def test_split_filter_and_missing(tmp_path):
    _write(tmp_path / "s.h5", {"r1": (_scene(5, 0), "train"), "r2": (_scene(5, 1), "val")})
    assert SceneStore(tmp_path / "s.h5", split="val").names() == ["r2"]
    with pytest.raises(ValueError, match=r"no scenes in split 'test'; splits: train, val"):
        SceneStore(tmp_path / "s.h5", split="test")
    with pytest.raises(KeyError, match="no scene 'r1' in split 'val'"):
        SceneStore(tmp_path / "s.h5", split="val").load("r1")
    with pytest.raises(FileNotFoundError, match="no such scene store"):
        SceneStore(tmp_path / "nope.h5")


def test_half_written_scene_is_dropped(tmp_path):
    path = tmp_path / "s.h5"
    _write(path, {"done": (_scene(5, 0), "train")})
    with h5py.File(path, "a") as f:  # what a kill between datasets and `complete` leaves behind
        f.create_group("half").create_dataset("coord", data=np.zeros((3, 3), np.float32))
    assert SceneStore(path).names() == ["done"]
    with open_for_writing(path, "s3dis", ["a", "b"], "1") as store:
        assert sorted(store) == ["done"] and complete_scenes(store) == {"done"}
    with pytest.raises(ValueError, match=r"holds dataset='s3dis', this run writes 'scannet'"):
        open_for_writing(path, "scannet", [], "1")


def test_values_that_do_not_fit_fail(tmp_path):
    scene = _scene(3, 0)
    scene["label"] = np.array([0, 40000, 1])
    with open_for_writing(tmp_path / "s.h5", "x", [], "1") as store:
        with pytest.raises(ValueError, match=r"scene 'big': 'label' values 0..40000 do not fit int16"):
            write_scene(store, "big", scene, "train", "")


def test_sha256_files_and_pickling(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"abc")
    (tmp_path / "b.txt").write_bytes(b"")
    expected = hashlib.sha256(b"a.txt\0abc" + b"b.txt\0").hexdigest()
    assert sha256_files([tmp_path / "a.txt", tmp_path / "b.txt"]) == expected
    _write(tmp_path / "s.h5", {"r": (_scene(4, 2), "train")})
    store = SceneStore(tmp_path / "s.h5")
    store.load("r")
    clone = pickle.loads(pickle.dumps(store))  # DataLoader workers receive a copy
    np.testing.assert_array_equal(clone.load("r")["coord"], store.load("r")["coord"])
