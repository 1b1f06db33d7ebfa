"""Label propagation: `nearest_label_propagation` against a Python double loop, the scene
source that applies it, and the `propagation` method's loss against its formula."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pcseg.data.contract import IGNORE
from pcseg.data.propagated import PropagatedSource, propagation_features
from pcseg.methods.propagation import LabelPropagation
from pcseg.weak.propagate import nearest_label_propagation
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
    prop = PropagatedSource(source, protocol, radius=0.4, color_scale=0.5)
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
        PropagatedSource(source, protocol, radius=0.0, color_scale=1.0)


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


def test_engine_feeds_propagated_labels_and_refuses_full_labels():
    from pcseg.config import load_config
    from pcseg.engine.build import build_setup
    base = ["method.name=propagation", "data.train_rooms=2", "data.val_rooms=1", "data.room_points=1000",
            "data.voxel_size=0.4", "data.protocol=ratio:0.05", "method.propagation.radius=0.5",
            "data.augment=false", "model.name=minkunet14a"]
    setup = build_setup(load_config(None, base))
    batch = next(iter(setup.train_loader.batches(0)))
    pseudo, weak, label = batch["pseudo_label"], batch["weak_label"], batch["label"]
    assert ((pseudo != IGNORE) & (weak != IGNORE)).sum() == 0  # never on a labelled point
    assert (pseudo != IGNORE).sum() > 2 * (weak != IGNORE).sum()
    assert (pseudo[pseudo != IGNORE] == label[pseudo != IGNORE]).float().mean() > 0.6
    with pytest.raises(ValueError, match="data.protocol"):
        build_setup(load_config(None, base + ["data.protocol=null"]))
