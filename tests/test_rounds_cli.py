"""`pcseg rounds`: round 0 from the recipe's method or a teacher, pseudo labels checked against
a direct prediction of the round-0 network."""
import json

import numpy as np
import pytest
import torch

from pcseg.cli import main
from pcseg.config import load_config
from pcseg.data.contract import IGNORE
from pcseg.engine.build import build_source, load_trained, scene_inference, train_dataset
from pcseg.engine.trainer import make_logits_fn

# two tiny rooms; round 0 = label propagation; every unlabelled point pseudo-labelled (threshold 0)
RECIPE = ["model.name=minkunet14a", "data.voxel_size=0.2", "data.train_rooms=2", "data.val_rooms=1",
          "data.room_points=1000", "data.protocol=ratio:0.05", "data.batch_size=2", "data.augment=false",
          "train.epochs=1", "train.progress=false", "train.amp=false", "train.device=cpu",
          "optim.name=sgd", "optim.momentum=0", "method.name=propagation", "method.class_weights=true",
          "method.pseudo.dars=false", "method.pseudo.threshold=0.0"]

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def rounds_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rounds") / "st"
    assert main(["rounds", "synthetic_demo", *RECIPE, "--rounds", "1", "--out", str(out)]) == 0
    return out


def direct_pseudo_accuracy(run: str) -> float:
    """Accuracy of the argmax of checkpoint `run`'s network on the unlabelled training points, predicted here."""
    model, cfg, _ = load_trained(run, torch.device("cpu"))
    source = build_source(cfg, "train")
    dataset = train_dataset(cfg, source)
    to_batch, _ = scene_inference(cfg)
    logits_fn = make_logits_fn(lambda batch: model(batch)["logits"], to_batch, torch.device("cpu"))
    correct = total = 0
    for i in range(len(dataset)):
        scene = dataset.load(i)
        unlabelled = np.asarray(scene["weak_label"]).reshape(-1) == IGNORE
        pred = logits_fn(scene).argmax(1).numpy()
        dense = np.asarray(source.load(dataset.names[i])["label"]).reshape(-1)
        correct += int((pred[unlabelled] == dense[unlabelled]).sum())
        total += int(unlabelled.sum())
    return correct / total


def test_round_zero_is_the_recipes_method_and_round_one_learns_its_argmax(rounds_dir):
    summary = json.loads((rounds_dir / "rounds.json").read_text())
    assert [row["round"] for row in summary] == [0, 1]
    round0 = [json.loads(line) for line in (rounds_dir / "round0" / "log.jsonl").read_text().splitlines()]
    assert any("propagated" in row for row in round0 if row["split"] == "train")  # the recipe's method
    round1 = [json.loads(line) for line in (rounds_dir / "round1" / "log.jsonl").read_text().splitlines()]
    assert all("pseudo" in row for row in round1 if row["split"] == "train")  # offline self-training
    # threshold 0: every unlabelled point (95%) takes the round-0 network's argmax
    assert summary[1]["pseudo_fraction"] == pytest.approx(0.95, abs=0.01)
    assert summary[1]["pseudo_accuracy"] == pytest.approx(direct_pseudo_accuracy(str(rounds_dir / "round0" / "last.pt")),
                                                          abs=1e-9)
    config = load_config(str(rounds_dir / "round1" / "config.yaml"), [])
    assert config.method.name == "self_training" and config.method.class_weights


def test_a_teacher_stands_in_for_round_zero(rounds_dir, tmp_path, capsys):
    out = tmp_path / "from_teacher"
    teacher = rounds_dir / "round0"
    assert main(["rounds", "synthetic_demo", *RECIPE, "--rounds", "1", "--teacher", str(teacher),
                 "--out", str(out)]) == 0
    summary = json.loads((out / "rounds.json").read_text())
    first = json.loads((rounds_dir / "rounds.json").read_text())
    assert not (out / "round0").exists()
    assert summary[0]["teacher"] == str(teacher / "best.pt")
    assert summary[0]["miou"] == json.loads((teacher / "metrics.json").read_text())["miou"]
    # the same network labels the same scenes: the same pseudo labels as round 1 of the first run
    assert summary[1]["pseudo_fraction"] == first[1]["pseudo_fraction"]
    assert summary[1]["pseudo_accuracy"] == first[1]["pseudo_accuracy"]
    printed = capsys.readouterr().out
    assert f"rounds folder: {out}" in printed
    # the summary table: round 0 is the teacher, round 1 trained on its pseudo labels
    assert f"| 0 | teacher {teacher / 'best.pt'} | {100 * summary[0]['miou']:.1f} | – | – |" in printed
    assert f"| 1 | weak + pseudo labels | {100 * summary[1]['miou']:.1f} | 95.0% |" in printed


def test_user_errors_are_one_line(rounds_dir, tmp_path, capsys):
    assert main(["rounds", "synthetic_demo", *RECIPE, "--out", str(rounds_dir)]) == 2
    assert "already holds rounds (round0, round1)" in capsys.readouterr().err
    assert main(["rounds", "synthetic_demo", *RECIPE, "--rounds", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--rounds must be >= 1, got 0" in capsys.readouterr().err
    assert main(["rounds", "synthetic_demo", *RECIPE, "method.pseudo.treshold=0.5", "--out", str(tmp_path / "b")]) == 2
    assert "method.pseudo.treshold" in capsys.readouterr().err
    assert main(["rounds", "synthetic_demo", *RECIPE, "--teacher", str(tmp_path / "none"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["rounds", "synthetic_demo", *RECIPE, "method.self_training.rounds=0", "--out", str(tmp_path / "d")]) == 2
    assert "method.self_training.rounds must be >= 1, got 0" in capsys.readouterr().err
    # a round that cannot be set up: propagation needs weak labels, and every label is given
    assert main(["rounds", "synthetic_demo", *RECIPE, "data.protocol=null", "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pcseg rounds: round 0: config key 'method.name'") and err.count("\n") == 1


def test_a_teacher_of_other_classes_is_refused(tmp_path, capsys):
    images = tmp_path / "images"
    assert main(["train", "images_synthetic_supervised", "data.images.train_images=2", "data.images.val_images=1",
                 "data.images.height=32", "data.images.width=32", "data.images.crop_size=32",
                 "data.protocol=images:0.5", "train.epochs=1", "train.progress=false", "train.device=cpu",
                 "--out", str(images)]) == 0
    capsys.readouterr()
    assert main(["rounds", "synthetic_demo", *RECIPE, "--teacher", str(images), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "trained on dataset 'synthetic_scenes'" in err and "the recipe's dataset 'synthetic_rooms'" in err
