"""Losses of the pseudo-label methods on flat logits [M, K] (any modality).

    masked_ce        CE over rows whose target is not IGNORE (0 when there is none)
    cps_terms        cross pseudo supervision (Chen et al., CVPR 2021); cps_cross its cross term,
                     cross_ce the same from pseudo labels already made
    softmax_mse      mean-teacher consistency
    mean_entropy     mean entropy of the softmax over selected rows
    erda_loss        entropy regularisation + distribution alignment (Tang et al., 2023)
    sigmoid_rampup   exp(-5 (1 - t)^2), the usual consistency-weight ramp
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F

from pcseg.weak.pseudo import IGNORE, threshold_pseudo_labels


def masked_ce(logits: torch.Tensor, target: torch.Tensor, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean CE over rows with target != IGNORE; exactly 0 (attached to the graph) when none.

    logits float [M, K]; target int64 [M]; weight float [K] or None.
    """
    target = target.to(logits.device)
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, weight=weight, ignore_index=IGNORE)


def cps_terms(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor,
              weight: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """CPS: `ce1`, `ce2` on labelled rows; `cps` = CE(l1, argmax l2) + CE(l2, argmax l1) on unlabelled rows.

    The argmax targets carry no gradient (they are labels). logits1/2 float [M, K]; labels int64 [M].
    """
    return {
        "ce1": masked_ce(logits1, labels, weight),
        "ce2": masked_ce(logits2, labels, weight),
        "cps": cps_cross(logits1, logits2, labels),
    }


def cps_cross(logits1: torch.Tensor, logits2: torch.Tensor, labels: torch.Tensor,
              targets1: Optional[torch.Tensor] = None, targets2: Optional[torch.Tensor] = None,
              weight: Optional[torch.Tensor] = None, threshold: float = 0.0) -> torch.Tensor:
    """CE(l1, argmax t2) + CE(l2, argmax t1) over rows whose label is IGNORE (t_k = l_k unless given).

    logits1/2 float [M, K] (the students); targets1/2 float [M, K], the networks' logits the
    pseudo labels are read from (CPS + CutMix: the unmixed predictions carried to the mixed
    rows); labels int64 [M]; weight float [K] or None: class weights of the two CEs, each then
    sum_r w[y_r] nll_r / sum_r w[y_r] over its rows, y_r the pseudo label; threshold: a row
    takes the pseudo label only where max softmax(t) >= threshold, and each CE is the mean over
    the rows kept (0 = every unlabelled row, the paper's CPS). The argmax carries no gradient.
    """
    targets1 = logits1 if targets1 is None else targets1
    targets2 = logits2 if targets2 is None else targets2
    return cross_ce(logits1, logits2, threshold_pseudo_labels(targets1, labels, threshold),
                    threshold_pseudo_labels(targets2, labels, threshold), weight)


def cross_ce(logits1: torch.Tensor, logits2: torch.Tensor, from_1: torch.Tensor, from_2: torch.Tensor,
             weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """CE(l1, y2) + CE(l2, y1): each network learns the other's pseudo labels.

    logits1/2 float [M, K]; from_1 / from_2 int64 [M], the pseudo labels networks 1 / 2 give
    (IGNORE where none); weight float [K] or None (`masked_ce`).
    """
    return masked_ce(logits1, from_2, weight) + masked_ce(logits2, from_1, weight)


def softmax_mse(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Mean over rows and classes of (softmax(student) - softmax(teacher))^2; the teacher is a target."""
    return F.mse_loss(torch.softmax(student_logits.float(), 1), torch.softmax(teacher_logits.detach().float(), 1))


def mean_entropy(logits: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over rows (where `mask`, bool [M]) of -sum_k q_k log q_k, q = softmax(logits [M, K]).

    Returns 0 (attached) when `mask` selects nothing.
    """
    if mask is not None:
        logits = logits[mask.to(logits.device)]
    if len(logits) == 0:
        return logits.sum() * 0.0
    log_q = torch.log_softmax(logits.float(), 1)
    return -(log_q.exp() * log_q).sum(1).mean()


def erda_loss(pseudo_logits: torch.Tensor, logits: torch.Tensor, entropy_weight: float = 1.0,
              mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """ERDA: mean over rows (where `mask`) of  lambda * H(p) + KL(p || q),  p = softmax(pseudo_logits),
    q = softmax(logits).

    With lambda = 1 this is the cross-entropy -sum_k p_k log q_k. Gradients reach both p and q
    (ERDA optimises the pseudo-label generator too); pass detached pseudo logits for a fixed
    teacher. Returns 0 (attached) when `mask` selects nothing.
    """
    if mask is not None:
        mask = mask.to(logits.device)
        pseudo_logits, logits = pseudo_logits[mask], logits[mask]
    if len(logits) == 0:
        return logits.sum() * 0.0
    log_p = torch.log_softmax(pseudo_logits.float(), 1)
    log_q = torch.log_softmax(logits.float(), 1)
    p = log_p.exp()
    entropy = -(p * log_p).sum(1)
    kl = (p * (log_p - log_q)).sum(1)
    return (entropy_weight * entropy + kl).mean()


def sigmoid_rampup(step: int, length: int) -> float:
    """exp(-5 (1 - t)^2) with t = clip(step / length, 0, 1): 0.0067 at 0, 1 from `length` on."""
    if length <= 0:
        return 1.0
    t = min(max(step / length, 0.0), 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)
