"""Every method of METHODS: two optimisation steps on tiny synthetic rooms (one per epoch, hooks
called as the trainer calls them): finite loss, finite terms, and the network's weights move."""
import math

import numpy as np
import pytest
import torch

from pcseg.config import load_config
from pcseg.data.collate import collate_scenes, feature_channels
from pcseg.data.contract import IGNORE
from pcseg.data.synthetic import generate_room
from pcseg.methods import METHODS, MethodContext, build_method
from pcseg.models.segmentor import Segmentor
from method_steps import two_steps


@pytest.fixture(autouse=True)
def torch_backend(monkeypatch):
    # the pure-PyTorch sparse engine: defines the results, and needs no native build
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "torch")


@pytest.fixture(scope="module")
def tiny_batch():
    scenes = []
    for seed in (3, 4):
        scene = generate_room(seed, num_points=1000)
        rng = np.random.default_rng(seed)
        weak = np.full(1000, IGNORE, dtype=np.int64)
        picked = rng.choice(1000, 50, replace=False)
        weak[picked] = scene["label"][picked]
        scenes.append({**scene, "weak_label": weak})
    return collate_scenes(scenes, ("color",))


def make_method(name: str):
    cfg = load_config(None, [f"method.name={name}", "model.name=minkunet14a", "data.voxel_size=0.2",
                             "method.self_training.warmup_epochs=1", "method.pseudo.bins=50",
                             "method.dsp.schedule=staged", "method.dsp.stage1_epochs=1",
                             "method.mean_teacher.rampup_steps=2", "method.mean_teacher.ema=0.5"])
    num_classes = 13
    counts = np.arange(1, num_classes + 1) * 10
    torch.manual_seed(0)
    ctx = MethodContext(cfg=cfg, make_model=lambda: Segmentor("minkunet14a", feature_channels(["color"]),
                                                              num_classes, 0.2),
                        num_classes=num_classes, class_counts=counts)
    return build_method(ctx)


# image-only methods train on images in tests/test_images_methods.py
IMAGE_ONLY = {"s4l"}


@pytest.mark.parametrize("name", sorted(set(METHODS) - IMAGE_ONLY))
def test_two_steps_every_method(name, tiny_batch):
    method = make_method(name)
    if getattr(method, "needs_propagated_labels", False):
        # the engine adds propagated labels to the scenes (tests/test_propagation.py); here a stand-in
        tiny_batch = {**tiny_batch, "pseudo_label": torch.where(tiny_batch["weak_label"] == IGNORE,
                                                                tiny_batch["label"], IGNORE)}
    def check(out: dict) -> None:
        assert out["logits"].shape == (len(tiny_batch["coord"]), 13)
        assert math.isfinite(out["loss"].item())
        for key, value in out.items():
            if key not in ("loss", "logits"):
                assert math.isfinite(float(value)), key
    two_steps(method, tiny_batch, 0.05, check)
    method.eval()
    assert method.predict(tiny_batch).shape == (len(tiny_batch["coord"]), 13)


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: " + ", ".join(sorted(METHODS))):
        make_method("dps")


def test_offline_rounds_train_pseudo_label_and_retrain(tmp_path):
    from pcseg.engine.rounds import run_rounds
    cfg = load_config(None, ["model.name=minkunet14a", "data.voxel_size=0.2", "data.train_rooms=2",
                             "data.val_rooms=1", "data.room_points=1000", "data.protocol=ratio:0.05",
                             "data.batch_size=2", "data.augment=false", "train.epochs=1", "train.progress=false",
                             "train.amp=false", "train.device=cpu", "method.pseudo.ratio=0.5",
                             "method.pseudo.bins=100"])
    summary = run_rounds(cfg, tmp_path, torch.device("cpu"), rounds=1)
    assert [row["round"] for row in summary] == [0, 1]
    assert all(0.0 <= row["miou"] <= 1.0 for row in summary)
    # DARS with ratio 0.5: at most half of the 95% unlabelled points (fewer where a class is
    # predicted less often than its prior asks, after one epoch of training)
    assert 0.0 < summary[1]["pseudo_fraction"] <= 0.5 * 0.95 + 0.01
    assert 0.0 <= summary[1]["pseudo_accuracy"] <= 1.0
    assert (tmp_path / "round1" / "metrics.json").is_file() and (tmp_path / "rounds.json").is_file()
