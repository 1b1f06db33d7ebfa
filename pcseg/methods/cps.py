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

`method.cps.distribution_alignment` (ReMixMatch's, Berthelot et al., ICLR 2020; not the CPS
paper's; off by default) reads each network's pseudo labels from its aligned predictions
normalise(p * prior / mean_p): prior the labelled pixels' class proportions, mean_p the
network's moving average prediction on unlabelled rows (momentum
`method.cps.alignment_momentum`, starting at the prior). A network that predicts a class more
often than the labelled data has it gives fewer pseudo labels of it (`weak.pseudo.aligned_logits`);
on the from-scratch 2D recipe this gives back part of the thin classes, not enough to beat
supervised by more than the seed std (docs/results.md, 2D).

`method.cps.dars` (not the CPS paper's; off by default) applies DARS's per-class thresholds
(He et al., ICCV 2021) to every step's pseudo labels: of a batch's M_u unlabelled rows, class k
keeps at most round(M_u * prior_k), its most confident rows (`weak.dars.dars_batch_pseudo_labels`).
Alignment matches a network's mean softmax to the prior, which can leave its argmax shares off
(the aligned 2D networks still give 83% of the pixels to background, true share 78%); DARS
caps the argmax shares themselves, dropping rather than relabelling the rows over the cap.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext, Mix, inverse_frequency_weights, network_ce
from pcseg.methods.mean_teacher import step_generator
from pcseg.weak.dars import dars_batch_pseudo_labels
from pcseg.weak.losses import cross_ce, sigmoid_rampup
from pcseg.weak.pseudo import IGNORE, aligned_logits, class_prior, threshold_pseudo_labels, update_class_mean


class CPS(Method):
    """model: network 1 (evaluation); model2: network 2, a separate initialisation; mix: the
    CutMix of a batch (None = plain CPS); class_weights / cross_class_weights float [K] or None:
    the class weights of the supervised / the cross CE terms; threshold: the pseudo labels'
    confidence threshold (0 = all); prior float [K] or None: the labelled class proportions
    that distribution alignment (`alignment`, moving averages' momentum alignment_momentum)
    and DARS (`dars`) align the pseudo labels to."""

    def __init__(self, model: nn.Module, model2: nn.Module, weight: float = 1.0,
                 class_weights: Optional[torch.Tensor] = None, mix: Optional[Mix] = None, seed: int = 0,
                 rampup_steps: int = 0, cross_class_weights: Optional[torch.Tensor] = None,
                 threshold: float = 0.0, prior: Optional[torch.Tensor] = None, alignment: bool = False,
                 alignment_momentum: float = 0.99, dars: bool = False):
        super().__init__()
        if (alignment or dars) and prior is None:
            raise ValueError("CPS: distribution alignment and DARS need the labelled class prior")
        self.model, self.model2, self.weight, self.rampup_steps = model, model2, weight, rampup_steps
        self.mix, self.seed, self.threshold, self.alignment_momentum = mix, seed, threshold, alignment_momentum
        self.alignment, self.dars = alignment, dars
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)
        self.register_buffer("cross_class_weights", cross_class_weights, persistent=cross_class_weights is not None)
        prior = None if prior is None else prior.float()
        self.register_buffer("prior", prior, persistent=prior is not None)
        # distribution alignment: each network's moving average prediction (float32 [K])
        self.register_buffer("mean1", prior.clone() if alignment else None, persistent=alignment)
        self.register_buffer("mean2", prior.clone() if alignment else None, persistent=alignment)
        # the step count seeds the boxes and the ramp-up, so a resumed run continues as the original
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))

    def cross_weight(self) -> float:
        """lambda at the current step (after the sigmoid ramp-up when rampup_steps > 0)."""
        return self.weight * sigmoid_rampup(int(self.step), self.rampup_steps)

    def pseudo_label_logits(self, labels: torch.Tensor, logits1: torch.Tensor,
                            logits2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits [M, K] the two networks' pseudo labels are read from: their own, or with
        distribution alignment their aligned ones, after (in training) the moving averages
        take this batch's unlabelled rows."""
        if not self.alignment:
            return logits1, logits2
        if self.training:
            unlabelled = labels.to(logits1.device) == IGNORE
            self.mean1.copy_(update_class_mean(self.mean1, logits1[unlabelled], self.alignment_momentum))
            self.mean2.copy_(update_class_mean(self.mean2, logits2[unlabelled], self.alignment_momentum))
        return aligned_logits(logits1, self.prior, self.mean1), aligned_logits(logits2, self.prior, self.mean2)

    def pseudo_labels(self, labels: torch.Tensor, logits1: torch.Tensor,
                      logits2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """int64 [M] each: the pseudo labels networks 1 and 2 give the unlabelled rows (IGNORE
        on labelled rows and on rows left out): the argmax of `pseudo_label_logits`, where the
        confidence reaches `threshold`, or with DARS within each class's prior share."""
        targets1, targets2 = self.pseudo_label_logits(labels, logits1, logits2)
        if not self.dars:
            return (threshold_pseudo_labels(targets1, labels, self.threshold),
                    threshold_pseudo_labels(targets2, labels, self.threshold))
        generator = step_generator(self.seed, int(self.step))
        return (dars_batch_pseudo_labels(targets1, labels, self.prior, generator),
                dars_batch_pseudo_labels(targets2, labels, self.prior, generator))

    def cross_term(self, batch: dict, logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
        """The lambda-weighted term, CE(l1, y2) + CE(l2, y1) with y_k network k's pseudo labels:
        on the batch's unlabelled rows, or on its mixed batch with y_k carried along (y_k[src])."""
        from_1, from_2 = self.pseudo_labels(batch["weak_label"], logits1, logits2)
        if self.mix is not None:
            mixed = self.mix(batch, step_generator(self.seed, int(self.step)))
            if mixed is None:  # fewer than two unlabelled images: nothing to mix in this batch
                return (logits1.sum() + logits2.sum()) * 0.0
            mixed_batch, src = mixed
            src = src.to(logits1.device)
            logits1, logits2 = self.model(mixed_batch)["logits"], self.model2(mixed_batch)["logits"]
            from_1, from_2 = from_1[src], from_2[src]
        return cross_ce(logits1, logits2, from_1, from_2, self.cross_class_weights)

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
    if c.dars and c.threshold > 0.0:
        raise ValueError("config key 'method.cps.dars': DARS sets per-class thresholds; "
                         f"it cannot be combined with method.cps.threshold={c.threshold} (set it to 0)")
    if not 0.0 <= c.alignment_momentum < 1.0:
        raise ValueError(f"config key 'method.cps.alignment_momentum': a momentum in [0, 1), "
                         f"got {c.alignment_momentum}")
    weights = ctx.class_weights()
    cross_weights = inverse_frequency_weights(ctx.class_counts) if c.cross_class_weights else None
    prior = class_prior(ctx.class_counts).float() if c.distribution_alignment or c.dars else None
    # two make_model calls draw two initialisations from the (seeded) torch RNG
    return CPS(ctx.make_model(), ctx.make_model(), c.weight, weights, ctx.mix if c.cutmix else None,
               ctx.cfg.train.seed, c.rampup_steps, cross_weights, c.threshold, prior, c.distribution_alignment,
               c.alignment_momentum, c.dars)
