"""Image readers on the real samples in ../shared/data/images (skipped where absent),
checked against raw PIL values, the official files and hand-written label rules."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pcseg.data.contract import IGNORE
from pcseg.data.images.cityscapes import cityscapes_source
from pcseg.data.images.folder import camvid_source, folder_source, mmseg_source
from pcseg.data.images.io import map_raw_ids, rgb_to_label
from pcseg.data.images.voc import voc_source
from pcseg.data.meta import load_dataset_meta


def _check_image(sample: dict) -> None:
    image = sample["image"]
    assert image.dtype == np.float32 and image.ndim == 3 and image.shape[2] == 3
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert sample["label"].dtype == np.int64 and sample["label"].shape == image.shape[:2]


def test_voc_palette_mask_read_as_indices(shared_data):
    root = shared_data / "images" / "voc"
    source = voc_source(root)
    assert source.names() == ["2007_000063"]
    sample = source.load("2007_000063")
    _check_image(sample)
    with Image.open(root / "SegmentationClass" / "2007_000063.png") as im:
        assert im.mode == "P"
        raw = np.array(im).astype(np.int64)
        palette = np.array(im.getpalette()[: 21 * 3], dtype=np.uint8).reshape(21, 3)
    # Class histogram against the raw palette indices: 0 background, 9 chair, 12 dog, 255 border.
    hist = {int(c): int(n) for c, n in zip(*np.unique(sample["label"], return_counts=True))}
    raw_hist = {int(c): int(n) for c, n in zip(*np.unique(raw, return_counts=True))}
    assert hist == {IGNORE: raw_hist[255], 0: raw_hist[0], 9: raw_hist[9], 12: raw_hist[12]}
    assert (sample["label"][raw != 255] == raw[raw != 255]).all()
    meta = load_dataset_meta("voc")
    assert meta.class_names[9] == "chair" and meta.class_names[12] == "dog"
    # The file's own palette is the official VOC colour map: the YAML colours must equal it.
    np.testing.assert_array_equal(meta.colors, palette)
    with Image.open(root / "JPEGImages" / "2007_000063.jpg") as im:
        np.testing.assert_array_equal(sample["image"], np.asarray(im, dtype=np.float32) / 255.0)


def test_voc_instances_are_single_class_objects(shared_data):
    sample = voc_source(shared_data / "images" / "voc").load("2007_000063")
    inst, label = sample["instance"], sample["label"]
    assert sorted(np.unique(inst).tolist()) == [-1, 1, 2]
    for k in (1, 2):
        assert len(np.unique(label[inst == k])) == 1
    assert (label[inst == -1] <= 0).all()  # background or border


def test_voc_split_list_and_unknown_name(shared_data, tmp_path):
    root = shared_data / "images" / "voc"
    with pytest.raises(FileNotFoundError, match="train.txt"):
        voc_source(root, "train")
    with pytest.raises(KeyError, match="nope"):
        voc_source(root).load("nope")


def test_cityscapes_labelids_to_trainids(shared_data):
    root = shared_data / "images" / "cityscapes"
    source = cityscapes_source(root, "val")
    name = "frankfurt_000000_000294"
    assert source.names() == [name]
    sample = source.load(name)
    _check_image(sample)
    gt = root / "gtFine" / "val" / "frankfurt"
    raw = np.array(Image.open(gt / f"{name}_gtFine_labelIds.png")).astype(np.int64)
    official = np.array(Image.open(gt / f"{name}_gtFine_labelTrainIds.png")).astype(np.int64)
    official = np.where(official == 255, IGNORE, official)
    # Hand-written part of the official table (cityscapesScripts labels.py).
    for label_id, train_id in {7: 0, 8: 1, 11: 2, 17: 5, 20: 7, 21: 8, 23: 10, 24: 11, 26: 13, 1: IGNORE, 4: IGNORE}.items():
        if (raw == label_id).any():
            assert (sample["label"][raw == label_id] == train_id).all(), label_id
    # The shipped trainIds file was downscaled separately, so a few edge pixels differ.
    assert (sample["label"] == official).mean() > 0.995
    inst = sample["instance"]
    assert set(np.unique(inst[inst >= 0]) // 1000) == {24, 26}  # persons and cars
    assert (sample["label"][inst // 1000 == 26] == 13).all()


def test_camvid_codes_and_void(shared_data):
    root = shared_data / "images" / "camvid"
    source = camvid_source(root)
    assert len(source.names()) == 5
    codes = (root / "codes.txt").read_text().split()
    meta = load_dataset_meta("camvid")
    for name in source.names()[:2]:
        sample = source.load(name)
        _check_image(sample)
        raw = np.array(Image.open(root / "labels" / f"{name}_P.png")).astype(np.int64)
        assert ((sample["label"] == IGNORE) == (raw == codes.index("Void"))).all()
        valid = sample["label"] != IGNORE
        names = np.array(meta.class_names)[sample["label"][valid]]
        assert (names == np.array(codes)[raw[valid]]).all()


@pytest.mark.parametrize("dataset,num_images", [("loveda", 3), ("potsdam", 1), ("vaihingen", 1)])
def test_mmseg_layout_reduce_zero_label(shared_data, dataset, num_images):
    root = shared_data / "images" / dataset
    source = mmseg_source(root, dataset)
    assert len(source.names()) == num_images
    name = source.names()[0]
    sample = source.load(name)
    _check_image(sample)
    raw = np.array(Image.open(root / "ann_dir" / f"{name}.png")).astype(np.int64)
    # mmsegmentation's rule for these sets: 0 = no class -> ignored, v -> v - 1.
    expected = np.where(raw == 0, IGNORE, raw - 1)
    np.testing.assert_array_equal(sample["label"], expected)
    assert sample["label"].max() < load_dataset_meta(dataset).num_classes


def test_rgb_coded_masks_round_trip(shared_data, tmp_path):
    """ISPRS originals are colour-coded: paint the real Potsdam labels with the class colours
    (black where ignored) and read them back through the RGB rule."""
    root = shared_data / "images" / "potsdam"
    sample = mmseg_source(root, "potsdam").load("2_10_0_0_512_512")
    meta = load_dataset_meta("potsdam")
    rgb = np.zeros(sample["label"].shape + (3,), dtype=np.uint8)
    valid = sample["label"] != IGNORE
    rgb[valid] = meta.colors[sample["label"][valid]]
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    Image.fromarray((sample["image"] * 255).round().astype(np.uint8)).save(tmp_path / "img" / "a.png")
    Image.fromarray(rgb).save(tmp_path / "ann" / "a.png")
    back = folder_source(tmp_path / "img", tmp_path / "ann", "potsdam", mask_encoding="rgb").load("a")
    np.testing.assert_array_equal(back["label"], sample["label"])
    with pytest.raises(ValueError, match="RGB mask"):
        folder_source(tmp_path / "img", tmp_path / "ann", "potsdam").load("a")


def test_rgb_to_label_hand_made():
    colors = np.array([[255, 255, 255], [0, 0, 255], [255, 0, 0]], dtype=np.uint8)
    rgb = np.array([[[0, 0, 255], [255, 0, 0]], [[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    assert rgb_to_label(rgb, colors).tolist() == [[1, 2], [IGNORE, 0]]


def test_map_raw_ids_rules():
    voc = load_dataset_meta("voc")
    assert map_raw_ids(np.array([[0, 20, 255]]), voc, "m").tolist() == [[0, 20, IGNORE]]
    with pytest.raises(ValueError, match=r"m: mask value 21 at \(row 0, col 1\)"):
        map_raw_ids(np.array([[0, 21]]), voc, "m")
    city = load_dataset_meta("cityscapes")
    assert map_raw_ids(np.array([[0, 7, 33, 34]]), city, "m").tolist() == [[IGNORE, 0, 18, IGNORE]]


def test_folder_missing_mask_names_both(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "ann").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "img" / "x.png")
    with pytest.raises(FileNotFoundError, match="x.png has no mask"):
        folder_source(tmp_path / "img", tmp_path / "ann", "voc")


def test_folder_with_user_class_yaml_and_palette_masks(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "classes.yaml").write_text(
        "name: mine\nraw_ignore: [255]\nclasses:\n  - {name: sea, color: [0, 0, 255]}\n  - {name: land, color: [0, 255, 0]}\n")
    raw = np.array([[0, 1, 255], [1, 1, 0]], dtype=np.uint8)
    mask = Image.fromarray(raw, mode="P")
    mask.putpalette([0, 0, 255, 0, 255, 0] + [255, 255, 255] * 254)  # colours differ from the indices
    mask.save(tmp_path / "masks" / "t1_mask.png")
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "images" / "t1.jpg")
    source = folder_source(tmp_path / "images", tmp_path / "masks", str(tmp_path / "classes.yaml"), mask_suffix="_mask")
    assert source.names() == ["t1"] and source.meta.class_names == ("sea", "land")
    assert source.load("t1")["label"].tolist() == [[0, 1, IGNORE], [1, 1, 0]]
    assert source.image_size("t1") == (2, 3)
