"""`propagation`: train on the weak labels plus labels propagated to nearby, similar points.

Before training, every unlabelled point takes the label of its nearest labelled point when
that point is closer than `method.propagation.radius` in (xyz, `color_scale` x rgb) space
(`pcseg/weak/propagate.py`, applied to the training scenes by `pcseg/data/propagated.py`):

    loss = CE(logits, weak_label) + weight * CE(logits, pseudo_label)

both with the optional class weights (`method.class_weights`, from labelled points only).
The pseudo labels are data (`pseudo_label`), made once; the weak labels are never changed.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext, inverse_frequency_weights
from pcseg.weak.losses import masked_ce


class LabelPropagation(Method):
    """model: the trained network; weight: of the propagated-label term; class_weights: float32 [K] or None."""

    # the engine adds `pseudo_label` from `method.propagation` to the training scenes
    needs_propagated_labels = True

    def __init__(self, model: nn.Module, weight: float = 1.0, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        self.model, self.weight = model, weight
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def forward(self, batch: dict) -> dict:
        if "pseudo_label" not in batch:
            raise KeyError("method 'propagation' needs batches with 'pseudo_label' (built by pcseg.engine.build)")
        logits = self.model(batch)["logits"]
        ce = masked_ce(logits, batch["weak_label"], self.class_weights)
        propagated = masked_ce(logits, batch["pseudo_label"], self.class_weights)
        loss = ce + self.weight * propagated
        return {"loss": loss, "ce": ce.detach(), "propagated": propagated.detach(), "logits": logits}


def build_propagation(ctx: MethodContext) -> LabelPropagation:
    weights = inverse_frequency_weights(ctx.class_counts) if ctx.cfg.method.class_weights else None
    return LabelPropagation(ctx.make_model(), ctx.cfg.method.propagation.weight, weights)
