"""Pseudo-label basics on flat predictions: confidence, plain thresholding, the class prior,
distribution alignment.

Everything here works on flat tensors, whatever the modality: logits float [M, K], labels
int64 [M] with IGNORE = -1, group ids int64 [M] (scene or image of each row). Pseudo labels
are only ever made for rows whose label is IGNORE: they live beside the labels, never over them.
"""
from __future__ import annotations

import numpy as np
import torch

IGNORE = -1  # the same value as pcseg.data.contract.IGNORE; weak/ depends on torch alone


def confidence(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(conf float32 [M] = max softmax probability, pred int64 [M] = argmax) of logits [M, K]."""
    prob = torch.softmax(logits.detach().float(), dim=1)
    conf, pred = prob.max(dim=1)
    return conf, pred


def threshold_pseudo_labels(logits: torch.Tensor, labels: torch.Tensor, threshold: float) -> torch.Tensor:
    """int64 [M]: argmax where confidence >= `threshold` and the row is unlabelled, else IGNORE.

    logits: float [M, K]; labels: int64 [M] (IGNORE = unlabelled). Threshold 0 keeps every
    unlabelled row, so it takes the argmax of the logits without a softmax (CPS's every step).
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"pseudo-label threshold must be in [0, 1], got {threshold}")
    unlabelled = labels.to(logits.device) == IGNORE
    if threshold == 0.0:
        keep, pred = unlabelled, logits.detach().argmax(1)
    else:
        conf, pred = confidence(logits)
        keep = (conf >= threshold) & unlabelled
    return torch.where(keep, pred, torch.full_like(pred, IGNORE))


def class_prior(class_counts: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float64 [K]: labelled-point class proportions (sums to 1) from a histogram int [K]."""
    counts = torch.as_tensor(np.asarray(class_counts), dtype=torch.float64)
    if counts.dim() != 1 or bool((counts < 0).any()) or float(counts.sum()) <= 0:
        raise ValueError(f"class prior needs a non-negative, non-empty histogram [K], got {counts.tolist()}")
    return counts / counts.sum()


def update_class_mean(running_mean: torch.Tensor, logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """float32 [K]: momentum * running_mean + (1 - momentum) * mean_r softmax(logits)_r, the
    moving average of a network's predicted class distribution (ReMixMatch's, over its
    unlabelled rows). running_mean float [K]; logits float [M, K] (no gradient); M = 0 leaves
    the mean unchanged."""
    if len(logits) == 0:
        return running_mean
    batch_mean = torch.softmax(logits.detach().float(), dim=1).mean(0)
    return momentum * running_mean + (1.0 - momentum) * batch_mean.to(running_mean)


def aligned_logits(logits: torch.Tensor, prior: torch.Tensor, running_mean: torch.Tensor) -> torch.Tensor:
    """float32 [M, K]: logits whose softmax is ReMixMatch's distribution alignment (Berthelot et
    al., ICLR 2020), normalise(p * prior / running_mean) with p = softmax(logits):

        logits + log prior - log running_mean

    logits float [M, K]; prior float [K], the labelled class proportions (`class_prior`);
    running_mean float [K], the network's moving average prediction (`update_class_mean`). A
    class without labelled rows (prior 0) gets -inf: it is never a pseudo label. No gradient.
    """
    prior = prior.to(logits.device, torch.float32)
    mean = running_mean.to(logits.device, torch.float32).clamp_min(1e-12)
    return logits.detach().float() + torch.log(prior) - torch.log(mean)
