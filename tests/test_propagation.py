"""Label propagation: `nearest_label_propagation` and `segment_label_propagation` against
Python loops, `surface_segments` against a brute-force k-NN graph and breadth-first search,
the scene source that applies them, and the `propagation` method's loss against its formula."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pcseg.data.contract import IGNORE
from pcseg.data.propagated import PropagatedSource, build_propagator, propagation_features, radius_propagator, \
    segment_propagator
from pcseg.data.segments import estimated_normals, surface_segments
from pcseg.methods.propagation import LabelPropagation
from pcseg.weak.propagate import nearest_label_propagation, segment_label_propagation
from pcseg.weak.protocol import iter_source, make_protocol


def loop_reference(features: np.ndarray, labels: np.ndarray, max_distance: float) -> np.ndarray:
    out = np.full(len(labels), IGNORE)
    labelled = [j for j in range(len(labels)) if labels[j] != IGNORE]
    for i in range(len(labels)):
        if labels[i] != IGNORE or not labelled:
            continue
        best = min(labelled, key=lambda j: float(np.sqrt(((features[i] - features[j]) ** 2).sum())))
        if np.sqrt(((features[i] - features[best]) ** 2).sum()) < max_distance:
            out[i] = labels[best]
    return out


@pytest.mark.parametrize("chunk_rows", [1, 7, 1000])
def test_equals_the_loop_reference(chunk_rows):
    rng = np.random.default_rng(0)
    features = rng.random((120, 5))
    labels = np.full(120, IGNORE)
    picked = rng.choice(120, 9, replace=False)
    labels[picked] = rng.integers(0, 4, 9)
    got = nearest_label_propagation(torch.from_numpy(features), torch.from_numpy(labels), 0.45, chunk_rows)
    assert got.tolist() == loop_reference(features, labels, 0.45).tolist()
    assert (got[torch.from_numpy(labels != IGNORE)] == IGNORE).all()  # labelled rows keep no pseudo label


def test_hand_made_line():
    # points at x = 0, 1, 2, 3, 10; labelled: x=0 -> class 2, x=3 -> class 5
    features = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    labels = torch.tensor([2, IGNORE, IGNORE, 5, IGNORE])
    assert nearest_label_propagation(features, labels, 1.5).tolist() == [IGNORE, 2, 5, IGNORE, IGNORE]
    assert nearest_label_propagation(features, torch.full((5,), IGNORE), 1.5).tolist() == [IGNORE] * 5
    with pytest.raises(ValueError, match="max_distance"):
        nearest_label_propagation(features, labels, 0.0)


class TwoRooms:
    def __init__(self):
        from pcseg.data.synthetic import generate_room
        self.scenes = {f"r{i}": generate_room(seed=i, num_points=800) for i in range(2)}

    def names(self):
        return list(self.scenes)

    def load(self, name):
        return dict(self.scenes[name])


def test_source_adds_pseudo_labels_from_the_protocol_in_xyz_and_colour():
    source = TwoRooms()
    protocol = make_protocol("ratio:0.05", iter_source(source), seed=3, source="two rooms")
    prop = PropagatedSource(source, protocol, radius_propagator(radius=0.4, color_scale=0.5))
    for name in source.names():
        scene = prop.load(name)
        entry = protocol.entry(name)
        weak = np.full(len(scene["coord"]), IGNORE)
        weak[entry.indices] = entry.labels
        features = np.concatenate([scene["coord"], 0.5 * scene["color"]], axis=1).astype(np.float64)
        assert np.array_equal(scene["pseudo_label"], loop_reference(features, weak, 0.4))
        assert "pseudo_label" not in source.load(name)  # the wrapped source is untouched
    assert propagation_features(source.load("r0"), 0.0).shape == (800, 3)
    with pytest.raises(ValueError, match="method.propagation.radius"):
        radius_propagator(radius=0.0, color_scale=1.0)


class Identity(torch.nn.Module):
    def forward(self, batch):
        return {"logits": batch["feat"]}


def test_loss_is_ce_on_weak_plus_weighted_ce_on_propagated():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 3.0], [1.0, -2.0, 0.0]])
    batch = {"feat": logits, "weak_label": torch.tensor([0, IGNORE, IGNORE, IGNORE]),
             "pseudo_label": torch.tensor([IGNORE, 1, 2, IGNORE])}
    weights = torch.tensor([1.0, 2.0, 0.5])
    out = LabelPropagation(Identity(), weight=0.3, class_weights=weights)(batch)
    logp = torch.log_softmax(logits, dim=1)
    ce_weak = -logp[0, 0]
    ce_prop = -(weights[1] * logp[1, 1] + weights[2] * logp[2, 2]) / (weights[1] + weights[2])
    assert out["loss"].item() == pytest.approx((ce_weak + 0.3 * ce_prop).item())
    assert out["propagated"].item() == pytest.approx(ce_prop.item())
    assert "entropy" not in out


def test_entropy_term_is_the_softmax_entropy_of_the_unlabelled_rows_alone():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 1.0, 3.0], [1.0, -2.0, 0.0], [0.0, 0.0, 0.0]])
    batch = {"feat": logits, "weak_label": torch.tensor([0, IGNORE, IGNORE, IGNORE, IGNORE]),
             "pseudo_label": torch.tensor([IGNORE, 1, IGNORE, IGNORE, IGNORE])}
    plain = LabelPropagation(Identity(), weight=1.0)(batch)
    out = LabelPropagation(Identity(), weight=1.0, entropy_weight=0.2)(batch)
    # rows 2, 3, 4 have no label; entropy by hand: -sum p log p with p = exp(l) / sum exp(l)
    rows = []
    for row in ([0.0, 1.0, 3.0], [1.0, -2.0, 0.0], [0.0, 0.0, 0.0]):
        e = [math.exp(v) for v in row]
        p = [v / sum(e) for v in e]
        rows.append(-sum(q * math.log(q) for q in p))
    want = sum(rows) / 3
    assert rows[2] == pytest.approx(math.log(3))
    assert out["entropy"].item() == pytest.approx(want, rel=1e-6)
    assert out["loss"].item() == pytest.approx(plain["loss"].item() + 0.2 * want, rel=1e-6)


@pytest.mark.parametrize("mode", ["radius", "segments"])
def test_engine_feeds_propagated_labels_and_refuses_full_labels(mode):
    from pcseg.config import load_config
    from pcseg.engine.build import build_setup
    base = ["method.name=propagation", "data.train_rooms=2", "data.val_rooms=1", "data.room_points=1000",
            "data.voxel_size=0.4", "data.protocol=ratio:0.05", "method.propagation.radius=0.5",
            f"method.propagation.mode={mode}", "method.propagation.segment_max_distance=0.4",
            "data.augment=false", "model.name=minkunet14a"]
    setup = build_setup(load_config(None, base))
    batch = next(iter(setup.train_loader.batches(0)))
    pseudo, weak, label = batch["pseudo_label"], batch["weak_label"], batch["label"]
    assert ((pseudo != IGNORE) & (weak != IGNORE)).sum() == 0  # never on a labelled point
    assert (pseudo != IGNORE).sum() > 2 * (weak != IGNORE).sum()
    assert (pseudo[pseudo != IGNORE] == label[pseudo != IGNORE]).float().mean() > 0.6
    with pytest.raises(ValueError, match="data.protocol"):
        build_setup(load_config(None, base + ["data.protocol=null"]))


def test_engine_gives_dsp_propagated_labels_when_it_asks_for_them():
    from pcseg.config import load_config
    from pcseg.engine.build import build_setup
    base = ["method.name=dsp", "data.train_rooms=4", "data.val_rooms=1", "data.room_points=1000",
            "data.voxel_size=0.4", "data.protocol=ratio:0.05", "method.propagation.radius=0.5",
            "data.augment=false", "model.name=minkunet14a"]
    plain = next(iter(build_setup(load_config(None, base)).train_loader.batches(0)))
    assert "pseudo_label" not in plain
    setup = build_setup(load_config(None, base + ["method.dsp.propagated_weight=0.5"]))
    batch = next(iter(setup.train_loader.batches(0)))
    pseudo, weak = batch["pseudo_label"], batch["weak_label"]
    assert ((pseudo != IGNORE) & (weak != IGNORE)).sum() == 0
    assert (pseudo != IGNORE).sum() > 2 * (weak != IGNORE).sum()
    assert torch.equal(batch["weak_label"], plain["weak_label"])  # same pairs, same weak labels
    with pytest.raises(ValueError, match="'dsp' spreads weak labels"):
        build_setup(load_config(None, base + ["method.dsp.propagated_weight=0.5", "data.protocol=null"]))


def segment_loop_reference(features: np.ndarray, labels: np.ndarray, segments: np.ndarray) -> np.ndarray:
    out = np.full(len(labels), IGNORE)
    for i in range(len(labels)):
        same = [j for j in range(len(labels)) if segments[j] == segments[i] and labels[j] != IGNORE]
        if labels[i] != IGNORE or not same:
            continue
        out[i] = labels[min(same, key=lambda j: float(((features[i] - features[j]) ** 2).sum()))]
    return out


def test_segment_propagation_equals_the_loop_reference():
    rng = np.random.default_rng(1)
    features, segments = rng.random((150, 3)), rng.integers(0, 12, 150)
    labels = np.full(150, IGNORE)
    picked = rng.choice(150, 14, replace=False)
    labels[picked] = rng.integers(0, 5, 14)
    got = segment_label_propagation(torch.from_numpy(features), torch.from_numpy(labels), torch.from_numpy(segments))
    want = segment_loop_reference(features, labels, segments)
    assert got.tolist() == want.tolist()
    assert (want != IGNORE).sum() > 50  # the reference is not trivially empty
    with pytest.raises(ValueError, match="segments"):
        segment_label_propagation(torch.from_numpy(features), torch.from_numpy(labels), torch.zeros(3, dtype=torch.int64))


def canonical(ids: np.ndarray) -> list[int]:
    """Segment ids renumbered by first appearance, so two partitions compare with ==."""
    first: dict[int, int] = {}
    return [first.setdefault(int(i), len(first)) for i in ids]


def bfs_segments(coord, color, normal, k, max_distance, max_color, min_cos) -> np.ndarray:
    n = len(coord)
    dist = np.sqrt(((coord[:, None] - coord[None]) ** 2).sum(-1))
    adjacent = [set() for _ in range(n)]
    for i in range(n):
        for j in [j for j in np.argsort(dist[i]) if j != i][:k]:
            if dist[i, j] < max_distance and np.linalg.norm(color[i] - color[j]) < max_color \
                    and abs(float(normal[i] @ normal[j])) > min_cos:
                adjacent[i].add(int(j))
                adjacent[int(j)].add(i)
    out, current = np.full(n, -1), 0
    for start in range(n):
        if out[start] >= 0:
            continue
        queue, out[start] = [start], current
        while queue:
            for j in adjacent[queue.pop()]:
                if out[j] < 0:
                    out[j] = current
                    queue.append(j)
        current += 1
    return out


def test_surface_segments_equal_a_brute_force_graph_search():
    rng = np.random.default_rng(2)
    coord = rng.random((90, 3))
    color = rng.random((90, 3)) * 0.3
    normal = rng.normal(size=(90, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    got = surface_segments(coord, color, normal, neighbours=5, max_distance=0.3, max_color=0.25, min_normal_cos=0.3)
    want = bfs_segments(coord, color, normal, 5, 0.3, 0.25, 0.3)
    assert canonical(got) == canonical(want)
    assert 1 < len(set(want.tolist())) < 60  # neither one blob nor all singletons


def test_surface_segments_split_a_box_from_its_floor_and_a_wall_from_the_floor():
    # a grey floor (z = 0), a grey wall (x = 0) meeting it, and a red box top at z = 0.4
    g = np.linspace(0.05, 1.95, 20)
    xx, yy = np.meshgrid(g, g)
    floor = np.stack([xx.ravel(), yy.ravel(), np.zeros(400)], 1)
    wall = np.stack([np.zeros(400), xx.ravel(), yy.ravel() / 2 + 0.05], 1)
    box = np.stack([xx.ravel()[:100] / 4 + 1.0, yy.ravel()[:100] / 4 + 1.0, np.full(100, 0.4)], 1)
    coord = np.concatenate([floor, wall, box])
    color = np.concatenate([np.full((800, 3), 0.5), np.tile([0.8, 0.1, 0.1], (100, 1))])
    normal = np.concatenate([np.tile([0, 0, 1.0], (400, 1)), np.tile([1.0, 0, 0], (400, 1)), np.tile([0, 0, -1.0], (100, 1))])
    for given in (normal, None):  # the scene's normals, and estimated ones
        seg = surface_segments(coord, color, given, neighbours=8, max_distance=0.2, max_color=0.1, min_normal_cos=0.8)
        floor_ids, wall_ids, box_ids = set(seg[:400].tolist()), set(seg[400:800].tolist()), set(seg[800:].tolist())
        assert len(floor_ids) == len(wall_ids) == len(box_ids) == 1
        assert box_ids.isdisjoint(floor_ids | wall_ids)  # colour separates the box
        # given normals separate the wall from the floor; estimated ones tilt along the shared
        # edge (their neighbourhoods straddle it) and chain the two same-coloured surfaces
        assert floor_ids.isdisjoint(wall_ids) == (given is not None)
    estimated = estimated_normals(floor + np.random.default_rng(0).normal(0, 0.002, floor.shape), 8)
    assert np.abs(estimated[:, 2]).min() > 0.95


def test_segment_propagator_spreads_labels_over_their_segment_only():
    coord = np.array([[0.0, 0, 0], [0.1, 0, 0], [0.2, 0, 0], [0.3, 0, 0], [3.0, 0, 0], [3.1, 0, 0]])
    scene = {"coord": coord, "color": np.zeros((6, 3)), "normal": np.tile([0, 0, 1.0], (6, 1))}
    weak = np.array([4, IGNORE, IGNORE, IGNORE, IGNORE, IGNORE])
    got = segment_propagator(neighbours=2, max_distance=0.15, max_color=0.1, min_normal_cos=0.8)(scene, weak)
    assert got.tolist() == [IGNORE, 4, 4, 4, IGNORE, IGNORE]  # the far pair is another segment
    with pytest.raises(ValueError, match="method.propagation.segment_neighbours"):
        segment_propagator(neighbours=0, max_distance=0.15, max_color=0.1, min_normal_cos=0.8)


def test_unknown_propagation_mode_names_the_key():
    from pcseg.config import load_config
    with pytest.raises(ValueError, match="method.propagation.mode"):
        build_propagator(load_config(None, ["method.propagation.mode=nearest"]).method.propagation)
