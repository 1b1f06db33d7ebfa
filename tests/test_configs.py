"""Every shipped 3D recipe loads and trains one step, then validates, on tiny data: synthetic
rooms for the synthetic recipe, a tiny HDF5 store written here for the store recipes (its
splits named as the recipe expects). The backbone is shrunk to minkunet14a
and 0.4 m voxels to keep this fast; every backbone is exercised by the models' own tests."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pcseg.config import load_config
from pcseg.data.meta import load_dataset_meta
from pcseg.data.store import open_for_writing, write_scene
from pcseg.data.synthetic import generate_room
from pcseg.engine.build import build_setup
from pcseg.engine.trainer import Trainer
from pcseg.resources import configs_dir

# image recipes (data.modality: images) train in tests/test_configs_images.py
RECIPES = sorted(p.stem for p in configs_dir().glob("*.yaml") if load_config(p).data.modality == "points")
FAST = ["model.name=minkunet14a", "data.voxel_size=0.4", "train.epochs=1", "data.batch_size=2",
        "data.num_workers=0", "train.progress=false", "train.checkpoint_every=0", "train.eval_max_points=null"]


pytestmark = pytest.mark.usefixtures("one_thread")


POINTS = 1000


def tiny_store(path, cfg) -> list[str]:
    """One room in each of the recipe's first two training splits and in its validation
    split; returns the training splits used (joined by the engine as the recipe's are)."""
    meta = load_dataset_meta(cfg.data.dataset)
    store = open_for_writing(path, meta.name, list(meta.class_names), "test")
    train = (cfg.data.train_split.split(",") * 2)[:2]
    for i, split in enumerate(train + [cfg.data.val_split]):
        scene = generate_room(seed=i, num_points=POINTS)
        scene["label"] = scene["label"] % meta.num_classes
        write_scene(store, f"{split}_room{i}", scene, split, checksum=str(i))
    store.close()
    return train


def test_every_recipe_is_tested():
    assert {"synthetic_demo", "s3dis_area5_full", "s3dis_area5_1pct", "s3dis_area5_10pct", "scannet_full",
            "scannet_1pct", "scannet_la20"} <= set(RECIPES)


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_trains_one_step(recipe, tmp_path):
    cfg = load_config(recipe)
    overrides = list(FAST)
    if cfg.data.source == "store":
        train = tiny_store(tmp_path / "tiny.h5", cfg)
        overrides += [f"data.store={tmp_path / 'tiny.h5'}", f"data.train_split={','.join(sorted(set(train)))}"]
        if cfg.data.train_scenes or cfg.data.val_scenes:  # recipes naming their scans get the tiny ones
            overrides += [f"data.train_scenes=[{train[0]}_room0,{train[1]}_room1]",
                          f"data.val_scenes=[{cfg.data.val_split}_room2]"]
    else:
        overrides += ["data.train_rooms=2", "data.val_rooms=1", f"data.room_points={POINTS}"]
    cfg = load_config(recipe, overrides)
    setup = build_setup(cfg)
    trainer = Trainer(setup, tmp_path / "run", torch.device("cpu"))
    before = {k: v.clone() for k, v in setup.method.state_dict().items()}
    metrics = trainer.fit()
    assert trainer.step == 1  # two rooms, one batch
    assert any(not torch.equal(before[k], v) for k, v in setup.method.state_dict().items())
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["miou"] == pytest.approx(metrics["miou"])
    assert int(np.sum(record["confusion"])) == POINTS  # one validation room, every point
    assert len(record["iou"]) == load_dataset_meta(cfg.data.dataset).num_classes
    counts = setup.class_counts.sum()
    if cfg.data.protocol is None:
        assert counts == 2 * POINTS
    else:
        assert 0 < counts < 2 * POINTS
