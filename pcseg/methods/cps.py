"""`cps`: cross pseudo supervision (Chen et al., CVPR 2021) between two differently initialised networks.

    loss = CE(l1, y) + CE(l2, y) + lambda * (CE(l1, argmax l2) + CE(l2, argmax l1))

CE(., y) over labelled rows, the cross terms over unlabelled rows (the argmax is a label, no
gradient). Both networks see the same batch; the first is the one evaluated and exported.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext, inverse_frequency_weights
from pcseg.weak.losses import cps_terms


class CPS(Method):
    """model: network 1 (evaluation); model2: network 2, a separate initialisation."""

    def __init__(self, model: nn.Module, model2: nn.Module, weight: float = 1.0,
                 class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        self.model, self.model2, self.weight = model, model2, weight
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def forward(self, batch: dict) -> dict:
        logits1 = self.model(batch)["logits"]
        logits2 = self.model2(batch)["logits"]
        terms = cps_terms(logits1, logits2, batch["weak_label"], self.class_weights)
        loss = terms["ce1"] + terms["ce2"] + self.weight * terms["cps"]
        return {"loss": loss, **{k: v.detach() for k, v in terms.items()}, "logits": logits1}


def build_cps(ctx: MethodContext) -> CPS:
    weights = inverse_frequency_weights(ctx.class_counts) if ctx.cfg.method.class_weights else None
    # two make_model calls draw two initialisations from the (seeded) torch RNG
    return CPS(ctx.make_model(), ctx.make_model(), ctx.cfg.method.cps.weight, weights)
