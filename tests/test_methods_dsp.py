"""DSP: affinity, chunked reallocation, gradient routing across a pair, schedule, one real step."""
import math

import numpy as np
import pytest
import torch

from pcseg.data.collate import collate_scenes
from pcseg.data.contract import IGNORE
from pcseg.data.synthetic import generate_room
from pcseg.methods.dsp import DSP, affinity, chunk_rows, consistency, encoder_channels, reallocate
from pcseg.models.segmentor import Segmentor
from pcseg.sparse import SparseTensor


@pytest.fixture(autouse=True)
def torch_backend(monkeypatch):
    # the pure-PyTorch sparse engine: defines the results, and needs no native build
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "torch")


def features(n: int, c: int, seed: int) -> torch.Tensor:
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_affinity_rows_sum_to_one_and_match_loops():
    q, k = features(5, 3, 0), features(7, 3, 1)
    w = features(3, 3, 2)
    a = affinity(q, k, w)
    assert a.shape == (5, 7)
    assert a.sum(1).tolist() == pytest.approx([1.0] * 5, abs=1e-12)
    for i in range(5):
        scores = [float(q[i] @ w @ k[j]) for j in range(7)]
        top = max(scores)
        expect = [math.exp(s - top) for s in scores]
        assert a[i].tolist() == pytest.approx([e / sum(expect) for e in expect], rel=1e-9)


@pytest.mark.parametrize("budget_rows", [1, 3, 5, 100])
def test_chunked_reallocation_equals_dense(budget_rows):
    q0, k0, w0 = features(11, 4, 3), features(9, 4, 4), features(4, 4, 5)
    budget = budget_rows * 3 * 9 * 8  # bytes for `budget_rows` rows of float64
    assert chunk_rows(9, budget, 8) == budget_rows
    dense_inputs = [t.clone().requires_grad_(True) for t in (q0, k0, w0)]
    chunk_inputs = [t.clone().requires_grad_(True) for t in (q0, k0, w0)]
    dense = affinity(*dense_inputs[:2], dense_inputs[2]) @ dense_inputs[1]
    chunked = reallocate(*chunk_inputs[:2], chunk_inputs[2], budget)
    assert torch.allclose(chunked, dense, atol=1e-12)
    upstream = features(11, 4, 6)
    (dense * upstream).sum().backward()
    (chunked * upstream).sum().backward()
    for a, b in zip(dense_inputs, chunk_inputs):
        assert torch.allclose(a.grad, b.grad, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(reallocate(q0, k0, w0, budget), dense.detach(), atol=1e-12)


def test_labelled_loss_in_scene_i_reaches_unlabelled_features_of_scene_j():
    f_i = features(6, 4, 7).requires_grad_(True)
    f_j = features(8, 4, 8).requires_grad_(True)
    w = (torch.eye(4, dtype=torch.float64) / 2).requires_grad_(True)
    head = features(4, 3, 9)
    labelled_i = torch.tensor([0, 3])  # scene i has two labelled rows, scene j none
    target = torch.tensor([1, 2])
    # with CSFR: scene i's branch sees F_{j->i} = A F_j
    logits = reallocate(f_i, f_j, w, 1e6) @ head
    torch.nn.functional.cross_entropy(logits[labelled_i], target).backward()
    assert bool((f_j.grad.abs().sum(1) > 0).all())  # every (unlabelled) row of scene j gets gradient
    assert float(w.grad.abs().sum()) > 0
    # without CSFR, the same loss on scene i's own features leaves scene j untouched
    f_j.grad = None
    plain = f_i @ head
    torch.nn.functional.cross_entropy(plain[labelled_i], target).backward()
    assert f_j.grad is None


def test_schedule_switches_at_stage1():
    model = Segmentor("minkunet14a", 3, 5, 0.2)
    staged = DSP(model, stride=16, schedule="staged", stage1_epochs=2)
    seen = []
    for epoch in range(4):
        staged.on_epoch_start(epoch)
        seen.append((staged.use_csfr, staged.use_isfr))
    assert seen == [(True, False), (True, False), (False, True), (False, True)]
    joint = DSP(model, schedule="joint")
    joint.on_epoch_start(7)
    assert (joint.use_csfr, joint.use_isfr) == (True, True)
    assert encoder_channels(model.backbone, 16) == staged.w_cross.shape[0] == 256
    assert encoder_channels(model.backbone, 8) == 128
    with pytest.raises(ValueError, match="method.dsp.schedule"):
        DSP(model, schedule="both")
    with pytest.raises(ValueError, match="method.dsp.stride"):
        DSP(model, stride=3)


def test_csfr_step_propagates_from_labelled_scene_to_unlabelled_scene():
    scenes = []
    for seed, labelled in ((5, True), (6, False)):
        scene = generate_room(seed, num_points=1000)
        weak = np.full(1000, IGNORE, dtype=np.int64)
        if labelled:
            weak[::20] = scene["label"][::20]
        scenes.append({**scene, "weak_label": weak})
    batch = collate_scenes(scenes)
    torch.manual_seed(0)
    method = DSP(Segmentor("minkunet14a", 3, 13, 0.2), stride=8, schedule="csfr", chunk_mb=0.001)
    method.train()
    out = method(batch)
    assert out["logits"].shape == (2000, 13)
    assert float(out["csfr_consistency"]) >= 0 and "isfr_consistency" not in out
    # the consistency with the labelled scene's prediction moves the cross weight: it reached scene 1's features
    grad_w, = torch.autograd.grad(out["loss"], [method.w_cross])
    assert float(grad_w.abs().sum()) > 0
    assert math.isfinite(out["loss"].item())


def test_cross_features_read_one_affinity_both_ways_and_isfr_uses_its_transpose():
    """Paper form: A_c = F_i W_c F_j^T; F_{j->i} = softmax_row(A_c) F_j, F_{i->j} = softmax_row(A_c^T) F_i;
    F_self = softmax_row((F W_s F^T)^T) F."""
    torch.manual_seed(3)
    method = DSP(Segmentor("minkunet14a", 3, 5, 0.2), stride=16, schedule="joint")
    channels = method.w_cross.shape[0]
    with torch.no_grad():
        method.w_cross.copy_(torch.randn(channels, channels) / channels)
        method.w_self.copy_(torch.randn(channels, channels) / channels)
    coords = torch.tensor([[0, 0, 0, 0], [0, 16, 0, 0], [0, 0, 16, 0], [1, 0, 0, 0], [1, 16, 16, 0]], dtype=torch.int32)
    feats = torch.randn(5, channels)
    level = SparseTensor(feats, coords, stride=16)
    f_i, f_j = feats[:3], feats[3:]
    a_c = f_i @ method.w_cross @ f_j.t()
    cross, paired = method.cross_features(level, 2)
    assert paired == 2
    torch.testing.assert_close(cross[:3], torch.softmax(a_c, 1) @ f_j)
    torch.testing.assert_close(cross[3:], torch.softmax(a_c.t(), 1) @ f_i)
    own = method.self_features(level, 2)
    for rows in (slice(0, 3), slice(3, 5)):
        f = feats[rows]
        torch.testing.assert_close(own[rows], torch.softmax((f @ method.w_self @ f.t()).t(), 1) @ f)


def test_consistency_is_squared_distance_of_probabilities():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [1.0, -1.0]])
    branch = torch.tensor([[0.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    mask = torch.tensor([True, True, False])
    p = torch.softmax(logits, 1)
    q = torch.softmax(branch, 1)
    expected = ((p[0] - q[0]) ** 2).sum() / 2  # row 1 equal, row 2 masked out
    torch.testing.assert_close(consistency(logits, branch, mask, "mse"), expected)
    kl = (p[0] * (p[0].log() - q[0].log())).sum() / 2
    torch.testing.assert_close(consistency(logits, branch, mask, "kl"), kl)
    assert float(consistency(logits, branch, torch.zeros(3, dtype=torch.bool))) == 0.0


def test_propagated_labels_add_their_weighted_ce_to_the_plain_branch():
    """loss(propagated_weight=w) = loss(0) + w * CE(p, y~) over the rows with a propagated label, by hand."""
    scenes = []
    for seed in (5, 6):
        scene = generate_room(seed, num_points=600)
        weak = np.full(600, IGNORE, dtype=np.int64)
        weak[::30] = scene["label"][::30]
        pseudo = np.full(600, IGNORE, dtype=np.int64)
        pseudo[1::7] = scene["label"][1::7]
        pseudo[weak != IGNORE] = IGNORE
        scenes.append({**scene, "weak_label": weak, "pseudo_label": pseudo})
    batch = collate_scenes(scenes)
    torch.manual_seed(0)
    model = Segmentor("minkunet14a", 3, 13, 0.2)
    plain = DSP(model, stride=8, schedule="joint")
    assert not getattr(plain, "needs_propagated_labels")
    both = DSP(model, stride=8, schedule="joint", propagated_weight=0.4)
    assert both.needs_propagated_labels
    both.load_state_dict(plain.state_dict())
    plain.eval(), both.eval()  # batch norm on running stats: the two forwards see the same network
    with torch.no_grad():
        ref, out = plain(batch), both(batch)
    rows = torch.nonzero(batch["pseudo_label"] != IGNORE).flatten()
    logp = torch.log_softmax(out["logits"].double(), 1)
    by_hand = -sum(float(logp[r, batch["pseudo_label"][r]]) for r in rows) / len(rows)
    assert float(out["propagated"]) == pytest.approx(by_hand, rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float(ref["loss"]) + 0.4 * by_hand, rel=1e-5)
    assert "propagated" not in ref
    with pytest.raises(KeyError, match="pseudo_label"):
        both({k: v for k, v in batch.items() if k != "pseudo_label"})
