"""Transforms keep per-point keys aligned, move geometry correctly, are deterministic per generator."""
from __future__ import annotations

import numpy as np
import pytest

from pcseg.data.contract import IGNORE, POINT_KEYS
from pcseg.data.transforms import (TRANSFORMS, CenterShift, ChromaticAutoContrast, ChromaticJitter,
                                   ChromaticTranslation, Compose, ElasticDistortion, GridSample, RandomCrop,
                                   RandomFlip, RandomJitter, RandomRotate, RandomScale, build_transforms,
                                   grid_sample_index, train_transforms)


def full_scene(n: int = 400, seed: int = 0) -> dict:
    """Every per-point key; `instance` = arange(n) tracks each point through a transform."""
    rng = np.random.default_rng(seed)
    coord = (rng.random((n, 3)) * [4.0, 3.0, 2.5]).astype(np.float32)
    normal = rng.normal(size=(n, 3))
    normal = (normal / np.linalg.norm(normal, axis=1, keepdims=True)).astype(np.float32)
    label = rng.integers(0, 5, n).astype(np.int64)
    weak = np.full(n, IGNORE, dtype=np.int64)
    weak[rng.choice(n, 4, replace=False)] = 1
    return {"name": "room", "coord": coord, "color": rng.random((n, 3)).astype(np.float32), "normal": normal,
            "label": label, "instance": np.arange(n, dtype=np.int64), "weak_label": weak,
            "pseudo_label": rng.integers(-1, 5, n).astype(np.int64), "num_classes": 5}


def copy_scene(scene: dict) -> dict:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in scene.items()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k] == b[k]


ALL = [RandomRotate(), RandomScale(anisotropic=True), RandomFlip(), RandomJitter(), ElasticDistortion(p=1.0),
       ChromaticAutoContrast(p=1.0), ChromaticTranslation(p=1.0), ChromaticJitter(p=1.0),
       RandomCrop(max_points=150), RandomCrop(max_points=150, shape="box"), GridSample(0.3),
       GridSample(0.3, train=False), CenterShift(), train_transforms(max_points=120, grid_size=0.2)]


@pytest.mark.parametrize("transform", ALL, ids=lambda t: type(t).__name__)
def test_keys_aligned_input_untouched_deterministic(transform):
    scene = full_scene()
    before = copy_scene(scene)
    out = transform(scene, np.random.default_rng(7))
    assert_same(scene, before)  # never modifies its input
    assert_same(out, transform(scene, np.random.default_rng(7)))  # same generator -> same output
    assert out["num_classes"] == 5 and out["name"] == "room"
    n = len(out["coord"])
    ids = out["instance"]
    assert len(np.unique(ids)) == n
    for key in POINT_KEYS:
        assert len(out[key]) == n, key
    for key in ("label", "weak_label", "pseudo_label"):
        np.testing.assert_array_equal(out[key], scene[key][ids], err_msg=key)
    assert out["coord"].dtype == np.float32 and out["color"].dtype == np.float32
    if isinstance(transform, (ChromaticAutoContrast, ChromaticTranslation, ChromaticJitter, Compose)):
        assert out["color"].min() >= 0 and out["color"].max() <= 1
    else:
        np.testing.assert_array_equal(out["color"], scene["color"][ids])
    if isinstance(transform, (RandomCrop, GridSample, ChromaticAutoContrast, ChromaticTranslation, ChromaticJitter)):
        np.testing.assert_array_equal(out["coord"], scene["coord"][ids])
        np.testing.assert_array_equal(out["normal"], scene["normal"][ids])


def pairwise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def test_rotation_preserves_distances_and_turns_normals_with_points():
    scene = full_scene(60)
    out = RandomRotate(tilt=0.1)(scene, np.random.default_rng(1))
    assert not np.allclose(out["coord"], scene["coord"])
    np.testing.assert_allclose(pairwise(out["coord"]), pairwise(scene["coord"]), atol=1e-4)
    # angle between each normal and the direction to point 0 is unchanged
    before = np.einsum("ij,ij->i", scene["normal"], scene["coord"] - scene["coord"][0])
    after = np.einsum("ij,ij->i", out["normal"], out["coord"] - out["coord"][0])
    np.testing.assert_allclose(after, before, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(out["normal"], axis=1), 1.0, atol=1e-5)


def test_rotation_z_only_keeps_heights():
    scene = full_scene(30)
    out = RandomRotate(tilt=0.0)(scene, np.random.default_rng(2))
    np.testing.assert_allclose(out["coord"][:, 2], scene["coord"][:, 2], atol=1e-5)


def test_flip_hand_example():
    scene = {"coord": np.array([[0, 0, 0], [2, 4, 1]], np.float32),
             "normal": np.array([[1, 0, 0], [0, 0.6, 0.8]], np.float32)}
    out = RandomFlip(p=1.0)(scene, np.random.default_rng(0))
    np.testing.assert_allclose(out["coord"], [[2, 4, 0], [0, 0, 1]])
    np.testing.assert_allclose(out["normal"], [[-1, 0, 0], [0, -0.6, 0.8]], atol=1e-6)
    assert_same(RandomFlip(p=0.0)(scene, np.random.default_rng(0)), scene)


def test_scale_multiplies_all_distances_by_one_factor():
    scene = full_scene(40)
    out = RandomScale(0.8, 1.2)(scene, np.random.default_rng(3))
    ratio = pairwise(out["coord"])[np.triu_indices(40, 1)] / pairwise(scene["coord"])[np.triu_indices(40, 1)]
    assert 0.8 <= ratio.mean() <= 1.2
    np.testing.assert_allclose(ratio, ratio.mean(), rtol=1e-4)
    np.testing.assert_allclose(out["normal"], scene["normal"], atol=1e-6)  # isotropic: normals unchanged


def test_anisotropic_scale_keeps_normals_perpendicular_to_surfaces():
    # points on the plane x + y = 1 with normal (1, 1, 0)/sqrt2; after scaling the normal must stay normal
    t = np.random.default_rng(0).random((20, 2))
    coord = np.stack([t[:, 0], 1 - t[:, 0], t[:, 1]], axis=1).astype(np.float32)
    normal = np.tile(np.array([1, 1, 0], np.float32) / np.sqrt(2), (20, 1))
    out = RandomScale(0.5, 2.0, anisotropic=True)({"coord": coord, "normal": normal}, np.random.default_rng(1))
    tangents = out["coord"][1:] - out["coord"][0]
    np.testing.assert_allclose(tangents @ out["normal"][0], 0, atol=1e-5)


def test_jitter_is_clipped():
    scene = full_scene(500)
    out = RandomJitter(sigma=0.05, clip=0.02)(scene, np.random.default_rng(4))
    delta = np.abs(out["coord"] - scene["coord"])
    assert delta.max() <= 0.02 + 1e-6 and delta.max() > 0.019


def test_elastic_matches_the_scipy_reference():
    ndimage = pytest.importorskip("scipy.ndimage")
    from scipy.interpolate import RegularGridInterpolator

    scene = full_scene(300)
    params = ((0.2, 0.4), (0.8, 1.6))
    out = ElasticDistortion(params=params, p=1.0)(scene, np.random.default_rng(11))
    # the MinkowskiEngine / Pointcept reference, fed the same noise draws
    rng = np.random.default_rng(11)
    rng.random()
    coords = scene["coord"].astype(np.float64)
    blurs = [np.ones((3, 1, 1, 1)) / 3, np.ones((1, 3, 1, 1)) / 3, np.ones((1, 1, 3, 1)) / 3]
    for granularity, magnitude in params:
        coords_min = coords.min(0)
        noise_dim = ((coords - coords_min).max(0) // granularity).astype(int) + 3
        noise = rng.standard_normal((*noise_dim, 3))
        for _ in range(2):
            for blur in blurs:
                noise = ndimage.convolve(noise, blur, mode="constant", cval=0)
        ax = [np.linspace(lo, hi, d) for lo, hi, d in
              zip(coords_min - granularity, coords_min + granularity * (noise_dim - 2), noise_dim)]
        interp = RegularGridInterpolator(ax, noise, bounds_error=False, fill_value=0)
        coords = coords + interp(coords) * magnitude
    np.testing.assert_allclose(out["coord"], coords, atol=1e-5)


def test_auto_contrast_hand_example():
    scene = {"coord": np.zeros((2, 3), np.float32), "color": np.array([[0.2, 0.4, 0.5], [0.6, 0.8, 0.5]], np.float32)}
    out = ChromaticAutoContrast(p=1.0, blend_factor=1.0)(scene, np.random.default_rng(0))
    np.testing.assert_allclose(out["color"], [[0, 0, 0], [1, 1, 0]], atol=1e-6)
    half = ChromaticAutoContrast(p=1.0, blend_factor=0.5)(scene, np.random.default_rng(0))
    np.testing.assert_allclose(half["color"], [[0.1, 0.2, 0.25], [0.8, 0.9, 0.25]], atol=1e-6)


def test_translation_is_one_shift_within_ratio():
    scene = {"coord": np.zeros((3, 3), np.float32), "color": np.full((3, 3), 0.5, np.float32)}
    out = ChromaticTranslation(p=1.0, ratio=0.05)(scene, np.random.default_rng(0))
    shift = out["color"] - scene["color"]
    np.testing.assert_allclose(shift, np.broadcast_to(shift[0], (3, 3)), atol=1e-7)
    assert np.abs(shift).max() <= 0.05


def nearest_crop_centre(scene: dict, out: dict, metric) -> list[int]:
    """Labelled points c such that every kept point is at least as close to c as every dropped one."""
    kept = np.zeros(len(scene["coord"]), bool)
    kept[out["instance"]] = True
    centres = []
    for c in np.flatnonzero(scene["weak_label"] != IGNORE):
        d = metric(scene["coord"] - scene["coord"][c])
        if kept[c] and d[kept].max() <= d[~kept].min():
            centres.append(int(c))
    return centres


@pytest.mark.parametrize("shape, metric", [("sphere", lambda d: np.linalg.norm(d, axis=1)),
                                           ("box", lambda d: np.abs(d[:, :2]).max(1))])
def test_crop_keeps_nearest_points_around_a_labelled_point(shape, metric):
    for seed in range(5):
        scene = full_scene(500, seed)
        out = RandomCrop(max_points=120, shape=shape)(scene, np.random.default_rng(seed))
        assert len(out["coord"]) == 120
        assert (out["weak_label"] != IGNORE).sum() >= 1
        assert np.all(np.diff(out["instance"]) > 0)  # original order kept
        assert nearest_crop_centre(scene, out, metric)


def test_crop_with_a_single_labelled_point_keeps_it():
    scene = full_scene(300)
    scene["weak_label"][:] = IGNORE
    scene["weak_label"][123] = 2
    for seed in range(5):
        out = RandomCrop(max_points=10)(scene, np.random.default_rng(seed))
        assert 123 in out["instance"].tolist() and len(out["coord"]) == 10


def test_crop_of_duplicate_points_keeps_the_labelled_centre():
    scene = {"coord": np.zeros((50, 3), np.float32), "instance": np.arange(50),
             "weak_label": np.where(np.arange(50) == 49, 3, IGNORE)}
    out = RandomCrop(max_points=5)(scene, np.random.default_rng(0))
    assert 49 in out["instance"].tolist() and len(out["instance"]) == 5


def test_crop_without_labels_and_small_scenes():
    scene = full_scene(100)
    scene["weak_label"][:] = IGNORE
    assert len(RandomCrop(max_points=30)(scene, np.random.default_rng(0))["coord"]) == 30
    assert_same(RandomCrop(max_points=100)(scene, np.random.default_rng(0)), scene)
    with pytest.raises(ValueError, match="shape 'cube'"):
        RandomCrop(10, shape="cube")


def test_grid_sample_hand_example():
    coord = np.array([[0.05, 0.05, 0], [0.02, 0.01, 0], [0.15, 0, 0], [0.18, 0.02, 0], [0.5, 0.5, 0.5]], np.float32)
    # voxels of 0.1 relative to the minimum (0.02, 0, 0): {0, 1}, {2, 3}, {4}
    assert grid_sample_index(coord, 0.1).tolist() == [0, 2, 4]
    seen = set()
    for seed in range(30):
        idx = grid_sample_index(coord, 0.1, np.random.default_rng(seed)).tolist()
        assert len(idx) == 3 and idx[-1] == 4 and idx[0] in (0, 1) and idx[1] in (2, 3)
        seen.add(tuple(idx))
    assert len(seen) == 4  # random within each voxel
    prefer = np.array([False, True, False, False, False])
    for seed in range(10):
        assert grid_sample_index(coord, 0.1, np.random.default_rng(seed), prefer)[0] == 1


def test_grid_sample_one_point_per_voxel_reference():
    scene = full_scene(400)
    out = GridSample(0.5, train=True)(scene, np.random.default_rng(0))
    keys = {tuple(k) for k in np.floor((scene["coord"] - scene["coord"].min(0)) / 0.5).astype(int)}
    out_keys = [tuple(k) for k in np.floor((out["coord"] - scene["coord"].min(0)) / 0.5).astype(int)]
    assert len(out_keys) == len(set(out_keys)) == len(keys)
    # every labelled point is alone or preferred in its voxel: all 4 labelled points survive (voxels differ)
    labelled_keys = {k for k, w in zip(map(tuple, np.floor((scene["coord"] - scene["coord"].min(0)) / 0.5)
                                           .astype(int)), scene["weak_label"]) if w != IGNORE}
    assert (out["weak_label"] != IGNORE).sum() == len(labelled_keys)


def test_center_shift():
    scene = {"coord": np.array([[1, 2, 3], [3, 6, 5]], np.float32)}
    np.testing.assert_allclose(CenterShift()(scene, np.random.default_rng(0))["coord"], [[-1, -2, 0], [1, 2, 2]])


def test_build_transforms_and_errors():
    pipeline = build_transforms(["random_rotate", {"name": "random_crop", "max_points": 50, "shape": "box"},
                                 {"name": "elastic_distortion", "params": [[0.2, 0.4]]}])
    assert isinstance(pipeline, Compose)
    assert pipeline.transforms[1] == RandomCrop(50, "box")
    assert pipeline.transforms[2].params == ((0.2, 0.4),)
    with pytest.raises(ValueError, match=r"transforms\[1\]: unknown transform 'rotate'; valid: random_rotate"):
        build_transforms(["random_flip", "rotate"])
    with pytest.raises(ValueError, match=r"transforms\[0\]: transform 'random_crop' has no parameter max_pts; "
                                         "valid: max_points, shape"):
        build_transforms([{"name": "random_crop", "max_pts": 5}])
    assert set(TRANSFORMS) >= {"random_rotate", "grid_sample", "random_crop", "elastic_distortion"}
