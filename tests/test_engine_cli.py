"""`pcseg train / eval / predict / demo` end to end on tiny synthetic rooms (real MinkUNet)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from plyfile import PlyData

from pcseg.cli import main
from pcseg.config import load_config
from pcseg.data.meta import load_dataset_meta
from pcseg.data.synthetic import generate_room
from pcseg.engine.predict_cli import write_scannet

TINY = ["data.train_rooms=2", "data.val_rooms=1", "data.room_points=1500", "data.voxel_size=0.4",
        "model.name=minkunet14a", "train.epochs=1", "data.batch_size=2", "train.progress=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "synthetic_demo", *TINY, "--out", str(out)]) == 0
    return out


def test_train_writes_the_run_folder(run):
    for name in ("config.yaml", "log.jsonl", "last.pt", "best.pt", "metrics.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["protocol"] == "ratio:0.01" and metrics["num_labelled_points"] == 2 * 15  # 1% of 1500, twice
    assert "data:\n" in (run / "config.yaml").read_text()


def test_refuses_to_overwrite_and_resume_needs_a_run(run, tmp_path, capsys):
    assert main(["train", "synthetic_demo", *TINY, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "synthetic_demo", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "last.pt" in capsys.readouterr().err


def test_resume_with_more_epochs_continues(run, tmp_path):
    import shutil
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert main(["train", "synthetic_demo", "train.epochs=2", "--resume", "--out", str(copy)]) == 0
    steps = [json.loads(line)["step"] for line in (copy / "log.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 2  # one step per epoch, the second epoch added


def test_bad_override_is_one_clear_line(capsys):
    assert main(["train", "synthetic_demo", "train.epoch=3"]) == 2
    assert "did you mean 'train.epochs'" in capsys.readouterr().err


def test_out_of_range_value_is_one_clear_line(capsys, tmp_path):
    """A value the trainer refuses (not the config schema) also ends in one line, no traceback."""
    assert main(["train", "synthetic_demo", *TINY, "train.epochs=0", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "pcseg train: config key 'train.epochs': expected >= 1, got 0"
    assert not (tmp_path / "run" / "last.pt").exists()


def test_eval_writes_metrics_and_confusion(run, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", str(run), "--votes", "2", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["votes"] == 2 and int(np.sum(metrics["confusion"])) == 1500
    rows = (out / "confusion.csv").read_text().splitlines()
    names = load_dataset_meta("synthetic_rooms").class_names
    assert rows[0].split(",")[1:] == list(names) and len(rows) == len(names) + 1
    assert [list(map(int, r.split(",")[1:])) for r in rows[1:]] == metrics["confusion"]
    assert (out / "confusion.png").stat().st_size > 0


def test_predict_ply_and_npy(run, tmp_path):
    from pcseg.viz.export import write_ply
    scene = generate_room(seed=5, num_points=1200)
    src = tmp_path / "scan.ply"
    write_ply(src, scene["coord"], scene["color"], scene["label"])
    out = tmp_path / "pred"
    assert main(["predict", str(run), str(src), "--out", str(out), "--format", "ply,npy"]) == 0
    label = np.load(out / "scan_label.npy")
    conf = np.load(out / "scan_confidence.npy")
    assert label.shape == (1200,) and label.dtype == np.int64 and ((conf > 0) & (conf <= 1)).all()
    vertex = PlyData.read(str(out / "scan.ply"))["vertex"]
    # original properties kept (its `label` too), prediction added beside them
    np.testing.assert_array_equal(vertex["label"], scene["label"])
    np.testing.assert_array_equal(vertex["pred_label"], label)
    np.testing.assert_allclose(vertex["confidence"], conf)
    colors = load_dataset_meta("synthetic_rooms").colors
    np.testing.assert_array_equal(np.stack([vertex["class_red"], vertex["class_green"], vertex["class_blue"]], 1),
                                  colors[label])


def test_predict_scannet_format_needs_raw_ids(run, tmp_path, capsys):
    src = tmp_path / "scan.npy"
    np.save(src, np.concatenate([generate_room(1, 1000)["coord"], generate_room(1, 1000)["color"]], 1))
    assert main(["predict", str(run), str(src), "--out", str(tmp_path), "--format", "scannet"]) == 2
    assert "raw ids" in capsys.readouterr().err


def test_scannet_submission_is_nyu40_ids(tmp_path):
    write_scannet(tmp_path / "scene0707_00.txt", np.array([0, 1, 19, 12]), load_dataset_meta("scannet"))
    assert (tmp_path / "scene0707_00.txt").read_text() == "1\n2\n39\n14\n"


@pytest.mark.parametrize("jobs", [1, 2])  # one model after the other; side by side in workers
def test_demo_end_to_end_tiny(tmp_path, jobs):
    out = tmp_path / "demo"
    assert main(["demo", "--rooms", "2", "--val-rooms", "1", "--epochs", "1", "--points", "1000",
                 "--jobs", str(jobs), "--out", str(out)]) == 0
    rows = json.loads((out / "summary.json").read_text())
    weak_method = load_config("synthetic_demo").method.name
    assert [r["method"] for r in rows[:2]] == [f"{weak_method} (1% labels)", "supervised (full labels)"]
    assert [r["labels_used"] for r in rows[:2]] == [2 * 10, 2 * 1000]
    for name in ("weak_1pct", "full"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["miou"] == pytest.approx(rows[0 if name == "weak_1pct" else 1]["miou"])
        assert (out / f"{name}_val_room.png").stat().st_size > 0
        assert (out / name / "curves.png").is_file() and (out / name / "confusion.png").is_file()
    assert rows[2]["ratio_of_full_miou"] == pytest.approx(rows[0]["miou"] / rows[1]["miou"])


def test_demo_validates_only_the_last_model():
    """The demo reports the model it ends with: one validation at the last epoch, unless asked."""
    from pcseg.cli import build_parser
    from pcseg.engine.demo import demo_config
    parser = build_parser()
    assert demo_config(parser.parse_args(["demo", "--epochs", "3"]), None).train.val_every == 3
    asked = parser.parse_args(["demo", "--epochs", "3", "train.val_every=1"])
    assert demo_config(asked, "ratio:0.01").train.val_every == 1
