"""The training loop on stand-ins (a per-point MLP, in-memory scenes), so it is tested
independently of the sparse backbones. The stand-ins are shared with the resume and
distributed tests, whose child processes import this file."""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import pytest
import torch
from torch import nn

from pcseg.config import load_config
from pcseg.data.contract import IGNORE
from pcseg.engine.checkpoint import load_checkpoint, model_state
from pcseg.engine.loader import EpochLoader
from pcseg.engine.trainer import Trainer, TrainSetup
from pcseg.methods.supervised import Supervised
from scene_sources import ListSource

NUM_CLASSES = 3
CLASS_NAMES = ["red", "green", "blue"]


class TinyNet(nn.Module):
    """Per-point MLP on `feat` (colour): no context, so any split of a scene predicts the same."""

    def __init__(self, in_channels: int = 3, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_channels, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, batch: dict) -> dict:
        return {"logits": self.mlp(batch["feat"])}


def make_scene(seed: int, n: int = 64) -> dict:
    """A scene whose class is the dominant colour channel (learnable by TinyNet); 25% weak labels."""
    rng = np.random.default_rng(seed)
    color = rng.random((n, 3)).astype(np.float32)
    label = color.argmax(axis=1).astype(np.int64)
    weak = np.full(n, IGNORE, dtype=np.int64)
    keep = rng.permutation(n)[: n // 4]
    weak[keep] = label[keep]
    return {"name": f"scene{seed}", "coord": (rng.random((n, 3)) * 4).astype(np.float32), "color": color,
            "label": label, "weak_label": weak}


def seeded_source(seeds: Sequence[int], n: int = 64) -> ListSource:
    return ListSource([make_scene(s, n) for s in seeds])


def collate(scenes: list[dict]) -> dict:
    """Stand-in of pcseg.data.collate.collate_scenes(scenes, features=("color",))."""
    counts = torch.tensor([len(s["coord"]) for s in scenes])
    cat = lambda key: torch.from_numpy(np.concatenate([s[key] for s in scenes]))  # noqa: E731
    return {"coord": cat("coord"), "feat": cat("color"), "label": cat("label"), "weak_label": cat("weak_label"),
            "batch": torch.repeat_interleave(torch.arange(len(scenes)), counts), "offset": counts.cumsum(0),
            "names": [s["name"] for s in scenes]}


def make_setup(cfg, train: ListSource, val: ListSource | None, rank: int = 0, world: int = 1) -> TrainSetup:
    names = train.names()

    def make_batch(indices: Sequence[int], rng: np.random.Generator) -> dict:
        scenes = []
        for i in indices:
            s = dict(train.load(names[i]))
            s["color"] = np.clip(s["color"] + rng.normal(0, 0.02, s["color"].shape), 0, 1).astype(np.float32)
            scenes.append(s)
        return collate(scenes)

    torch.manual_seed(cfg.train.seed)
    loader = EpochLoader(len(names), make_batch, cfg.data.batch_size, cfg.train.seed, rank, world)
    counts = np.bincount(np.concatenate([s["weak_label"] for s in train.scenes.values()]) + 1,
                         minlength=NUM_CLASSES + 1)[1:]
    return TrainSetup(cfg=cfg, method=Supervised(TinyNet()), train_loader=loader, val_source=val,
                      to_batch=lambda s: collate([s]), class_names=CLASS_NAMES, class_counts=counts)


def tiny_config(*overrides: str):
    return load_config(None, ["train.epochs=3", "data.batch_size=2", "optim.lr=0.5", "train.log_every=2",
                              "train.progress=false", "train.amp=false", *overrides])


def test_fit_writes_run_folder_and_learns(tmp_path):
    cfg = tiny_config()
    setup = make_setup(cfg, seeded_source(range(6)), seeded_source(range(100, 103)))
    trainer = Trainer(setup, tmp_path, torch.device("cpu"))
    best = trainer.fit()
    for name in ("config.yaml", "log.jsonl", "last.pt", "best.pt", "metrics.json"):
        assert (tmp_path / name).is_file(), name
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert [r["epoch"] for r in val] == [0, 1, 2]
    assert [r["step"] for r in train] == [2, 3, 4, 6, 8, 9]  # every 2 steps and at each epoch end
    assert all({"loss", "ce", "lr", "time"} <= set(r) for r in train)
    assert trainer.step == 9 and trainer.steps_per_epoch == 3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["miou"] == pytest.approx(max(r["miou"] for r in val)) == pytest.approx(best["miou"])
    assert metrics["num_labelled_points"] == 6 * 16
    assert metrics["method"] == "supervised" and metrics["protocol"] is None
    assert metrics["scenes_per_s"] == pytest.approx(18 / metrics["train_time_s"])  # 3 epochs x 6 scenes
    assert metrics["oa"] > 0.8  # colour argmax is easy: the loop really trains
    # best.pt's weights reproduce the recorded confusion matrix (an independent recount)
    net = TinyNet()
    net.load_state_dict(model_state(load_checkpoint(tmp_path / "best.pt")))
    conf = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype=np.int64)
    for scene in seeded_source(range(100, 103)).scenes.values():
        pred = net(collate([scene]))["logits"].argmax(1).numpy()
        for t, p in zip(scene["label"], pred):
            conf[t, p] += 1
    assert conf.tolist() == metrics["confusion"]
    # `final`: the last validation, i.e. last.pt's weights (recounted), whatever the best was
    assert metrics["final"]["step"] == 9 and metrics["final"]["miou"] == pytest.approx(val[-1]["miou"])
    net.load_state_dict(model_state(load_checkpoint(tmp_path / "last.pt")))
    hits = total = 0
    for scene in seeded_source(range(100, 103)).scenes.values():
        pred = net(collate([scene]))["logits"].argmax(1).numpy()
        hits, total = hits + int((pred == scene["label"]).sum()), total + len(pred)
    assert metrics["final"]["oa"] == pytest.approx(hits / total)


def test_save_every_spaces_end_of_epoch_checkpoints(tmp_path, monkeypatch):
    saved = []
    monkeypatch.setattr(Trainer, "save", lambda self, name: saved.append((name, self.epoch)))
    cfg = tiny_config("train.epochs=7", "train.save_every=3")
    Trainer(make_setup(cfg, seeded_source(range(2)), None), tmp_path, torch.device("cpu")).fit()
    assert saved == [("last.pt", 3), ("last.pt", 6), ("last.pt", 7)]  # and always after the last epoch


@pytest.mark.parametrize("key", ["epochs", "val_every", "save_every"])
def test_epoch_counts_below_one_name_their_key(tmp_path, key):
    cfg = tiny_config(f"train.{key}=0")
    with pytest.raises(ValueError, match=f"train.{key}"):
        Trainer(make_setup(cfg, seeded_source(range(2)), None), tmp_path, torch.device("cpu"))


def test_lr_schedule_is_per_step(tmp_path):
    cfg = tiny_config("scheduler.name=poly", "scheduler.power=1.0", "train.log_every=1")
    trainer = Trainer(make_setup(cfg, seeded_source(range(4)), None), tmp_path, torch.device("cpu"))
    trainer.fit()
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    total = 6  # 2 steps x 3 epochs; the lr logged after step s is 0.5 * (1 - s / total)
    assert lrs == pytest.approx([0.5 * (1 - s / total) for s in range(1, total + 1)])


def test_clip_grad_bounds_the_update(tmp_path):
    # plain SGD without momentum or decay: one step moves the weights by lr * clipped gradient
    cfg = tiny_config("train.epochs=1", "train.clip_grad=0.001", "optim.momentum=0", "optim.weight_decay=0",
                      "scheduler.name=constant")
    setup = make_setup(cfg, seeded_source(range(2)), None)
    before = [p.detach().clone() for p in setup.method.parameters()]
    Trainer(setup, tmp_path, torch.device("cpu")).fit()
    delta = torch.sqrt(sum(((p.detach() - b) ** 2).sum() for p, b in zip(setup.method.parameters(), before)))
    assert float(delta) == pytest.approx(0.5 * 0.001, rel=1e-3)


def test_nan_loss_is_a_clear_error(tmp_path):
    cfg = tiny_config("optim.lr=1e30", "scheduler.name=constant", "optim.momentum=0")
    with pytest.raises(FloatingPointError, match="optim.lr"):
        Trainer(make_setup(cfg, seeded_source(range(4)), None), tmp_path, torch.device("cpu")).fit()
