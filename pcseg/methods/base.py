"""What every training method shares: the network used at inference, and the build context.

A method is an `nn.Module` whose `forward(batch) -> dict` returns `loss` (scalar), named loss
terms (scalars, logged) and `logits` float [N_points, K] (metrics). The trainer calls the
optional hooks `on_epoch_start(epoch)` and `after_step(step)` when a method defines them, and
checkpoints `method.state_dict()`, so teachers and extra heads travel with the weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from pcseg.models.image.ocr import AUX_WEIGHT
from pcseg.weak.losses import masked_ce

# (batch, generator) -> another view of the batch whose rows are the same points/pixels, in order
Augment = Callable[[dict, torch.Generator], dict]
# (batch, generator) -> (mixed batch, src int64 [M']: row of `batch` each mixed row comes from),
# or None when the batch has nothing to mix
Mix = Callable[[dict, torch.Generator], Optional[tuple[dict, torch.Tensor]]]


@dataclass(frozen=True)
class MethodContext:
    """What a method builder may use.

    cfg: the resolved experiment config (a method reads its own `method.*` keys);
    make_model: builds a fresh segmentation network (call twice for two-network methods);
    num_classes: K; class_counts: int64 [K] labelled-point histogram of the training set
    (weak labels only, never the hidden dense labels). The modality's views, given by the
    engine: augment, mean teacher's student view (None: the 3D `augment_points` from
    `method.mean_teacher`); mix, CPS's CutMix (images; needed by `method.cps.cutmix`).
    """

    cfg: DictConfig
    make_model: Callable[[], nn.Module]
    num_classes: int
    class_counts: np.ndarray
    augment: Optional[Augment] = None
    mix: Optional[Mix] = None

    def class_weights(self) -> Optional[torch.Tensor]:
        """float32 [K] inverse-frequency weights of the labelled points when `method.class_weights`
        is set, else None (`inverse_frequency_weights`)."""
        return inverse_frequency_weights(self.class_counts) if self.cfg.method.class_weights else None


class Method(nn.Module):
    """Base of the methods: `self.model` is the network evaluation and prediction run."""

    model: nn.Module

    @torch.no_grad()
    def predict(self, batch: dict) -> torch.Tensor:
        """logits float [N_points, K] on the batch's original points."""
        return self.model(batch)["logits"]


def network_ce(output: dict, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CE of a network's `logits` [M, K] on rows with target != IGNORE, plus AUX_WEIGHT x the CE
    of its `aux_logits` [M, K] when it has them (OCR's soft object regions, supervised by the
    same labels as in the paper). Exactly 0 (attached) without a labelled row."""
    ce = masked_ce(output["logits"], target, weight)
    if "aux_logits" in output:
        ce = ce + AUX_WEIGHT * masked_ce(output["aux_logits"], target, weight)
    return ce


def inverse_frequency_weights(class_counts: np.ndarray) -> torch.Tensor:
    """float32 [K] class weights ~ 1 / sqrt(frequency), mean 1 over classes that have labels.

    Classes without a labelled point get weight 0: they cannot occur in the loss anyway, and
    a finite value keeps the weighted mean well defined. The square root tempers the extreme
    ratios that 1% labels produce for rare classes.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"class_counts must be a non-negative 1-D histogram, got {counts!r}")
    seen = counts > 0
    if not seen.any():
        raise ValueError("class weights need at least one labelled point; the histogram is all zero")
    weights = np.zeros_like(counts)
    weights[seen] = 1.0 / np.sqrt(counts[seen] / counts.sum())
    weights[seen] /= weights[seen].mean()
    return torch.from_numpy(weights.astype(np.float32))
