import math

import numpy as np
import pytest
import torch
from torch import nn

from pcseg.config import load_config
from pcseg.methods import METHODS, MethodContext, build_method
from pcseg.methods.base import inverse_frequency_weights, network_ce
from pcseg.methods.supervised import Supervised


class FixedLogits(nn.Module):
    """Returns the batch's `feat` as logits, so the loss can be checked by hand."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, batch):
        return {"logits": batch["feat"] * self.scale}


def reference_ce(logits, target, weight=None):
    """Weighted mean of -log softmax over labelled points, written as Python loops."""
    num, den = 0.0, 0.0
    for row, t in zip(logits.tolist(), target.tolist()):
        if t == -1:
            continue
        logsum = math.log(sum(math.exp(v) for v in row))
        w = 1.0 if weight is None else float(weight[t])
        num += w * (logsum - row[t])
        den += w
    return num / den


def test_ce_only_on_labelled_points():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [5.0, -5.0, 0.0], [0.0, 0.0, 3.0]])
    target = torch.tensor([0, -1, 1, 2])
    out = Supervised(FixedLogits())({"feat": logits, "weak_label": target})
    assert out["loss"].item() == pytest.approx(reference_ce(logits, target), rel=1e-6)
    assert torch.equal(out["logits"], logits)
    assert float(out["ce"]) == pytest.approx(out["loss"].item())
    # the unlabelled row has no say: changing it leaves the loss unchanged
    logits2 = logits.clone()
    logits2[1] = torch.tensor([9.0, -9.0, 4.0])
    assert Supervised(FixedLogits())({"feat": logits2, "weak_label": target})["loss"].item() == \
        pytest.approx(out["loss"].item())


def test_weighted_ce_matches_reference():
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(20, 4)).astype(np.float32))
    target = torch.from_numpy(rng.integers(-1, 4, 20))
    weight = torch.tensor([0.5, 2.0, 1.0, 0.25])
    assert float(network_ce({"logits": logits}, target, weight)) == pytest.approx(reference_ce(logits, target, weight), rel=1e-5)


def test_no_labelled_point_gives_zero_loss_and_zero_gradient():
    method = Supervised(FixedLogits())
    out = method({"feat": torch.ones(5, 3), "weak_label": torch.full((5,), -1)})
    assert out["loss"].item() == 0.0
    out["loss"].backward()
    assert float(method.model.scale.grad) == 0.0


def test_inverse_frequency_weights_hand_computed():
    # frequencies 0.8, 0.2, 0 -> raw 1/sqrt(f) = 1.118.., 2.236..; normalised to mean 1 over seen classes
    w = inverse_frequency_weights(np.array([80, 20, 0]))
    raw = np.array([1 / math.sqrt(0.8), 1 / math.sqrt(0.2)])
    expected = raw / raw.mean()
    assert w.dtype == torch.float32
    assert w.tolist() == pytest.approx([expected[0], expected[1], 0.0], rel=1e-6)
    with pytest.raises(ValueError, match="all zero"):
        inverse_frequency_weights(np.zeros(3))


@pytest.mark.parametrize("weights", [False, True])
def test_builder_takes_weights_from_the_labelled_histogram(weights):
    cfg = load_config(None, [f"method.class_weights={str(weights).lower()}"])
    counts = np.array([30, 10, 0])
    method = build_method(MethodContext(cfg=cfg, make_model=FixedLogits, num_classes=3, class_counts=counts))
    assert isinstance(method, Supervised)
    if weights:
        assert torch.equal(method.class_weights, inverse_frequency_weights(counts))
        assert "class_weights" in method.state_dict()
    else:
        assert method.class_weights is None and "class_weights" not in method.state_dict()


def test_unknown_method_lists_valid_ones():
    cfg = load_config(None, ["method.name=supervisd"])
    with pytest.raises(ValueError, match="unknown method 'supervisd'; valid: .*supervised"):
        build_method(MethodContext(cfg=cfg, make_model=FixedLogits, num_classes=3, class_counts=np.ones(3)))
    assert "supervised" in METHODS
