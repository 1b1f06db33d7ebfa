"""Image weak-label protocols (protocol-file format of pcseg.weak) and the image collate."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pcseg.data.contract import IGNORE
from pcseg.data.images.collate import collate_images
from pcseg.data.images.protocols import (apply_image_protocol, image_fraction_protocol, image_tag_protocol,
                                         image_tags, parse_fraction, pixel_count_protocol, voc_fraction_protocol)
from pcseg.data.images.synthetic import SyntheticSceneSource
from pcseg.weak.protocol_file import load_protocol, save_protocol


class _Tiny:
    """Three hand-made 2x3 images."""

    labels = {"a": [[0, 1, -1], [1, 1, 2]], "b": [[-1, -1, -1], [0, 0, 0]], "c": [[2, 2, 2], [2, -1, 1]]}

    def names(self):
        return list(self.labels)

    def load(self, name):
        return {"image": np.zeros((2, 3, 3), np.float32), "label": np.array(self.labels[name], np.int64), "name": name}


def test_parse_fraction():
    assert parse_fraction("1/16") == 0.0625 and parse_fraction(0.5) == 0.5
    with pytest.raises(ValueError, match="1/16"):
        parse_fraction("2/1")


def test_fraction_protocol_labels_whole_images(tmp_path):
    source = SyntheticSceneSource(16, seed=0, height=16, width=16)
    proto = image_fraction_protocol(source, "1/8", seed=3, source_id="synthetic:16:0")
    chosen = proto.extra["labelled_images"]
    assert len(chosen) == 2 and proto.spec == "images:0.125"
    assert chosen == image_fraction_protocol(source, "1/8", seed=3, source_id="x").extra["labelled_images"]
    back = load_protocol(save_protocol(proto, tmp_path / "p.npz"))
    assert back.extra["labelled_images"] == chosen and set(back.scenes) == set(source.names())
    for name in source.names():
        sample = apply_image_protocol(source.load(name), back)
        if name in chosen:
            np.testing.assert_array_equal(sample["weak_label"], sample["label"])
        else:
            assert (sample["weak_label"] == IGNORE).all()


def test_fraction_protocol_pool_restricts_labelled_images():
    source = _Tiny()
    proto = image_fraction_protocol(source, 0.5, seed=0, source_id="tiny", pool=["b", "c"])
    assert proto.extra["labelled_images"] in (["b"], ["c"])
    only = proto.extra["labelled_images"][0]
    flat = np.array(_Tiny.labels[only]).ravel()
    np.testing.assert_array_equal(proto.scenes[only].indices, np.flatnonzero(flat != IGNORE))
    assert len(proto.scenes["a"].indices) == 0
    with pytest.raises(ValueError, match="not in the source"):
        image_fraction_protocol(source, 0.5, seed=0, source_id="tiny", pool=["zz"])


def test_pixel_count_protocol_row_major_indices():
    source = _Tiny()
    proto = pixel_count_protocol(source, 2, seed=0, source_id="tiny")
    for name in source.names():
        entry = proto.scenes[name]
        label = np.array(_Tiny.labels[name])
        assert len(entry.indices) == 2
        ys, xs = entry.indices // 3, entry.indices % 3
        np.testing.assert_array_equal(entry.labels, label[ys, xs])
        assert (entry.labels != IGNORE).all()
        weak = apply_image_protocol(source.load(name), proto)["weak_label"]
        assert (weak != IGNORE).sum() == 2 and (weak[ys, xs] == label[ys, xs]).all()


def test_tag_protocol():
    proto = image_tag_protocol(_Tiny(), source_id="tiny")
    assert proto.extra["tags"] == {"a": [0, 1, 2], "b": [0], "c": [1, 2]}
    assert image_tags(proto, "c", 4).tolist() == [0.0, 1.0, 1.0, 0.0]
    assert (apply_image_protocol(_Tiny().load("a"), proto)["weak_label"] == IGNORE).all()


def _fake_voc(root, train, train_aug):
    for d in ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    for i, name in enumerate(train_aug):
        Image.fromarray(np.full((4, 5, 3), i, np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
        Image.fromarray(np.full((4, 5), i % 21, np.uint8)).save(root / "SegmentationClassAug" / f"{name}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    (root / "ImageSets/Segmentation/train_aug.txt").write_text("\n".join(train_aug) + "\n")


def test_voc_classic_and_blended(tmp_path):
    train_aug = [f"2008_{i:06d}" for i in range(32)]
    train = train_aug[:8]
    _fake_voc(tmp_path, train, train_aug)
    classic = voc_fraction_protocol(tmp_path, "1/4", seed=0, mode="classic")
    blended = voc_fraction_protocol(tmp_path, "1/4", seed=0, mode="blended")
    assert len(classic.extra["labelled_images"]) == 2 and set(classic.extra["labelled_images"]) <= set(train)
    assert len(blended.extra["labelled_images"]) == 8
    assert set(classic.scenes) == set(blended.scenes) == set(train_aug)
    assert classic.extra["mode"] == "classic"
    with pytest.raises(ValueError, match="mode"):
        voc_fraction_protocol(tmp_path, "1/4", seed=0, mode="mixed")


def test_collate_pads_and_groups():
    a = {"image": np.ones((2, 3, 3), np.float32), "label": np.array([[0, 1, 2], [1, 1, -1]]),
         "weak_label": np.array([[0, -1, -1], [-1, 1, -1]]), "name": "a"}
    b = {"image": np.full((3, 2, 3), 0.5, np.float32), "label": np.array([[2, 2], [0, 0], [1, 1]]), "name": "b"}
    batch = collate_images([a, b])
    assert batch["image"].shape == (2, 3, 3, 3) and batch["image"].dtype == torch.float32
    assert batch["image"][0, :, 2, :].abs().sum() == 0 and batch["image"][1, 1, 2, 1] == 0.5
    assert batch["label"].tolist() == [[[0, 1, 2], [1, 1, -1], [-1, -1, -1]], [[2, 2, -1], [0, 0, -1], [1, 1, -1]]]
    assert batch["weak_label"][1].eq(IGNORE).all() and batch["weak_label"][0, 1, 1] == 1
    assert batch["batch"].tolist() == [0, 1] and batch["sizes"].tolist() == [[2, 3], [3, 2]]
    assert batch["names"] == ["a", "b"] and "instance" not in batch


def test_transforms_move_all_pixel_keys_together():
    from pcseg.data.images.transforms import hflip, random_crop, random_scale

    rng = np.random.default_rng(0)
    label = np.arange(12, dtype=np.int64).reshape(3, 4)
    image = np.repeat((label / 11.0).astype(np.float32)[..., None], 3, axis=2)
    sample = {"image": image, "label": label, "weak_label": label.copy(), "name": "s"}
    flipped = hflip(sample, rng, p=1.0)
    assert flipped["label"].tolist() == [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]]
    assert (flipped["weak_label"] == flipped["label"]).all() and sample["label"][0, 0] == 0
    crop = random_crop(sample, np.random.default_rng(1), (5, 2))
    assert crop["label"].shape == (5, 2) and crop["image"].shape == (5, 2, 3)
    assert (crop["label"][3:] == IGNORE).all() and (crop["image"][3:] == 0).all()
    x0 = int(crop["label"][0, 0])
    assert crop["label"][:3].tolist() == label[:, x0:x0 + 2].tolist()
    big = random_scale(sample, np.random.default_rng(2), scale=(2.0, 2.0))
    assert big["label"].shape == (6, 8) and big["label"][::2, ::2].tolist() == label.tolist()
    assert big["image"].dtype == np.float32 and set(np.unique(big["label"])) == set(range(12))
