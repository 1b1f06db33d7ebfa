"""`self_training`: CE on labelled rows + CE on pseudo-labelled rows, with or without DARS.

Online (`method.self_training.online: true`): each step a teacher (the EMA of the model, or
the model itself when `ema: 0`) predicts the batch; its unlabelled rows are counted into this
epoch's per-class confidence histogram, and are pseudo-labelled with the DARS thresholds read
from the previous epoch's histogram (`method.pseudo.dars: true`) or a plain confidence
threshold (`dars: false`). Pseudo labels start after `warmup_epochs` (DARS also needs one
finished epoch of histogram). With `erda: true` the hard pseudo-label CE is replaced by ERDA
on every unlabelled row.

Offline (rounds, `pcseg/engine/rounds.py`): batches carry a `pseudo_label` made by the previous
round's network; it is used as is.

    loss = CE(logits, weak_label) + weight * CE(logits, pseudo_label)

both CE with the optional class weights (`method.class_weights`, from labelled points only).
Only flat logits and labels are seen here, so 2D reuses the class unchanged.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Method, MethodContext, network_ce
from pcseg.methods.mean_teacher import ema_update, make_teacher, step_generator
from pcseg.weak.dars import ConfidenceHistogram, DarsThresholds, dars_pseudo_labels, dars_thresholds
from pcseg.weak.losses import erda_loss, masked_ce
from pcseg.weak.pseudo import IGNORE, class_prior, threshold_pseudo_labels


def select_pseudo_labels(logits: torch.Tensor, labels: torch.Tensor, dars: Optional[DarsThresholds],
                         threshold: float, generator: torch.Generator) -> torch.Tensor:
    """int64 [M] pseudo labels of unlabelled rows: DARS when `dars` thresholds are given, else
    argmax where confidence >= `threshold`."""
    if dars is not None:
        return dars_pseudo_labels(logits, labels, dars, generator)
    return threshold_pseudo_labels(logits, labels, threshold)


class SelfTraining(Method):
    """model: the trained network; teacher: its EMA (None when pseudo labels come from the model);
    class_weights: float32 [K] or None, weighting both CE terms."""

    def __init__(self, model: nn.Module, prior: torch.Tensor, use_dars: bool = True, threshold: float = 0.9,
                 ratio: Optional[float] = None, bins: int = 1000, weight: float = 1.0, ema: float = 0.99,
                 warmup_epochs: int = 1, erda: bool = False, erda_entropy_weight: float = 1.0,
                 online: bool = True, seed: int = 0, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"config key 'method.self_training.ema': expected 0 <= ema < 1, got {ema}")
        self.model = model
        self.teacher = make_teacher(model) if ema > 0 else None
        self.use_dars, self.threshold, self.ratio, self.bins = use_dars, threshold, ratio, bins
        self.weight, self.ema, self.warmup_epochs = weight, ema, warmup_epochs
        self.erda, self.erda_entropy_weight, self.online, self.seed = erda, erda_entropy_weight, online, seed
        num_classes = len(prior)
        self.register_buffer("prior", torch.as_tensor(prior, dtype=torch.float64))
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)
        # buffers, so a resumed run continues with the same histograms and step count
        self.register_buffer("hist_current", torch.zeros(num_classes, bins, dtype=torch.int64))
        self.register_buffer("hist_previous", torch.zeros(num_classes, bins, dtype=torch.int64))
        self.register_buffer("hist_epoch", torch.full((), -1, dtype=torch.int64))
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self._thresholds: Optional[DarsThresholds] = None

    def train(self, mode: bool = True) -> "SelfTraining":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()
        return self

    def on_epoch_start(self, epoch: int) -> None:
        """Close the previous epoch's histogram (summed over processes); a resumed epoch keeps its own."""
        if int(self.hist_epoch) == epoch:
            return
        if int(self.hist_epoch) >= 0:
            closed = ConfidenceHistogram(len(self.prior), self.bins, self.hist_current)
            closed.all_reduce()
            self.hist_previous.copy_(closed.counts)
        self.hist_current.zero_()
        self.hist_epoch.fill_(epoch)
        self._thresholds = None

    def dars(self) -> Optional[DarsThresholds]:
        """Thresholds from the previous epoch's histogram (None before one is complete)."""
        if self._thresholds is None and int(self.hist_previous.sum()) > 0:
            hist = ConfidenceHistogram(len(self.prior), self.bins, self.hist_previous)
            self._thresholds = dars_thresholds(hist, self.prior, self.ratio, self.threshold)
        return self._thresholds

    def _online_term(self, logits: torch.Tensor, batch: dict) -> Optional[torch.Tensor]:
        labels = batch["weak_label"].to(logits.device)
        unlabelled = labels == IGNORE
        if self.teacher is not None:
            with torch.no_grad():
                source = self.teacher(batch)["logits"]
        else:
            source = logits
        if self.training:
            hist = ConfidenceHistogram(len(self.prior), self.bins, self.hist_current)
            hist.update(source, unlabelled)
            self.hist_current.copy_(hist.counts)
        if int(self.hist_epoch) < self.warmup_epochs:
            return None
        if self.erda:
            return erda_loss(source, logits, self.erda_entropy_weight, unlabelled)
        thresholds = self.dars() if self.use_dars else None
        if self.use_dars and thresholds is None:
            return None
        pseudo = select_pseudo_labels(source, labels, thresholds, self.threshold,
                                      step_generator(self.seed, int(self.step)))
        return masked_ce(logits, pseudo, self.class_weights)

    def forward(self, batch: dict) -> dict:
        out = self.model(batch)
        logits = out["logits"]
        ce = network_ce(out, batch["weak_label"], self.class_weights)
        if "pseudo_label" in batch:
            pseudo_term: Optional[torch.Tensor] = masked_ce(logits, batch["pseudo_label"], self.class_weights)
        elif self.online:
            pseudo_term = self._online_term(logits, batch)
        else:
            pseudo_term = None
        if pseudo_term is None:
            pseudo_term = logits.sum() * 0.0
        loss = ce + self.weight * pseudo_term
        return {"loss": loss, "ce": ce.detach(), "pseudo": pseudo_term.detach(), "logits": logits}

    def after_step(self, step: int) -> None:
        if self.teacher is not None:
            ema_update(self.teacher, self.model, self.ema)
        self.step.fill_(step)


def build_self_training(ctx: MethodContext) -> SelfTraining:
    st, pl = ctx.cfg.method.self_training, ctx.cfg.method.pseudo
    weights = ctx.class_weights()
    return SelfTraining(ctx.make_model(), class_prior(ctx.class_counts), use_dars=pl.dars, threshold=pl.threshold,
                        ratio=pl.ratio, bins=pl.bins, weight=st.weight, ema=st.ema,
                        warmup_epochs=st.warmup_epochs, erda=st.erda, erda_entropy_weight=st.erda_entropy_weight,
                        online=st.online, seed=ctx.cfg.train.seed, class_weights=weights)
