"""`propagation`: train on the weak labels plus labels propagated to nearby, similar points.

Before training, every unlabelled point takes the label of its nearest labelled point when
that point is closer than `method.propagation.radius` in (xyz, `color_scale` x rgb) space
(`pcseg/weak/propagate.py`, applied to the training scenes by `pcseg/data/propagated.py`):

    loss = CE(logits, weak_label) + weight * CE(logits, pseudo_label) + entropy_weight * H

both CE with the optional class weights (`method.class_weights`, from labelled points only);
H is the mean entropy of softmax(logits) over the points that have neither label (entropy
regularisation, the ER of ERDA, Tang et al. 2023; off at entropy_weight 0).
The pseudo labels are data (`pseudo_label`), made once; the weak labels are never changed.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext
from pcseg.weak.losses import masked_ce, mean_entropy
from pcseg.weak.pseudo import IGNORE


class LabelPropagation(Method):
    """model: the trained network; weight: of the propagated-label term; entropy_weight: of the
    entropy on unlabelled points; class_weights: float32 [K] or None."""

    # the engine adds `pseudo_label` from `method.propagation` to the training scenes
    needs_propagated_labels = True

    def __init__(self, model: nn.Module, weight: float = 1.0, class_weights: Optional[torch.Tensor] = None,
                 entropy_weight: float = 0.0):
        super().__init__()
        self.model, self.weight, self.entropy_weight = model, weight, entropy_weight
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def forward(self, batch: dict) -> dict:
        if "pseudo_label" not in batch:
            raise KeyError("method 'propagation' needs batches with 'pseudo_label' (built by pcseg.engine.build)")
        logits = self.model(batch)["logits"]
        ce = masked_ce(logits, batch["weak_label"], self.class_weights)
        propagated = masked_ce(logits, batch["pseudo_label"], self.class_weights)
        loss = ce + self.weight * propagated
        terms = {"ce": ce.detach(), "propagated": propagated.detach()}
        if self.entropy_weight:
            unlabelled = (batch["weak_label"] == IGNORE) & (batch["pseudo_label"] == IGNORE)
            entropy = mean_entropy(logits, unlabelled)
            loss = loss + self.entropy_weight * entropy
            terms["entropy"] = entropy.detach()
        return {"loss": loss, **terms, "logits": logits}


def build_propagation(ctx: MethodContext) -> LabelPropagation:
    weights = ctx.class_weights()
    prop = ctx.cfg.method.propagation
    return LabelPropagation(ctx.make_model(), prop.weight, weights, prop.entropy_weight)
