"""Synthetic scenes: deterministic, every class shows up, colour alone does not classify."""
from __future__ import annotations

import colorsys

import numpy as np

from pcseg.data.images.synthetic import SHAPES, SyntheticSceneSource, generate_scene
from pcseg.data.meta import load_dataset_meta


def test_deterministic_per_seed_and_per_image():
    a, b = generate_scene(3), generate_scene(3)
    for key in ("image", "label", "instance"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(generate_scene(4)["label"], a["label"])
    small, large = SyntheticSceneSource(2, seed=5), SyntheticSceneSource(6, seed=5)
    np.testing.assert_array_equal(small.load("scene_0001")["image"], large.load("scene_0001")["image"])
    assert not np.array_equal(SyntheticSceneSource(2, seed=6).load("scene_0001")["image"],
                              small.load("scene_0001")["image"])


def test_contract_and_classes():
    meta = load_dataset_meta("synthetic_scenes")
    assert meta.class_names == ("background",) + SHAPES
    source = SyntheticSceneSource(8, seed=0, height=96, width=80)
    seen = set()
    for name in source.names():
        s = source.load(name)
        assert s["name"] == name
        assert s["image"].dtype == np.float32 and s["image"].shape == (96, 80, 3)
        assert 0.0 <= s["image"].min() and s["image"].max() <= 1.0
        assert s["label"].dtype == np.int64 and s["label"].shape == (96, 80)
        # Every object pixel has an instance, background has none.
        assert ((s["instance"] >= 0) == (s["label"] > 0)).all()
        seen |= set(np.unique(s["label"]).tolist())
    assert seen == set(range(meta.num_classes))


def _colour_bins(image: np.ndarray, bins: int) -> np.ndarray:
    q = np.clip((image * bins).astype(np.int64), 0, bins - 1)
    return (q[..., 0] * bins + q[..., 1]) * bins + q[..., 2]


def test_colour_only_classifier_scores_poorly():
    """Best-case colour lookup (majority class per 16^3 colour bin, fitted on 24 images) scores
    a low mIoU on 12 other images: every hue belongs to two shape classes and to backgrounds,
    so a colour bin's majority class is right for well under half of a shape's pixels."""
    k, bins = 6, 16
    votes = np.zeros((bins ** 3, k))
    for name in (train := SyntheticSceneSource(24, seed=0)).names():
        s = train.load(name)
        np.add.at(votes, (_colour_bins(s["image"], bins).ravel(), s["label"].ravel()), 1)
    lookup = votes.argmax(1)
    conf = np.zeros((k, k), dtype=np.int64)
    for name in (test := SyntheticSceneSource(12, seed=1)).names():
        s = test.load(name)
        np.add.at(conf, (s["label"].ravel(), lookup[_colour_bins(s["image"], bins)].ravel()), 1)
    iou = np.diag(conf) / (conf.sum(0) + conf.sum(1) - np.diag(conf))
    assert iou.mean() < 0.5
    assert iou[1:].max() < 0.4 and iou[1:].mean() < 0.2  # no shape class is recognisable by colour


def test_object_hues_lie_in_their_class_window():
    """An object of class k is painted in a hue from [(k-1)/5, (k+1)/5) (mod 1): measured as
    the median hue of its pixels, against the formula of the module doc."""
    checked = 0
    for seed in range(20):
        s = generate_scene(seed, 96, 96)
        for k in np.unique(s["instance"][s["instance"] >= 0]):
            mask = s["instance"] == k
            cls = int(s["label"][mask][0])
            rgb = s["image"][mask].astype(np.float64)
            hue = np.array([colorsys.rgb_to_hsv(*px)[0] for px in rgb[: 400]])
            # circular median: the hue minimising the summed circular distance to the pixels
            grid = np.linspace(0, 1, 360, endpoint=False)
            dist = np.abs(((hue[None] - grid[:, None]) + 0.5) % 1.0 - 0.5).sum(1)
            median = grid[dist.argmin()]
            into_window = (median - (cls - 1) / len(SHAPES)) % 1.0  # 0 at the window's start
            assert into_window <= 2 / len(SHAPES) + 0.02 or into_window >= 1 - 0.02, (seed, cls, median)
            checked += 1
    assert checked > 30
