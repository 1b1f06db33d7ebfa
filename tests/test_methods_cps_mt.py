"""CPS, mean teacher and online self-training with stand-in networks whose logits are known."""
import copy
import math

import pytest
import torch
from torch import nn

from pcseg.config import load_config
from pcseg.methods import MethodContext, build_method
from pcseg.methods.cps import CPS
from pcseg.methods.mean_teacher import MeanTeacher, augment_points, ema_update
from pcseg.methods.self_training import SelfTraining
from pcseg.weak.pseudo import IGNORE


class LinearNet(nn.Module):
    """logits = feat @ weight: a network whose output is easy to compute by hand."""

    def __init__(self, weight):
        super().__init__()
        self.weight = nn.Parameter(torch.as_tensor(weight, dtype=torch.float32))
        self.register_buffer("seen", torch.zeros(()))

    def forward(self, batch):
        return {"logits": batch["feat"] @ self.weight}


def softmax(row):
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def nll(row, k):
    return -math.log(softmax(row)[k])


# the CPS stand-in: two linear networks on three rows, row 0 labelled 0, rows 1 and 2 unlabelled
CPS_FEAT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
CPS_W1, CPS_W2 = [[2.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [2.0, 0.0]]
CPS_LABELS = torch.tensor([0, IGNORE, IGNORE])
# their logits = CPS_FEAT @ w, by hand; argmax on rows 1, 2: L1 -> [1, 0], L2 -> [0, 0]
L1 = [[2.0, 0.0], [0.0, 1.0], [2.0, 1.0]]
L2 = [[0.0, 1.0], [2.0, 0.0], [2.0, 1.0]]
CE1, CE2 = nll(L1[0], 0), nll(L2[0], 0)  # the supervised terms (row 0)


def cps_on_stand_in(**options) -> dict:
    return CPS(LinearNet(CPS_W1), LinearNet(CPS_W2), **options)({"feat": CPS_FEAT, "weak_label": CPS_LABELS})


def build_cps(overrides: list[str], class_counts: list[int]) -> CPS:
    return build_method(MethodContext(cfg=load_config(None, ["method.name=cps", *overrides]),
                                      make_model=lambda: LinearNet([[1.0] * len(class_counts)]),
                                      num_classes=len(class_counts), class_counts=class_counts))


def test_cps_loss_equals_formula():
    out = cps_on_stand_in(weight=0.5)
    # network 1 learns argmax L2 on rows 1, 2 = [0, 0]; network 2 learns argmax L1 = [1, 0]
    cross = (nll(L1[1], 0) + nll(L1[2], 0)) / 2 + (nll(L2[1], 1) + nll(L2[2], 0)) / 2
    assert out["loss"].item() == pytest.approx(CE1 + CE2 + 0.5 * cross, rel=1e-6)
    assert float(out["cps"]) == pytest.approx(cross, rel=1e-6)

    # ramped lambda: 0.5 * exp(-5 (1 - s / 100)^2) at step s, the full 0.5 from step 100 on
    ramped = CPS(LinearNet(CPS_W1), LinearNet(CPS_W2), weight=0.5, rampup_steps=100)
    for step, factor in ((0, math.exp(-5.0)), (40, math.exp(-5.0 * 0.6 ** 2)), (100, 1.0), (250, 1.0)):
        ramped.after_step(step)
        out = ramped({"feat": CPS_FEAT, "weak_label": CPS_LABELS})
        assert out["loss"].item() == pytest.approx(CE1 + CE2 + 0.5 * factor * cross, rel=1e-6)


def test_cps_cross_class_weights_equal_weighted_mean_by_hand():
    out = cps_on_stand_in(weight=0.5, cross_class_weights=torch.tensor([1.0, 3.0]))
    # network 1 learns [0, 0] (weights 1, 1); network 2 learns [1, 0] (weights 3, 1); CE1, CE2 unweighted
    cross = (nll(L1[1], 0) + nll(L1[2], 0)) / 2 + (3 * nll(L2[1], 1) + nll(L2[2], 0)) / 4
    assert float(out["cps"]) == pytest.approx(cross, rel=1e-6)
    assert out["loss"].item() == pytest.approx(CE1 + CE2 + 0.5 * cross, rel=1e-6)


def test_cps_threshold_keeps_confident_pseudo_labels_only():
    out = cps_on_stand_in(threshold=0.8)
    # max softmax: L1 rows 1, 2 -> 0.731, 0.731; L2 rows 1, 2 -> 0.881, 0.731. Only L2's row 1
    # (argmax 0) reaches 0.8: network 1 learns it alone, network 2 learns nothing
    assert 1 / (1 + math.exp(-2.0)) > 0.8 > 1 / (1 + math.exp(-1.0))
    assert float(out["cps"]) == pytest.approx(nll(L1[1], 0), rel=1e-6)
    assert out["loss"].item() == pytest.approx(CE1 + CE2 + nll(L1[1], 0), rel=1e-6)


def aligned_argmax(rows, prior, mean):
    """argmax_k p_k prior_k / mean_k of each row's softmax p (ReMixMatch's alignment, by hand)."""
    out = []
    for row in rows:
        scores = [p * a / m for p, a, m in zip(softmax(row), prior, mean)]
        out.append(scores.index(max(scores)))
    return out


def test_cps_distribution_alignment_reads_pseudo_labels_by_hand():
    prior = [0.2, 0.8]
    cps = CPS(LinearNet(CPS_W1), LinearNet(CPS_W2), weight=0.5, prior=torch.tensor(prior), alignment=True,
              alignment_momentum=0.5)
    out = cps({"feat": CPS_FEAT, "weak_label": CPS_LABELS})
    # each network's moving average: 0.5 prior + 0.5 its mean softmax over the unlabelled rows 1, 2
    mean1 = [0.5 * a + 0.5 * (softmax(L1[1])[k] + softmax(L1[2])[k]) / 2 for k, a in enumerate(prior)]
    mean2 = [0.5 * a + 0.5 * (softmax(L2[1])[k] + softmax(L2[2])[k]) / 2 for k, a in enumerate(prior)]
    assert cps.mean1.tolist() == pytest.approx(mean1, rel=1e-6)
    assert cps.mean2.tolist() == pytest.approx(mean2, rel=1e-6)
    for_1 = aligned_argmax([L2[1], L2[2]], prior, mean2)  # network 1 learns network 2's aligned argmax
    for_2 = aligned_argmax([L1[1], L1[2]], prior, mean1)
    # alignment changes a pseudo label here: unaligned, network 1 would learn [0, 0] (network 2: [1, 0])
    assert (for_1, for_2) == ([0, 1], [1, 0])
    cross = (nll(L1[1], for_1[0]) + nll(L1[2], for_1[1])) / 2 + (nll(L2[1], for_2[0]) + nll(L2[2], for_2[1])) / 2
    assert float(out["cps"]) == pytest.approx(cross, rel=1e-6)
    assert out["loss"].item() == pytest.approx(CE1 + CE2 + 0.5 * cross, rel=1e-6)
    # outside training the moving averages stay
    cps.eval()
    cps({"feat": CPS_FEAT, "weak_label": CPS_LABELS})
    assert cps.mean1.tolist() == pytest.approx(mean1, rel=1e-6)


def test_build_cps_distribution_alignment_prior_from_labelled_counts():
    cps = build_cps(["method.cps.distribution_alignment=true", "method.cps.alignment_momentum=0.9"], [10, 30, 0, 60])
    assert cps.prior.tolist() == pytest.approx([0.1, 0.3, 0.0, 0.6])
    assert cps.mean1.tolist() == cps.mean2.tolist() == cps.prior.tolist()  # the averages start at the prior
    assert cps.alignment_momentum == 0.9
    assert build_cps([], [1, 1]).prior is None  # off by default
    with pytest.raises(ValueError, match=r"'method.cps.alignment_momentum'.*1.0"):
        build_cps(["method.cps.distribution_alignment=true", "method.cps.alignment_momentum=1.0"], [1, 1])


def dars_by_hand(rows, prior):
    """Per row its argmax, or None where DARS drops it: class k keeps its round(len(rows) * prior_k)
    most confident rows (all of them when it has fewer)."""
    probs = [softmax(row) for row in rows]
    preds = [p.index(max(p)) for p in probs]
    out = [None] * len(rows)
    for k, share in enumerate(prior):
        mine = sorted((i for i, c in enumerate(preds) if c == k), key=lambda i: -probs[i][k])
        for i in mine[:round(len(rows) * share)]:
            out[i] = k
    return out


def test_cps_dars_keeps_each_class_within_its_prior_share_by_hand():
    prior = [0.5, 0.5]
    out = CPS(LinearNet(CPS_W1), LinearNet(CPS_W2), weight=0.5, prior=torch.tensor(prior), dars=True)(
        {"feat": CPS_FEAT, "weak_label": CPS_LABELS})
    for_1 = dars_by_hand([L2[1], L2[2]], prior)  # network 1 learns network 2's kept pseudo labels
    for_2 = dars_by_hand([L1[1], L1[2]], prior)
    # network 2 labels both rows 0, one more than the prior allows: its less confident row 2 drops
    assert (for_1, for_2) == ([0, None], [1, 0])
    cross = nll(L1[1], 0) + (nll(L2[1], 1) + nll(L2[2], 0)) / 2
    assert float(out["cps"]) == pytest.approx(cross, rel=1e-6)
    assert out["loss"].item() == pytest.approx(CE1 + CE2 + 0.5 * cross, rel=1e-6)


def test_build_cps_dars_prior_and_its_conflict_with_a_threshold():
    cps = build_cps(["method.cps.dars=true"], [10, 30, 0, 60])
    assert cps.dars and not cps.alignment and cps.mean1 is None
    assert cps.prior.tolist() == pytest.approx([0.1, 0.3, 0.0, 0.6])
    with pytest.raises(ValueError, match=r"'method.cps.dars'.*method.cps.threshold=0.9"):
        build_cps(["method.cps.dars=true", "method.cps.threshold=0.9"], [1, 1])


def test_build_cps_rejects_threshold_outside_unit_interval():
    with pytest.raises(ValueError, match=r"'method.cps.threshold'.*1.5"):
        build_cps(["method.cps.threshold=1.5"], [1, 1])


def test_build_cps_cross_class_weights_from_labelled_counts():
    cps = build_cps(["method.cps.cross_class_weights=true"], [10, 40, 0, 50])
    assert cps.class_weights is None  # method.class_weights stays off
    # 1 / sqrt(frequency) over the labelled classes, normalised to mean 1; 0 for the unlabelled class
    raw = [1 / math.sqrt(0.1), 1 / math.sqrt(0.4), 0.0, 1 / math.sqrt(0.5)]
    mean = (raw[0] + raw[1] + raw[3]) / 3
    assert cps.cross_class_weights.tolist() == pytest.approx([r / mean for r in raw], rel=1e-6)


def test_ema_update_equals_formula():
    student, teacher = LinearNet([[1.0, 2.0]]), LinearNet([[3.0, -1.0]])
    student.seen.fill_(7.0)
    ema_update(teacher, student, 0.9)
    assert teacher.weight.flatten().tolist() == pytest.approx([0.9 * 3 + 0.1 * 1, 0.9 * -1 + 0.1 * 2])
    assert float(teacher.seen) == 7.0  # buffers copied
    assert student.weight.tolist() == [[1.0, 2.0]]


def test_mean_teacher_loss_ramp_and_teacher_frozen():
    feat = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    calls = []

    def shift(batch, generator):
        calls.append(int(torch.randint(0, 10**6, (), generator=generator)))
        return {**batch, "feat": batch["feat"] + 1.0}

    mt = MeanTeacher(LinearNet([[1.0, 0.0], [0.0, 1.0]]), shift, ema=0.5, weight=2.0, rampup_steps=4, seed=3)
    mt.teacher.weight.data = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    mt.train()
    assert not mt.teacher.training and not mt.teacher.weight.requires_grad
    out = mt({"feat": feat, "weak_label": torch.tensor([1, IGNORE])})
    # student on feat + 1: logits [[2, 1], [1, 2]]; teacher: zeros -> probabilities 0.5
    p = 1 / (1 + math.exp(-1))
    mse = ((p - 0.5) ** 2 * 4) / 4
    ce = nll([2.0, 1.0], 1)
    assert out["loss"].item() == pytest.approx(ce + 2.0 * math.exp(-5) * mse, rel=1e-5)
    mt.after_step(2)
    assert mt.consistency_weight() == pytest.approx(2.0 * math.exp(-1.25))
    assert mt.teacher.weight.flatten().tolist() == pytest.approx([0.5, 0.0, 0.0, 0.5])
    mt({"feat": feat, "weak_label": torch.tensor([1, IGNORE])})
    replay = copy.deepcopy(mt)
    replay({"feat": feat, "weak_label": torch.tensor([1, IGNORE])})
    assert calls[1] == calls[2] != calls[0]  # augmentation is a function of (seed, step)


def test_augment_points_keeps_rows_and_distances():
    g = torch.Generator().manual_seed(0)
    coord = torch.randn(10, 3, generator=g)
    batch = {"coord": coord, "batch": torch.tensor([0] * 4 + [1] * 6), "offset": torch.tensor([4, 10])}
    out = augment_points(batch, torch.Generator().manual_seed(1), rotate=True, flip=True, jitter=0.0)
    assert torch.equal(batch["coord"], coord)
    for rows in (slice(0, 4), slice(4, 10)):
        assert torch.allclose(torch.cdist(out["coord"][rows], out["coord"][rows]),
                              torch.cdist(coord[rows], coord[rows]), atol=1e-5)
    assert torch.allclose(out["coord"][:, 2], coord[:, 2])  # rotation about z, flips of x / y only
    assert not torch.allclose(out["coord"], coord)


def test_online_self_training_uses_previous_epoch_histogram():
    feat = torch.eye(3).repeat(20, 1)
    labels = torch.full((60,), IGNORE)
    labels[:3] = torch.tensor([0, 1, 2])
    batch = {"feat": feat, "weak_label": labels}
    net = LinearNet(torch.eye(3) * 4)
    st = SelfTraining(net, torch.tensor([1 / 3, 1 / 3, 1 / 3]), use_dars=True, ratio=0.5, bins=10,
                      ema=0.0, warmup_epochs=1)
    st.train()
    st.on_epoch_start(0)
    first = st(batch)
    assert first["pseudo"].item() == 0.0  # warm-up: labelled CE only
    assert int(st.hist_current.sum()) == 57
    st.on_epoch_start(0)  # a resumed epoch keeps its histogram
    assert int(st.hist_current.sum()) == 57
    st.on_epoch_start(1)
    assert int(st.hist_previous.sum()) == 57 and int(st.hist_current.sum()) == 0
    thresholds = st.dars()
    assert thresholds.target.tolist() == [10, 10, 10]  # round(0.5 * 57 / 3) = 10 (28.5 / 3 = 9.5 -> 10)
    second = st(batch)
    assert second["pseudo"].item() > 0
    assert second["loss"].item() == pytest.approx(second["ce"].item() + second["pseudo"].item(), rel=1e-6)
    # offline: a batch's own pseudo labels are used as they are
    offline = st({**batch, "pseudo_label": torch.full((60,), 1)})
    assert offline["pseudo"].item() == pytest.approx(nll([0.0, 4.0, 0.0], 1) * 1 / 3 + nll([4.0, 0.0, 0.0], 1) * 2 / 3,
                                                     rel=1e-5)


def test_self_training_and_mean_teacher_weight_their_ce_by_class():
    # two rows labelled 0 and 1 (weights 1 and 3), logits [2, 0] and [0, 1]: the weighted mean of
    # F.cross_entropy is sum_i w_yi * nll_i / sum_i w_yi
    feat = torch.eye(2)
    labels = torch.tensor([0, 1])
    weights = torch.tensor([1.0, 3.0])
    by_hand = (1.0 * nll([2.0, 0.0], 0) + 3.0 * nll([0.0, 1.0], 1)) / 4.0
    net = LinearNet([[2.0, 0.0], [0.0, 1.0]])
    st = SelfTraining(net, torch.tensor([0.5, 0.5]), ema=0.0, online=False, class_weights=weights)
    # offline pseudo labels: the same rows as pseudo labels, weighted alike
    out = st({"feat": feat, "weak_label": labels, "pseudo_label": labels})
    assert out["ce"].item() == pytest.approx(by_hand, rel=1e-6)
    assert out["pseudo"].item() == pytest.approx(by_hand, rel=1e-6)
    mt = MeanTeacher(LinearNet([[2.0, 0.0], [0.0, 1.0]]), lambda batch, generator: batch, class_weights=weights)
    assert mt({"feat": feat, "weak_label": labels})["ce"].item() == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("name", ["self_training", "mean_teacher"])
def test_builders_take_class_weights_from_labelled_counts(name):
    counts = [30, 10, 0]  # frequencies 0.75, 0.25: 1/sqrt -> 1.1547, 2; mean 1 over seen classes
    method = build_method(MethodContext(cfg=load_config(None, [f"method.name={name}", "method.class_weights=true"]),
                                        make_model=lambda: LinearNet([[1.0, 1.0, 1.0]]), num_classes=3,
                                        class_counts=counts))
    a, b = 1 / math.sqrt(0.75), 1 / math.sqrt(0.25)
    assert method.class_weights.tolist() == pytest.approx([2 * a / (a + b), 2 * b / (a + b), 0.0], rel=1e-6)
    plain = build_method(MethodContext(cfg=load_config(None, [f"method.name={name}"]),
                                       make_model=lambda: LinearNet([[1.0, 1.0, 1.0]]), num_classes=3,
                                       class_counts=counts))
    assert plain.class_weights is None
