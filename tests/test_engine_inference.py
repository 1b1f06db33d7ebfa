import math

import numpy as np
import pytest
import torch

from pcseg.engine.inference import predict_scene, spatial_blocks, vote_transform


def scene_of(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"coord": (rng.random((n, 3)) * [8, 4, 3]).astype(np.float32),
            "color": rng.random((n, 3)).astype(np.float32),
            "normal": np.tile(np.array([[1.0, 0.0, 0.0]], dtype=np.float32), (n, 1))}


def colour_logits(scene: dict) -> torch.Tensor:
    """Per-point (no context): any block of a scene gets the same logits for a point."""
    return torch.from_numpy(scene["color"] * 4)


def test_blocks_hand_made():
    # 8 points on a line along x; cores of at most 2 points; no margin -> the cores themselves
    coord = np.array([[x, 0, 0] for x in (7, 0, 6, 1, 5, 2, 4, 3)], dtype=np.float32)
    blocks = spatial_blocks(coord, max_points=2, overlap=0.0)
    got = sorted(sorted(coord[b, 0].tolist()) for b in blocks)
    assert got == [[0, 1], [2, 3], [4, 5], [6, 7]]
    # a margin of 1 m adds each neighbour on both sides
    grown = sorted(sorted(coord[b, 0].tolist()) for b in spatial_blocks(coord, 2, overlap=1.0))
    assert grown == [[0, 1, 2], [1, 2, 3, 4], [3, 4, 5, 6], [5, 6, 7]]


def test_blocks_cover_every_point_with_bounded_cores():
    coord = scene_of(1000)["coord"]
    blocks = spatial_blocks(coord, max_points=150, overlap=0.0)
    covered = np.concatenate(blocks)
    assert sorted(covered.tolist()) == list(range(1000))  # a partition without margin
    assert max(len(b) for b in blocks) <= 150


def test_chunked_prediction_equals_whole_scene():
    scene = scene_of(500)
    whole = predict_scene(colour_logits, scene)
    chunked = predict_scene(colour_logits, scene, max_points=60, overlap=0.5)
    assert whole.shape == (500, 3) and whole.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(whole, torch.softmax(colour_logits(scene), 1).numpy(), rtol=1e-6)


def test_chunks_see_at_most_budget_plus_margin():
    scene = scene_of(2000)
    sizes = []

    def logits(part):
        sizes.append(len(part["coord"]))
        return colour_logits(part)
    predict_scene(logits, scene, max_points=300, overlap=0.0)
    assert max(sizes) <= 300 and sum(sizes) == 2000


def test_vote_transform_by_hand():
    scene = {"coord": np.array([[1, 0, 5], [-1, 0, 2]], dtype=np.float32),
             "normal": np.array([[1, 0, 0], [0, 1, 0]], dtype=np.float32)}
    # vote 1 of 4: mirror x, then rotate 90 degrees about z through the xy centre (0, 0)
    out = vote_transform(scene, 1, 4)
    np.testing.assert_allclose(out["coord"], [[0, -1, 5], [0, 1, 2]], atol=1e-6)
    np.testing.assert_allclose(out["normal"], [[0, -1, 0], [-1, 0, 0]], atol=1e-6)
    np.testing.assert_array_equal(scene["coord"], [[1, 0, 5], [-1, 0, 2]])  # input untouched
    assert vote_transform(scene, 0, 4) is scene


def test_votes_average_softmax():
    scene = scene_of(50)

    def logits(part):  # depends on x: each vote sees different logits
        return torch.from_numpy(np.stack([part["coord"][:, 0], -part["coord"][:, 0], np.zeros(len(part["coord"]))], 1))
    prob = predict_scene(logits, scene, votes=3)
    expected = np.mean([torch.softmax(logits(vote_transform(scene, v, 3)), 1).numpy() for v in range(3)], axis=0)
    np.testing.assert_allclose(prob, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="votes"):
        predict_scene(logits, scene, votes=0)


def test_rotation_keeps_distances():
    scene = scene_of(30, seed=3)
    out = vote_transform(scene, 3, 8)
    d0 = np.linalg.norm(scene["coord"][:, None] - scene["coord"][None], axis=-1)
    d1 = np.linalg.norm(out["coord"][:, None] - out["coord"][None], axis=-1)
    np.testing.assert_allclose(d0, d1, atol=1e-4)
    assert not np.allclose(out["coord"], scene["coord"])
    assert math.isclose(float(np.linalg.norm(out["normal"][0])), 1.0, rel_tol=1e-6)
