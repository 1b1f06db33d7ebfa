"""DARS: Distribution Alignment and Random Sampling of pseudo labels (He et al., ICCV 2021).

Plain confidence thresholds favour the classes a network is sure of, so pseudo labels drift
towards majority classes. DARS instead fixes how many pseudo labels each class gets,

    n_k = round(alpha * M * prior_k)     (capped at the rows predicted as k)

(M unlabelled rows, prior from the labelled data, alpha the pseudo-labelled fraction: given,
or the fraction a global confidence threshold would keep), then picks a per-class threshold
t_k so that n_k rows predicted k lie at or above it, and samples randomly among the rows tied
at the threshold to hit n_k exactly (confidences saturate near 1, so ties are common).

Streaming: the confidences are never all kept. `ConfidenceHistogram` accumulates, per
predicted class, a histogram of confidences (`bins` equal bins over [0, 1]) batch by batch;
thresholds are read from its cumulative counts. With bins, "tied at the threshold" means "in
the boundary bin": rows above it are kept, rows in it are kept with the fraction that makes
the count come out at n_k. Memory is K * bins int64, whatever the data size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from pcseg.weak.pseudo import IGNORE, confidence


def confidence_bin(conf: torch.Tensor, bins: int) -> torch.Tensor:
    """int64 [M]: bin of each confidence in [0, 1]; bin b covers [b / bins, (b + 1) / bins), 1.0 in the last."""
    return (conf.double() * bins).floor().long().clamp_(0, bins - 1)


class ConfidenceHistogram:
    """counts int64 [K, bins]: rows by (predicted class, confidence bin), accumulated over batches."""

    def __init__(self, num_classes: int, bins: int = 1000, counts: Optional[torch.Tensor] = None):
        if num_classes < 1 or bins < 1:
            raise ValueError(f"ConfidenceHistogram needs num_classes >= 1 and bins >= 1, got {num_classes}, {bins}")
        self.num_classes, self.bins = int(num_classes), int(bins)
        self.counts = torch.zeros(num_classes, bins, dtype=torch.int64) if counts is None else counts.clone()
        if tuple(self.counts.shape) != (num_classes, bins):
            raise ValueError(f"histogram counts must be [{num_classes}, {bins}], got {tuple(self.counts.shape)}")

    def update(self, logits: torch.Tensor, mask: Optional[torch.Tensor] = None) -> None:
        """Count the rows of logits float [M, K] where `mask` bool [M] (default: all)."""
        conf, pred = confidence(logits)
        if mask is not None:
            conf, pred = conf[mask.to(conf.device)], pred[mask.to(pred.device)]
        flat = pred * self.bins + confidence_bin(conf, self.bins)
        add = torch.bincount(flat, minlength=self.num_classes * self.bins).view(self.num_classes, self.bins)
        self.counts = self.counts.to(add.device) + add

    def __add__(self, other: "ConfidenceHistogram") -> "ConfidenceHistogram":
        if (self.num_classes, self.bins) != (other.num_classes, other.bins):
            raise ValueError("cannot add histograms of different shapes")
        return ConfidenceHistogram(self.num_classes, self.bins, self.counts + other.counts.to(self.counts.device))

    def all_reduce(self) -> None:
        """Sum the counts over processes (no-op unless torch.distributed is initialised)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.counts)

    def total(self) -> int:
        return int(self.counts.sum())


@dataclass(frozen=True)
class DarsThresholds:
    """Per class k: rows predicted k in bins > `bin[k]` are kept, rows in bin `bin[k]` are kept
    with probability `keep_fraction[k]`; `target[k]` = n_k. bin[k] == bins keeps nothing.

    bin int64 [K]; keep_fraction float64 [K] in [0, 1]; target int64 [K]; bins: histogram bins.
    """

    bin: torch.Tensor
    keep_fraction: torch.Tensor
    target: torch.Tensor
    bins: int

    @property
    def threshold(self) -> torch.Tensor:
        """float64 [K]: the confidence at the lower edge of each class's boundary bin."""
        return self.bin.double() / self.bins


def dars_targets(hist: ConfidenceHistogram, prior: torch.Tensor, ratio: Optional[float] = None,
                 threshold: float = 0.9) -> torch.Tensor:
    """int64 [K]: n_k = round(alpha * M * prior_k), capped at the rows predicted k.

    alpha = `ratio` when given, else the fraction of counted rows with confidence >= `threshold`
    (the amount a plain threshold would label, redistributed over classes by the prior).
    """
    counts = hist.counts.cpu()
    total = int(counts.sum())
    if ratio is None:
        first = int(confidence_bin(torch.tensor([threshold], dtype=torch.float64), hist.bins)[0])
        alpha = float(counts[:, first:].sum()) / max(total, 1)
    else:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"DARS ratio must be in [0, 1], got {ratio}")
        alpha = float(ratio)
    prior = torch.as_tensor(prior, dtype=torch.float64).cpu()
    if prior.shape != (hist.num_classes,):
        raise ValueError(f"DARS prior must be [{hist.num_classes}], got {tuple(prior.shape)}")
    wanted = torch.round(alpha * total * prior).long()
    return torch.minimum(wanted, counts.sum(1))


def dars_thresholds(hist: ConfidenceHistogram, prior: torch.Tensor, ratio: Optional[float] = None,
                    threshold: float = 0.9) -> DarsThresholds:
    """Per-class boundary bins and keep fractions that give `dars_targets` rows per class."""
    counts = hist.counts.cpu()
    target = dars_targets(hist, prior, ratio, threshold)
    # at_or_above[k, b] = rows predicted k with bin >= b
    at_or_above = counts.flip(1).cumsum(1).flip(1)
    bins = hist.bins
    boundary = torch.full((hist.num_classes,), bins, dtype=torch.int64)
    keep = torch.zeros(hist.num_classes, dtype=torch.float64)
    for k in range(hist.num_classes):
        n = int(target[k])
        if n == 0:
            continue
        # the highest bin b with at_or_above >= n holds the n-th most confident row
        b = int(torch.nonzero(at_or_above[k] >= n).max())
        above = int(at_or_above[k, b]) - int(counts[k, b])
        boundary[k] = b
        keep[k] = (n - above) / int(counts[k, b])
    return DarsThresholds(bin=boundary, keep_fraction=keep, target=target, bins=bins)


def dars_pseudo_labels(logits: torch.Tensor, labels: torch.Tensor, thresholds: DarsThresholds,
                       generator: torch.Generator) -> torch.Tensor:
    """int64 [M]: DARS pseudo labels of the unlabelled rows (IGNORE elsewhere).

    logits float [M, K]; labels int64 [M] (IGNORE = unlabelled). In each class's boundary bin,
    floor(f * m) + Bernoulli(frac(f * m)) of its m rows are drawn without replacement (f the
    keep fraction): exactly the target over one pass of the data the histogram saw, and unbiased
    over many batches. `generator` (CPU) supplies all randomness.
    """
    conf, pred = confidence(logits)
    conf, pred = conf.cpu(), pred.cpu()
    unlabelled = labels.cpu() == IGNORE
    b = confidence_bin(conf, thresholds.bins)
    boundary = thresholds.bin[pred]
    keep = unlabelled & (b > boundary)
    for k in torch.nonzero(thresholds.keep_fraction > 0).flatten().tolist():
        rows = torch.nonzero(unlabelled & (pred == k) & (b == thresholds.bin[k])).flatten()
        # rounded so that f * m == an integer up to float error counts as that integer
        expected = round(float(thresholds.keep_fraction[k]) * len(rows), 9)
        whole = int(expected)
        extra = int(torch.rand((), generator=generator, dtype=torch.float64) < expected - whole)
        chosen = rows[torch.randperm(len(rows), generator=generator)[:whole + extra]]
        keep[chosen] = True
    out = torch.where(keep, pred, torch.full_like(pred, IGNORE))
    return out.to(logits.device)


def dars_batch_pseudo_labels(logits: torch.Tensor, labels: torch.Tensor, prior: torch.Tensor,
                             generator: torch.Generator, bins: int = 1000) -> torch.Tensor:
    """int64 [M]: DARS within one batch with alpha = 1: each class k keeps at most
    round(M_u * prior_k) of the unlabelled rows predicted k, the most confident ones (M_u the
    batch's unlabelled rows); a class predicted less often than that keeps all its rows.

    The online form for a method that labels every step (CPS): a class the network predicts
    more often than the labelled data holds it gives up its least confident rows (IGNORE), and
    no row gets a label other than its argmax. logits float [M, K]; labels int64 [M]; prior
    float [K] (`class_prior`).
    """
    hist = ConfidenceHistogram(logits.shape[1], bins)
    hist.update(logits, labels.to(logits.device) == IGNORE)
    return dars_pseudo_labels(logits, labels, dars_thresholds(hist, prior, ratio=1.0), generator)
