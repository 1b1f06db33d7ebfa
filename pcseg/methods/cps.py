"""`cps`: cross pseudo supervision (Chen et al., CVPR 2021) between two differently initialised networks.

    loss = CE(l1, y) + CE(l2, y) + lambda * (CE(l1, argmax l2) + CE(l2, argmax l1))

CE(., y) over labelled rows, the cross terms over unlabelled rows (the argmax is a label, no
gradient). Both networks see the same batch; the first is the one evaluated and exported.

CutMix variant (`method.cps.cutmix`, the paper's best on images): the cross terms move to a
mixed batch from the modality's `mix` (images: `pcseg.methods.image_views.cutmix_images`, a box
of one unlabelled image pasted into another). Each mixed row r comes from row src[r] of the
batch, so its pseudo labels are the networks' unmixed predictions carried along,
argmax l_k[src] - the paper's mixing of the two images' pseudo labels with the same box:

    loss = CE(l1, y) + CE(l2, y) + lambda * (CE(m1, argmax l2[src]) + CE(m2, argmax l1[src]))

with m_k the networks' logits on the mixed batch. Unlike the paper's code, the unmixed
predictions come from the supervised forward pass (detached) rather than a second no-grad one.

`method.cps.rampup_steps` > 0 ramps lambda up as the mean teacher ramps its weight,
lambda(step) = lambda * exp(-5 (1 - min(step / rampup_steps, 1))^2): networks trained from
scratch first learn the labelled classes before they label each other (the paper starts from
ImageNet weights and uses a constant lambda, the default rampup_steps = 0).

`method.cps.cross_class_weights` (not the paper's; off by default) weights the cross terms' CE
by the same inverse-frequency class weights of the labelled rows that `method.class_weights`
gives the supervised terms: from scratch, the two networks otherwise teach each other the
frequent classes (docs/results.md, 2D). `method.cps.threshold` (not the paper's; 0 = off)
keeps a pseudo label only where the labelling network's max softmax reaches it.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext, Mix, inverse_frequency_weights, network_ce
from pcseg.methods.mean_teacher import step_generator
from pcseg.weak.losses import cps_cross, sigmoid_rampup


class CPS(Method):
    """model: network 1 (evaluation); model2: network 2, a separate initialisation; mix: the
    CutMix of a batch (None = plain CPS); class_weights / cross_class_weights float [K] or None:
    the class weights of the supervised / the cross CE terms; threshold: the pseudo labels'
    confidence threshold (0 = all)."""

    def __init__(self, model: nn.Module, model2: nn.Module, weight: float = 1.0,
                 class_weights: Optional[torch.Tensor] = None, mix: Optional[Mix] = None, seed: int = 0,
                 rampup_steps: int = 0, cross_class_weights: Optional[torch.Tensor] = None,
                 threshold: float = 0.0):
        super().__init__()
        self.model, self.model2, self.weight, self.rampup_steps = model, model2, weight, rampup_steps
        self.mix, self.seed, self.threshold = mix, seed, threshold
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)
        self.register_buffer("cross_class_weights", cross_class_weights, persistent=cross_class_weights is not None)
        # the step count seeds the boxes and the ramp-up, so a resumed run continues as the original
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def cross_weight(self) -> float:
        """lambda at the current step (after the sigmoid ramp-up when rampup_steps > 0)."""
        return self.weight * sigmoid_rampup(int(self.step), self.rampup_steps)

    def cross_term(self, batch: dict, logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
        """The lambda-weighted term: on the batch's unlabelled rows, or on its mixed batch."""
        if self.mix is None:
            return cps_cross(logits1, logits2, batch["weak_label"], weight=self.cross_class_weights,
                             threshold=self.threshold)
        mixed = self.mix(batch, step_generator(self.seed, int(self.step)))
        if mixed is None:  # fewer than two unlabelled images: nothing to mix in this batch
            return (logits1.sum() + logits2.sum()) * 0.0
        mixed_batch, src = mixed
        src = src.to(logits1.device)
        return cps_cross(self.model(mixed_batch)["logits"], self.model2(mixed_batch)["logits"],
                         mixed_batch["weak_label"], logits1[src], logits2[src], self.cross_class_weights,
                         self.threshold)

    def forward(self, batch: dict) -> dict:
        out1, out2 = self.model(batch), self.model2(batch)
        ce1 = network_ce(out1, batch["weak_label"], self.class_weights)
        ce2 = network_ce(out2, batch["weak_label"], self.class_weights)
        cross = self.cross_term(batch, out1["logits"], out2["logits"])
        loss = ce1 + ce2 + self.cross_weight() * cross
        return {"loss": loss, "ce1": ce1.detach(), "ce2": ce2.detach(), "cps": cross.detach(),
                "logits": out1["logits"]}

    def after_step(self, step: int) -> None:
        self.step.fill_(step)


def build_cps(ctx: MethodContext) -> CPS:
    c = ctx.cfg.method.cps
    if c.cutmix and ctx.mix is None:
        raise ValueError("config key 'method.cps.cutmix': CutMix needs images (data.modality=images)")
    if not 0.0 <= c.threshold <= 1.0:
        raise ValueError(f"config key 'method.cps.threshold': a confidence in [0, 1], got {c.threshold}")
    weights = inverse_frequency_weights(ctx.class_counts) if ctx.cfg.method.class_weights else None
    cross_weights = inverse_frequency_weights(ctx.class_counts) if c.cross_class_weights else None
    # two make_model calls draw two initialisations from the (seeded) torch RNG
    return CPS(ctx.make_model(), ctx.make_model(), c.weight, weights, ctx.mix if c.cutmix else None,
               ctx.cfg.train.seed, c.rampup_steps, cross_weights, c.threshold)
