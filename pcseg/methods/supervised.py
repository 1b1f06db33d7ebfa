"""`supervised`: cross-entropy on the labelled points only (the weak-label baseline)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext, network_ce


class Supervised(Method):
    """loss = CE(logits, weak_label) over points whose weak label is not IGNORE (+ the aux term
    of networks with `aux_logits`, see `network_ce`); exactly 0 when a batch has no labelled
    point - a batch of crops may hold none at 1% labels, and a NaN there would poison the run.

    class_weights: float32 [K] or None (computed by the builder from labelled points only).
    """

    def __init__(self, model: nn.Module, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        self.model = model
        # A buffer, so the weights move with .to(device) and are saved with the checkpoint.
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def forward(self, batch: dict) -> dict:
        out = self.model(batch)
        ce = network_ce(out, batch["weak_label"], self.class_weights)
        return {"loss": ce, "ce": ce.detach(), "logits": out["logits"]}


def build_supervised(ctx: MethodContext) -> Supervised:
    weights = ctx.class_weights()
    return Supervised(ctx.make_model(), weights)
