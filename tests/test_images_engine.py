"""The image branch of the engine: flat batches, full-batch samplers, protocols from a config,
tiled/flipped prediction, and `pcseg train / eval / predict / weak-labels` on tiny synthetic
images (eval against a direct confusion count, predict's palette PNG against the argmax)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.cli import main
from pcseg.config import load_config
from pcseg.data.batch_samplers import LabelledMixSampler
from pcseg.data.contract import IGNORE
from pcseg.data.images.flat_batch import collate_flat
from pcseg.data.meta import load_dataset_meta
from pcseg.engine.build import build_protocol, build_setup, build_source, load_trained
from pcseg.engine.image_inference import ImagePredictor
from pcseg.models.image.segmentor import ImageSegmentor
from pcseg.weak.protocol_file import load_protocol

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.images.train_images=8", "data.images.val_images=2", "data.images.height=32", "data.images.width=32",
        "data.images.crop_size=32", "data.protocol=images:0.25", "train.epochs=1", "train.progress=false",
        "train.device=cpu", "optim.name=sgd", "optim.momentum=0"]  # no optimizer state: small checkpoints


def test_collate_flat_drops_padding_and_keeps_row_order():
    a = {"image": np.zeros((2, 3, 3), np.float32), "label": np.array([[0, 1, 2], [3, 4, 5]]), "name": "a"}
    b = {"image": np.ones((3, 2, 3), np.float32), "label": np.array([[6, 7], [8, 9], [10, 11]]), "name": "b"}
    batch = collate_flat([a, b])
    assert batch["image"].shape == (2, 3, 3, 3)
    assert batch["label"].tolist() == list(range(12)) and batch["weak_label"].eq(IGNORE).all()
    assert batch["batch"].tolist() == [0] * 6 + [1] * 6 and batch["offset"].tolist() == [6, 12]
    # rows of the padded 2 x 3 x 3 grid: image a rows 0-1 (all columns), image b columns 0-1
    assert batch["pixel_index"].tolist() == [0, 1, 2, 3, 4, 5, 9, 10, 12, 13, 15, 16]
    grid = torch.zeros(2, 1, 3, 3)
    grid[0, 0, :2, :] = torch.arange(6.0).reshape(2, 3)
    grid[1, 0, :, :2] = torch.arange(6.0, 12.0).reshape(3, 2)
    assert ImageSegmentor.flatten(grid, batch)[:, 0].tolist() == list(range(12))
    same = collate_flat([a, a])
    assert "pixel_index" not in same and same["batch"].tolist() == [0] * 6 + [1] * 6


def test_labelled_mix_sampler():
    has_labels = [i in (0, 5, 9) for i in range(12)]
    sampler = LabelledMixSampler(has_labels, batch_size=4, labelled_per_batch=2, seed=0)
    assert len(sampler) == 2  # one pass over 3 labelled images, 2 a batch
    seen_labelled, seen_unlabelled = [], []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in sampler:
            assert len(batch) == 4 and all(has_labels[i] for i in batch[:2])
            assert not any(has_labels[i] for i in batch[2:])
            seen_labelled += batch[:2]
            seen_unlabelled += batch[2:]
    # the streams are whole shuffled passes: 12 labelled draws = 4 passes over 3 images, and the
    # first 9 unlabelled draws one pass over the 9 unlabelled images
    assert sorted(seen_labelled) == [0] * 4 + [5] * 4 + [9] * 4
    assert sorted(seen_unlabelled[:9]) == [1, 2, 3, 4, 6, 7, 8, 10, 11]
    every = LabelledMixSampler([True] * 4, batch_size=2, labelled_per_batch=1)
    assert every.k == 2 and all(len(b) == 2 for b in every)  # nothing unlabelled: all-labelled batches
    with pytest.raises(ValueError, match="labelled_per_batch"):
        LabelledMixSampler(has_labels, batch_size=2, labelled_per_batch=3)


def synthetic_cfg(*extra: str):
    return load_config("images_synthetic_supervised", TINY + list(extra))


def test_protocols_from_the_config():
    cfg = synthetic_cfg()
    source = build_source(cfg, "train")
    fraction = build_protocol(cfg, source)
    assert fraction.spec == "images:0.25" and len(fraction.extra["labelled_images"]) == 2
    assert sorted(len(e.indices) for e in fraction.scenes.values()) == [0] * 6 + [32 * 32] * 2
    count = build_protocol(synthetic_cfg("data.protocol=count:5"), source)
    assert all(len(e.indices) == 5 for e in count.scenes.values())
    tags = build_protocol(synthetic_cfg("data.protocol=tags"), source)
    assert all(len(e.indices) == 0 for e in tags.scenes.values()) and 0 in tags.extra["tags"]["scene_0000"]
    with pytest.raises(ValueError, match="image-level tags"):
        build_setup(synthetic_cfg("data.protocol=tags"))


@pytest.mark.parametrize("override, message", [
    ("data.modality=pixels", "data.modality"),
    ("model.name=minkunet14a", "model.name"),
    ("method.name=dsp", "method.name"),
    ("data.source=store", "data.source"),
    ("data.source=voc", "data.dataset"),
])
def test_config_errors_name_the_key(override, message):
    with pytest.raises(ValueError, match=message):
        build_setup(synthetic_cfg(override))


def test_voc_needs_its_root():
    with pytest.raises(ValueError, match="data.images.root"):
        build_setup(synthetic_cfg("data.source=voc", "data.dataset=voc"))


def test_predictor_tiles_and_flip_vote_match_a_pixelwise_model():
    rng = np.random.default_rng(0)
    image = rng.random((37, 50, 3)).astype(np.float32)
    weight = torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]])

    def logits_fn(sample):  # per pixel, so tiles and mirrored views change nothing
        return torch.from_numpy(np.asarray(sample["image"]).reshape(-1, 3)) @ weight.t()

    whole = ImagePredictor()(logits_fn, {"image": image})
    expected = torch.softmax(torch.from_numpy(image.reshape(-1, 3)) @ weight.t(), 1).numpy()
    np.testing.assert_allclose(whole, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ImagePredictor(patch=16, stride=9)(logits_fn, {"image": image}), whole, atol=1e-6)
    np.testing.assert_allclose(ImagePredictor()(logits_fn, {"image": image}, votes=2), whole, atol=1e-6)
    with pytest.raises(ValueError, match="votes"):
        ImagePredictor()(logits_fn, {"image": image}, votes=3)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "run"
    assert main(["train", "images_synthetic_supervised", *TINY, "--out", str(out)]) == 0
    return out


def test_eval_equals_a_direct_confusion_count(image_run, tmp_path):
    out = tmp_path / "eval"
    assert main(["eval", str(image_run), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    model, cfg, meta = load_trained(image_run / "best.pt", torch.device("cpu"))
    k = meta.num_classes
    matrix = np.zeros((k, k), dtype=np.int64)
    source = build_source(cfg, "val")
    for name in source.names():
        sample = source.load(name)
        image = torch.from_numpy(sample["image"]).permute(2, 0, 1)[None]
        with torch.no_grad():
            pred = model.net(image)["logits"][0].argmax(0).numpy()
        gt = sample["label"]
        keep = gt != IGNORE
        matrix += np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    assert metrics["confusion"] == matrix.tolist() and int(matrix.sum()) == 2 * 32 * 32
    present = matrix.sum(1) > 0  # a class absent from both truth and prediction has 0 / 0 IoU
    with np.errstate(invalid="ignore"):
        iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix))
    assert metrics["miou"] == pytest.approx(float(np.nanmean(np.where(present, iou, np.nan))))
    assert metrics["oa"] == pytest.approx(np.trace(matrix) / matrix.sum())


def test_predict_writes_palette_png_equal_to_the_argmax(image_run, tmp_path):
    rng = np.random.default_rng(1)
    rgb = (rng.random((20, 28, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    out = tmp_path / "pred"
    assert main(["predict", str(image_run), str(tmp_path / "photo.png"), "--out", str(out),
                 "--format", "png,overlay,npy"]) == 0
    model, _, meta = load_trained(image_run / "best.pt", torch.device("cpu"))
    with torch.no_grad():
        image = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        expected = model.net(image)["logits"][0].argmax(0).numpy()
    with Image.open(out / "photo.png") as png:
        assert png.mode == "P"
        indices = np.asarray(png)
        palette = np.array(png.getpalette()[: 3 * meta.num_classes], dtype=np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_array_equal(palette, meta.colors)
    np.testing.assert_array_equal(np.load(out / "photo_label.npy"), expected)
    with Image.open(out / "photo_overlay.png") as overlay:
        blend = np.asarray(overlay).astype(np.float64)
    np.testing.assert_allclose(blend, 0.5 * rgb + 0.5 * meta.colors[expected], atol=1.0)
    assert main(["predict", str(image_run), str(tmp_path / "photo.png"), "--out", str(out), "--format", "ply"]) == 2


def test_weak_labels_make_from_an_image_recipe(tmp_path, capsys):
    out = tmp_path / "p.npz"
    assert main(["weak-labels", "make", "images_synthetic_supervised", "images:1/4", *TINY[:4],
                 "--out", str(out)]) == 0
    protocol = load_protocol(out)
    assert protocol.spec == "images:0.25" and len(protocol.scenes) == 8
    made_now = build_protocol(synthetic_cfg(), build_source(synthetic_cfg(), "train"))
    assert protocol.extra["labelled_images"] == made_now.extra["labelled_images"]
    meta = load_dataset_meta("synthetic_scenes")
    assert meta.class_names[0] in capsys.readouterr().out


def test_offline_rounds_on_images(tmp_path):
    from pcseg.engine.rounds import run_rounds
    summary = run_rounds(synthetic_cfg("method.pseudo.bins=50"), tmp_path, torch.device("cpu"), rounds=1)
    assert [row["round"] for row in summary] == [0, 1]
    assert 0.0 < summary[1]["pseudo_fraction"] <= 0.5
    assert (tmp_path / "round1" / "metrics.json").is_file()


def test_resume_continues_exactly_with_cutmix_and_mixed_batches(tmp_path):
    # a constant lr: with more epochs on --resume, a schedule's length changes (not what is tested here)
    args = ["images_synthetic_cps", *TINY, "method.cps.cutmix=true", "data.batch_size=4", "train.val_every=5",
            "scheduler.name=constant"]
    assert main(["train", *args, "train.epochs=2", "--out", str(tmp_path / "full")]) == 0
    assert main(["train", *args, "train.epochs=1", "--out", str(tmp_path / "cut")]) == 0
    assert main(["train", *args, "train.epochs=2", "--resume", "--out", str(tmp_path / "cut")]) == 0
    full = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    cut = torch.load(tmp_path / "cut" / "last.pt", weights_only=False)
    assert full["step"] == cut["step"] == 2 and int(cut["method"]["step"]) == 2
    for key, value in full["method"].items():
        assert torch.equal(value, cut["method"][key]), key


def test_folder_source_trains_on_the_real_camvid_sample(shared_data, tmp_path):
    root = shared_data / "images" / "camvid"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    cfg = load_config("images_synthetic_supervised", [
        "data.source=folder", "data.dataset=camvid", f"data.images.root={root}", "data.images.image_dir=images",
        "data.images.mask_dir=labels", "data.images.mask_suffix=_P", "data.protocol=count:100",
        "data.images.crop_size=64", "data.images.labelled_per_batch=null", "data.images.scale=[1,1]",
        "data.train_scenes=[0006R0_f02310,0006R0_f02340]", "data.val_scenes=[0006R0_f02280]",
        "train.epochs=1", "train.progress=false", "train.device=cpu"])
    from pcseg.engine.trainer import Trainer
    setup = build_setup(cfg)
    assert setup.class_counts.sum() == 2 * 100  # 100 labelled pixels in each of the 2 training frames
    assert setup.val_source.names() == ["0006R0_f02280"]
    setup.val_source = None  # a 960x720 validation pass is slow on a shared CPU; eval is tested above
    before = [p.detach().clone() for p in setup.method.model.parameters()]
    trainer = Trainer(setup, tmp_path / "run", torch.device("cpu"))
    trainer.fit()
    assert trainer.step == 1 and any(not torch.equal(b, p) for b, p in zip(before, setup.method.model.parameters()))
