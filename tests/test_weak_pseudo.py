"""pcseg.weak.pseudo and pcseg.weak.losses on tiny hand-made logits."""
import math

import numpy as np
import pytest
import torch

from pcseg.weak.losses import cps_terms, erda_loss, masked_ce, sigmoid_rampup, softmax_mse
from pcseg.weak.pseudo import (IGNORE, aligned_logits, class_prior, confidence, threshold_pseudo_labels,
                               update_class_mean)


def softmax_row(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def test_confidence_and_plain_threshold():
    # softmax([log 9, 0]) = [0.9, 0.1]; softmax([0, 0]) = [0.5, 0.5]; softmax([0, log 3]) = [0.25, 0.75]
    logits = torch.tensor([[math.log(9), 0.0], [0.0, 0.0], [0.0, math.log(3)], [math.log(9), 0.0]])
    conf, pred = confidence(logits)
    assert conf.tolist() == pytest.approx([0.9, 0.5, 0.75, 0.9])
    assert pred.tolist() == [0, 0, 1, 0]
    labels = torch.tensor([IGNORE, IGNORE, IGNORE, 1])  # the last row is labelled: never pseudo-labelled
    assert threshold_pseudo_labels(logits, labels, 0.7).tolist() == [0, IGNORE, 1, IGNORE]
    assert threshold_pseudo_labels(logits, labels, 0.8).tolist() == [0, IGNORE, IGNORE, IGNORE]
    assert threshold_pseudo_labels(logits, labels, 0.0).tolist() == [0, 0, 1, IGNORE]
    with pytest.raises(ValueError, match="threshold"):
        threshold_pseudo_labels(logits, labels, 1.5)


def test_inputs_are_not_modified():
    logits = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, IGNORE, 2, IGNORE, IGNORE, 1])
    copies = logits.clone(), labels.clone()
    threshold_pseudo_labels(logits, labels, 0.3)
    assert torch.equal(logits, copies[0]) and torch.equal(labels, copies[1])


def test_class_prior():
    assert class_prior(np.array([1, 3, 0])).tolist() == [0.25, 0.75, 0.0]
    with pytest.raises(ValueError, match="histogram"):
        class_prior(np.zeros(3))


def test_aligned_logits_give_remixmatch_alignment_by_hand():
    # ReMixMatch: q = normalise(p * prior / mean), p = softmax(logits)
    rows = [[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [0.3, 0.2, 0.1]]
    prior, mean = [0.5, 0.3, 0.2], [0.7, 0.2, 0.1]
    aligned = aligned_logits(torch.tensor(rows), torch.tensor(prior), torch.tensor(mean))
    for row, got in zip(rows, torch.softmax(aligned, 1).tolist()):
        scaled = [p * a / m for p, a, m in zip(softmax_row(row), prior, mean)]
        assert got == pytest.approx([v / sum(scaled) for v in scaled], rel=1e-5)
    # row 2 predicts class 0 (0.3 > 0.2 > 0.1) but class 0 is over-predicted (0.7 > 0.5): aligned, class 2
    assert aligned.argmax(1).tolist() == [0, 1, 2]
    # a class without labelled rows (prior 0) is never a pseudo label
    blocked = aligned_logits(torch.tensor(rows), torch.tensor([0.5, 0.5, 0.0]), torch.tensor(mean))
    assert torch.softmax(blocked, 1)[:, 2].tolist() == [0.0, 0.0, 0.0]
    assert threshold_pseudo_labels(blocked, torch.full((3,), IGNORE), 0.0).tolist() == [0, 1, 1]


def test_update_class_mean_equals_moving_average_loop():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    running = torch.tensor([0.6, 0.3, 0.1])
    batch_mean = [sum(softmax_row(r)[k] for r in logits.tolist()) / 5 for k in range(3)]
    expected = [0.9 * m + 0.1 * b for m, b in zip(running.tolist(), batch_mean)]
    assert update_class_mean(running, logits, 0.9).tolist() == pytest.approx(expected, rel=1e-6)
    assert update_class_mean(running, logits, 0.0).tolist() == pytest.approx(batch_mean, rel=1e-6)
    assert update_class_mean(running, logits[:0], 0.9) is running  # no rows: unchanged


def test_masked_ce_matches_loops_and_is_zero_without_labels():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0], [0.5, 0.5, 3.0]])
    target = torch.tensor([0, IGNORE, 2])
    expected = (-math.log(softmax_row([2.0, 0.0, -1.0])[0]) - math.log(softmax_row([0.5, 0.5, 3.0])[2])) / 2
    assert float(masked_ce(logits, target)) == pytest.approx(expected, rel=1e-6)
    leaf = logits.clone().requires_grad_(True)
    zero = masked_ce(leaf, torch.full((3,), IGNORE))
    zero.backward()
    assert zero.item() == 0.0 and float(leaf.grad.abs().sum()) == 0.0


def test_cps_terms_by_hand():
    l1 = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 3.0]])
    l2 = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.5]])
    labels = torch.tensor([0, IGNORE, IGNORE])
    terms = cps_terms(l1, l2, labels)
    nll = lambda row, k: -math.log(softmax_row(row)[k])  # noqa: E731
    assert float(terms["ce1"]) == pytest.approx(nll([2.0, 0.0], 0), rel=1e-6)
    assert float(terms["ce2"]) == pytest.approx(nll([0.0, 1.0], 0), rel=1e-6)
    # unlabelled rows 1, 2: argmax l2 = [0, 1], argmax l1 = [1, 1]
    cross1 = (nll([0.0, 1.0], 0) + nll([1.0, 3.0], 1)) / 2
    cross2 = (nll([2.0, 0.0], 1) + nll([0.0, 0.5], 1)) / 2
    assert float(terms["cps"]) == pytest.approx(cross1 + cross2, rel=1e-6)


def test_softmax_mse_by_hand():
    s = torch.tensor([[0.0, 0.0], [math.log(3), 0.0]])
    t = torch.tensor([[math.log(3), 0.0], [math.log(3), 0.0]])
    # probabilities: s = [.5 .5], [.75 .25]; t = [.75 .25] twice -> squared diffs .0625 .0625 0 0
    assert float(softmax_mse(s, t)) == pytest.approx(0.125 / 4, rel=1e-6)


def test_erda_is_entropy_plus_kl_and_cross_entropy_at_lambda_one():
    g = torch.Generator().manual_seed(1)
    pseudo, logits = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    mask = torch.tensor([True, False, True, True, False])
    total = 0.0
    for r in torch.nonzero(mask).flatten().tolist():
        p, q = softmax_row(pseudo[r].tolist()), softmax_row(logits[r].tolist())
        entropy = -sum(pk * math.log(pk) for pk in p)
        kl = sum(pk * math.log(pk / qk) for pk, qk in zip(p, q))
        total += 0.5 * entropy + kl
    assert float(erda_loss(pseudo, logits, 0.5, mask)) == pytest.approx(total / 3, rel=1e-5)
    soft_ce = -(torch.softmax(pseudo, 1) * torch.log_softmax(logits, 1)).sum(1)[mask].mean()
    assert float(erda_loss(pseudo, logits, 1.0, mask)) == pytest.approx(float(soft_ce), rel=1e-5)
    assert float(erda_loss(pseudo, logits, 1.0, torch.zeros(5, dtype=torch.bool))) == 0.0


def test_sigmoid_rampup():
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == 1.0 and sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
