import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from pcseg.data.prepare import prepare
from pcseg.data.readers.s3dis import load_room
from pcseg.data.store import SceneStore
from raw_fixtures import s3dis_defect_room, s3dis_random_room, write_scannet_scene, write_tsv

REPO = Path(__file__).resolve().parents[1]


def _s3dis_raw(root: Path) -> Path:
    rng = np.random.default_rng(0)
    s3dis_defect_room(root)
    for area, room in [(1, "office_1"), (1, "office_2"), (2, "hallway_1"), (5, "office_36"), (6, "lobby_1")]:
        s3dis_random_room(root, area, room, rng, objects=3, lines=30)
    return root


def _contents(path: Path) -> dict:
    """Everything in a store: file attrs, and per scene every dataset and attr."""
    with h5py.File(path, "r") as f:
        out = {"attrs": {k: np.asarray(v).tolist() for k, v in f.attrs.items()}}
        for name in f:
            out[name] = {k: f[name][k][()].tolist() for k in f[name]}
            out[name]["attrs"] = {k: np.asarray(v).tolist() for k, v in f[name].attrs.items()}
    return out


def test_s3dis_prepare_matches_reader(tmp_path, capsys):
    raw = _s3dis_raw(tmp_path / "raw")
    assert prepare("s3dis", str(raw), str(tmp_path / "s.h5"), workers=1) == 0
    out = capsys.readouterr()
    assert "written" in out.out and "scenes/s" in out.out and "wall_3 (1).txt" in out.err
    store = SceneStore(tmp_path / "s.h5")
    assert store.names() == ["Area_1_office_1", "Area_1_office_2", "Area_2_hallway_1", "Area_5_hallway_6",
                             "Area_5_office_36", "Area_6_lobby_1"]
    assert SceneStore(tmp_path / "s.h5", split="Area_5").names() == ["Area_5_hallway_6", "Area_5_office_36"]
    with pytest.warns(UserWarning):
        expected = load_room(raw / "Area_5" / "hallway_6")
    loaded = store.load("Area_5_hallway_6")
    for key in ("coord", "color", "label", "instance"):
        np.testing.assert_array_equal(loaded[key], expected[key], err_msg=key)
    assert not (tmp_path / "s.h5.partial").exists()
    assert prepare("s3dis", str(raw), str(tmp_path / "s.h5"), workers=1) == 2  # refuses to overwrite


def test_parallel_equals_serial(tmp_path):
    raw = _s3dis_raw(tmp_path / "raw")
    assert prepare("s3dis", str(raw), str(tmp_path / "one.h5"), workers=1) == 0
    assert prepare("s3dis", str(raw), str(tmp_path / "two.h5"), workers=2) == 0
    assert _contents(tmp_path / "one.h5") == _contents(tmp_path / "two.h5")


def test_killed_run_resumes_to_the_same_store(tmp_path):
    raw = _s3dis_raw(tmp_path / "raw")
    assert prepare("s3dis", str(raw), str(tmp_path / "full.h5"), workers=1) == 0
    out = tmp_path / "killed.h5"
    env = dict(os.environ, PCSEG_PREPARE_PAUSE_AFTER="2")
    proc = subprocess.Popen([sys.executable, "-m", "pcseg", "prepare", "s3dis", str(raw), str(out), "--workers", "1"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:  # tqdm's bar shares the line: look for the text inside it
            if "paused after 2 scenes" in line:
                break
        else:
            pytest.fail("prepare ended without pausing after two scenes")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists() and Path(f"{out}.partial").exists()
    with h5py.File(f"{out}.partial", "r") as f:
        assert sum(bool(f[n].attrs.get("complete", False)) for n in f) == 2
    result = subprocess.run([sys.executable, "-m", "pcseg", "prepare", "s3dis", str(raw), str(out), "--workers", "1"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr and "2 of 6 scenes already done" in result.stderr
    assert _contents(out) == _contents(tmp_path / "full.h5")


def test_failing_scene_is_reported_and_others_written(tmp_path, capsys):
    raw = _s3dis_raw(tmp_path / "raw")
    bad = raw / "Area_2" / "hallway_1" / "Annotations" / "ceiling_1.txt"
    good_bytes = bad.read_bytes()
    bad.write_bytes(good_bytes + b"1.0 2.0 oops 4 5 6\n")
    assert prepare("s3dis", str(raw), str(tmp_path / "s.h5"), workers=1) == 1
    err = capsys.readouterr().err
    assert "FAILED Area_2_hallway_1" in err and "ceiling_1.txt:31:" in err and "'1.0 2.0 oops 4 5 6'" in err
    assert "stays incomplete" in err and not (tmp_path / "s.h5").exists()
    with h5py.File(tmp_path / "s.h5.partial", "r") as f:
        assert len(f) == 5 and "Area_2_hallway_1" not in f
    bad.write_bytes(good_bytes)  # fixed: the same command finishes the store
    assert prepare("s3dis", str(raw), str(tmp_path / "s.h5"), workers=1) == 0
    assert "Area_2_hallway_1" in SceneStore(tmp_path / "s.h5").names()


def test_scannet_raw_prepare_with_splits(tmp_path):
    raw = tmp_path / "scannet"
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    rgb = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], dtype=np.uint8)
    groups = [{"id": 0, "objectId": 0, "segments": [1], "label": "desk"}]
    for name in ("scene0000_00", "scene0011_00"):  # train, val
        write_scannet_scene(raw / "scans", name, xyz, rgb, np.array([1, 14, 0]), np.array([1, 1, 2]), groups, None)
    write_scannet_scene(raw / "scans_test", "scene0707_00", xyz, rgb, None, None, None, None)
    write_tsv(raw / "scannetv2-labels.combined.tsv", [("desk", 14)])
    assert prepare("scannet", str(raw), str(tmp_path / "val.h5"), workers=1, split="val") == 0
    assert SceneStore(tmp_path / "val.h5").names() == ["scene0011_00"]
    assert prepare("scannet", str(raw), str(tmp_path / "all.h5"), workers=1) == 0
    store = SceneStore(tmp_path / "all.h5")
    assert [store.split_of(n) for n in store.names()] == ["train", "val", "test"]
    assert store.load("scene0000_00")["label"].tolist() == [0, 12, -1]
    assert store.load("scene0707_00")["label"].tolist() == [-1, -1, -1]
    assert store.dataset == "scannet" and len(store.class_names) == 20


def test_scannet_npy_prepare(tmp_path, shared_data):
    assert prepare("scannet", str(shared_data / "scannet"), str(tmp_path / "s.h5"), workers=1) == 0
    store = SceneStore(tmp_path / "s.h5", split="train")
    assert store.names() == ["scene0000_00", "scene0000_01"]
    vert = np.load(shared_data / "scannet" / "scene0000_00_vert_all.npy")
    loaded = store.load("scene0000_00")
    np.testing.assert_array_equal(loaded["coord"], vert[:, :3])
    np.testing.assert_array_equal(np.rint(loaded["color"] * 255), vert[:, 3:6])


def test_files_prepare_with_split_folders(tmp_path):
    raw = tmp_path / "scans"
    (raw / "train").mkdir(parents=True)
    (raw / "val").mkdir()
    (tmp_path / "classes.yaml").write_text("name: garden\nclasses:\n  - {name: ground, color: [0, 255, 0]}\n"
                                           "  - {name: tree, color: [0, 100, 0]}\n")
    np.save(raw / "train" / "a.npy", np.array([[0, 0, 0, 1], [1, 1, 1, 0]], dtype=np.float32))
    (raw / "val" / "b.txt").write_text("0 0 0 0\n2 2 2 1\n")
    (raw / "val" / "c.txt").write_text("0 0 0 7\n")  # label outside the 2 classes
    code = prepare("files", str(raw), str(tmp_path / "f.h5"), workers=1, classes=str(tmp_path / "classes.yaml"))
    assert code == 1
    (raw / "val" / "c.txt").write_text("0 0 0 1\n")
    code = prepare("files", str(raw), str(tmp_path / "f.h5"), workers=1, classes=str(tmp_path / "classes.yaml"))
    assert code == 0
    store = SceneStore(tmp_path / "f.h5")
    assert store.dataset == "garden" and store.class_names == ["ground", "tree"]
    assert [(n, store.split_of(n)) for n in store.names()] == [("a", "train"), ("b", "val"), ("c", "val")]
    assert store.load("b")["label"].tolist() == [0, 1]


def test_cli_reports_user_errors(tmp_path, capsys):
    from pcseg.cli import main

    assert main(["prepare", "s3dis", str(tmp_path / "missing"), str(tmp_path / "s.h5")]) == 2
    assert "no S3DIS rooms found (expected Area_N/<room>/Annotations/*.txt)" in capsys.readouterr().err
    raw = _s3dis_raw(tmp_path / "raw")
    assert main(["prepare", "s3dis", str(raw), str(tmp_path / "s.h5"), "--split", "Area_9"]) == 2
    assert "no scenes of split 'Area_9'" in capsys.readouterr().err
    assert main(["prepare", "s3dis", str(raw), str(tmp_path / "s.h5"), "--split", "Area_1", "--workers", "1"]) == 0
    assert SceneStore(tmp_path / "s.h5").names() == ["Area_1_office_1", "Area_1_office_2"]
