"""Every image recipe (configs with data.modality: images) loads and trains one step, then
validates, on tiny data: synthetic scenes, or a tiny VOC / Cityscapes / iSAID folder written
here in the dataset's own layout. Networks are shrunk to the ResNet-18 of their family and
images to 32-48 px; every network is exercised by tests/test_image_models.py."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.config import load_config
from pcseg.data.meta import load_dataset_meta
from pcseg.engine.build import build_setup
from pcseg.engine.trainer import Trainer
from pcseg.resources import configs_dir

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE_RECIPES = sorted(p.stem for p in configs_dir().glob("*.yaml") if load_config(p).data.modality == "images")
FAST = ["train.epochs=1", "data.batch_size=4", "data.images.labelled_per_batch=2", "data.num_workers=0",
        "train.progress=false", "train.checkpoint_every=0", "train.device=cpu", "data.images.crop_size=32"]
H, W = 32, 48  # VOC / Cityscapes image size here


def _rgb(rng: np.random.Generator, h: int = H, w: int = W) -> Image.Image:
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


def _mask(rng: np.random.Generator, values: list[int], h: int = H, w: int = W) -> Image.Image:
    return Image.fromarray(rng.choice(np.asarray(values, dtype=np.uint8), size=(h, w)))


def fake_voc(root: Path) -> int:
    """8 train_aug images (4 of them in `train`), 2 val; returns the val pixel count."""
    rng = np.random.default_rng(0)
    names = {"train_aug": [f"2008_{i:06d}" for i in range(8)], "val": ["2007_000001", "2007_000002"]}
    names["train"] = names["train_aug"][:4]
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True)
    for split, stems in names.items():
        (root / "ImageSets/Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    for stem in names["train_aug"] + names["val"]:
        _rgb(rng).save(root / "JPEGImages" / f"{stem}.jpg")
        mask = _mask(rng, [0, 0, 12, 15, 255])
        mask.save(root / "SegmentationClassAug" / f"{stem}.png")
        mask.save(root / "SegmentationClass" / f"{stem}.png")
    return 2 * H * W


def fake_cityscapes(root: Path) -> int:
    rng = np.random.default_rng(1)
    for split, count in (("train", 8), ("val", 2)):
        (root / "leftImg8bit" / split / "aachen").mkdir(parents=True)
        (root / "gtFine" / split / "aachen").mkdir(parents=True)
        for i in range(count):
            stem = f"aachen_{i:06d}_000019"
            _rgb(rng).save(root / "leftImg8bit" / split / "aachen" / f"{stem}_leftImg8bit.png")
            _mask(rng, [7, 8, 11, 26, 0]).save(root / "gtFine" / split / "aachen" / f"{stem}_gtFine_labelIds.png")
    return 2 * H * W


def fake_isaid(root: Path) -> int:
    """80 x 100 images with a few rectangles, so 48-px tiles every 32 px cover each with 6 tiles."""
    rng = np.random.default_rng(2)
    size = (80, 100)
    for split, count in (("train", 2), ("val", 1)):
        (root / split / "images").mkdir(parents=True)
        images, annotations = [], []
        for i in range(count):
            name = f"P{i:04d}.png"
            _rgb(rng, *size).save(root / split / "images" / name)
            images.append({"id": i, "file_name": name, "height": size[0], "width": size[1]})
            for k, cat in enumerate((1, 2, 9)):
                x0, y0 = 10 + 25 * k, 10 + 15 * k
                annotations.append({"image_id": i, "category_id": cat,
                                    "segmentation": [[x0, y0, x0 + 20, y0, x0 + 20, y0 + 15, x0, y0 + 15]]})
        categories = [{"id": 1, "name": "ship"}, {"id": 2, "name": "store_tank"}, {"id": 9, "name": "Small_Vehicle"}]
        (root / split / f"iSAID_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
    return size[0] * size[1]


FAKE = {"voc": fake_voc, "cityscapes": fake_cityscapes, "isaid": fake_isaid}
SYNTHETIC = ["data.images.train_images=8", "data.images.val_images=2", "data.images.height=32",
             "data.images.width=32"]


def small_model(name: str) -> str:
    return name.rsplit("_", 1)[0] + "_r18"


def test_every_image_recipe_is_tested():
    methods = ("supervised", "cps", "self_training", "mean_teacher", "s4l")
    expected = {f"{d}_{m}" for d in ("images_synthetic", "voc", "cityscapes", "isaid") for m in methods}
    assert expected | {"voc_cps_cutmix"} <= set(IMAGE_RECIPES)


@pytest.mark.parametrize("recipe", IMAGE_RECIPES)
def test_image_recipe_trains_one_step(recipe, tmp_path):
    cfg = load_config(recipe)
    overrides = FAST + [f"model.name={small_model(cfg.model.name)}"]
    if cfg.data.source == "synthetic":
        overrides += SYNTHETIC
        val_pixels = 2 * 32 * 32
    else:
        val_pixels = FAKE[cfg.data.source](tmp_path / "data")
        overrides.append(f"data.images.root={tmp_path / 'data'}")
        if cfg.data.images.patch:
            overrides += ["data.images.patch=48", "data.images.stride=32"]
    cfg = load_config(recipe, overrides)
    setup = build_setup(cfg)
    trainer = Trainer(setup, tmp_path / "run", torch.device("cpu"))
    before = {k: v.clone() for k, v in setup.method.state_dict().items()}
    metrics = trainer.fit()
    assert trainer.step >= 1
    assert any(not torch.equal(before[k], v) for k, v in setup.method.state_dict().items())
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["miou"] == pytest.approx(metrics["miou"]) and record["method"] == cfg.method.name
    meta = load_dataset_meta(cfg.data.dataset)
    assert len(record["iou"]) == meta.num_classes
    gt = np.asarray(record["confusion"]).sum()
    assert 0 < gt <= val_pixels  # every validation pixel with a label, once (VOC borders are IGNORE)
    assert 0 < setup.class_counts.sum()


def test_voc_classic_protocol_draws_from_train(tmp_path):
    fake_voc(tmp_path / "voc")
    cfg = load_config("voc_supervised", FAST + ["model.name=deeplabv3plus_r18", f"data.images.root={tmp_path / 'voc'}",
                                                "data.images.voc_mode=classic", "data.protocol=images:1/2"])
    protocol = build_setup(cfg).train_loader.make_batch.dataset.protocol
    assert protocol.extra["mode"] == "classic" and set(protocol.extra["labelled_images"]) <= {
        f"2008_{i:06d}" for i in range(4)} and len(protocol.extra["labelled_images"]) == 2
