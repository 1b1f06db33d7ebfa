"""`supervised`: cross-entropy on the labelled points only (the weak-label baseline)."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pcseg.data.contract import IGNORE
from pcseg.methods.base import Method, MethodContext, inverse_frequency_weights


class Supervised(Method):
    """loss = CE(logits, weak_label) over points whose weak label is not IGNORE.

    class_weights: float32 [K] or None (computed by the builder from labelled points only).
    """

    def __init__(self, model: nn.Module, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        self.model = model
        # A buffer, so the weights move with .to(device) and are saved with the checkpoint.
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def forward(self, batch: dict) -> dict:
        logits = self.model(batch)["logits"]
        ce = supervised_ce(logits, batch["weak_label"], self.class_weights)
        return {"loss": ce, "ce": ce.detach(), "logits": logits}


def supervised_ce(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean CE over target != IGNORE; exactly 0 (still attached to the graph) when none is labelled.

    A batch of crops may hold no labelled point at 1% labels; a NaN there would poison the run.
    """
    target = target.to(logits.device)
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE)


def build_supervised(ctx: MethodContext) -> Supervised:
    weights = inverse_frequency_weights(ctx.class_counts) if ctx.cfg.method.class_weights else None
    return Supervised(ctx.make_model(), weights)
