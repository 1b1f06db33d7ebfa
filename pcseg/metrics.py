"""Semantic-segmentation metrics from one confusion matrix: OA, mIoU, mAcc, per-class IoU/acc.

    cm = ConfusionMatrix(num_classes)
    for batch in loader:
        cm.update(logits.argmax(1), batch["label"])
    cm.all_reduce()                      # sums the matrix over processes (no-op when alone)
    metrics = compute_metrics(cm.matrix, class_names)
    print(format_table(metrics))

All ratios are fractions in [0, 1]. A class with no ground-truth point is *absent*: its IoU
and accuracy are None, it is listed in `absent`, and it is left out of mIoU and mAcc (its
false positives still lower the IoU of the classes they were taken from).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from pcseg.data.contract import IGNORE

ArrayLike = torch.Tensor | np.ndarray


def _as_labels(values: ArrayLike, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(values)
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"{name} must hold integer class ids, got dtype {tensor.dtype}")
    return tensor.reshape(-1).long()


class ConfusionMatrix:
    """Counts of (ground truth, prediction) pairs over original points.

    matrix: int64 [K, K] on `device`; rows = ground truth, columns = prediction.
    """

    def __init__(self, num_classes: int, device: torch.device | str = "cpu") -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.num_classes = num_classes
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, pred: ArrayLike, target: ArrayLike) -> None:
        """Add one batch. pred, target: integer tensors or arrays of the same shape (any dims).

        Points whose target is IGNORE (-1) are skipped. Any other target, and any prediction on
        a counted point, outside 0..K-1 raises ValueError.
        """
        pred, target = _as_labels(pred, "pred"), _as_labels(target, "target")
        if pred.numel() != target.numel():
            raise ValueError(f"pred has {pred.numel()} entries but target has {target.numel()}")
        pred = pred.to(target.device)
        keep = target != IGNORE
        pred, target = pred[keep], target[keep]
        k = self.num_classes
        for name, values in (("target", target), ("pred", pred)):
            bad = (values < 0) | (values >= k)
            if bool(bad.any()):
                value = int(values[bad][0])
                extra = f" (or IGNORE={IGNORE})" if name == "target" else ""
                raise ValueError(f"{name} holds class {value}, expected 0..{k - 1}{extra}")
        counts = torch.bincount(target * k + pred, minlength=k * k).view(k, k)
        self.matrix = self.matrix + counts.to(self.matrix.device)

    def reset(self) -> None:
        self.matrix = torch.zeros_like(self.matrix)

    def all_reduce(self) -> None:
        """Sum the matrix over all processes when torch.distributed is initialised."""
        if not (dist.is_available() and dist.is_initialized()):
            return
        # NCCL reduces CUDA tensors only; gloo takes the matrix where it is.
        device = self.matrix.device
        if dist.get_backend() == "nccl":
            device = torch.device("cuda", torch.cuda.current_device())
        total = self.matrix.to(device, copy=True)
        dist.all_reduce(total)
        self.matrix = total.to(self.matrix.device)


def _ratio(num: float, den: float) -> float | None:
    return float(num) / float(den) if den > 0 else None


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def compute_metrics(matrix: ArrayLike, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of a confusion matrix (rows = ground truth, columns = prediction).

    matrix: int [K, K] tensor or array; class_names: K names.
    Returns {"miou", "oa", "macc": float | None (None without any point),
             "iou", "acc": {name: float | None (None when absent)},
             "num_points": {name: ground-truth points}, "num_predicted": {name: predicted points},
             "total_points": int, "present": [names], "absent": [names]}.
    """
    counts = torch.as_tensor(matrix).detach().cpu().numpy()
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K], got shape {counts.shape}")
    if len(class_names) != counts.shape[0]:
        k = counts.shape[0]
        raise ValueError(f"{len(class_names)} class names given for a {k}x{k} confusion matrix")
    counts = counts.astype(np.int64)
    true_positive = np.diag(counts)
    ground_truth = counts.sum(axis=1)
    predicted = counts.sum(axis=0)
    union = ground_truth + predicted - true_positive

    iou: dict[str, float | None] = {}
    acc: dict[str, float | None] = {}
    present, absent = [], []
    for c, name in enumerate(class_names):
        if ground_truth[c] == 0:
            iou[name] = acc[name] = None
            absent.append(name)
        else:
            iou[name] = _ratio(true_positive[c], union[c])
            acc[name] = _ratio(true_positive[c], ground_truth[c])
            present.append(name)
    total = int(counts.sum())
    return {
        "miou": _mean([iou[n] for n in present]),
        "oa": _ratio(true_positive.sum(), total),
        "macc": _mean([acc[n] for n in present]),
        "iou": iou,
        "acc": acc,
        "num_points": {name: int(ground_truth[c]) for c, name in enumerate(class_names)},
        "num_predicted": {name: int(predicted[c]) for c, name in enumerate(class_names)},
        "total_points": total,
        "present": present,
        "absent": absent,
    }


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def format_table(metrics: dict[str, Any]) -> str:
    """A per-class table (class, IoU %, acc %, ground-truth points) and a summary line."""
    names = list(metrics["iou"])
    width = max([len("class")] + [len(n) for n in names])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'points':>12}"]
    lines.append("-" * len(lines[0]))
    for name in names:
        note = "  (absent)" if metrics["iou"][name] is None else ""
        lines.append(
            f"{name:<{width}}  {_percent(metrics['iou'][name]):>7}  {_percent(metrics['acc'][name]):>7}  "
            f"{metrics['num_points'][name]:>12,}{note}"
        )
    lines.append("-" * len(lines[0]))
    lines.append(
        f"mIoU {_percent(metrics['miou'])}  mAcc {_percent(metrics['macc'])}  OA {_percent(metrics['oa'])}"
        f"  ({len(metrics['present'])}/{len(names)} classes present, {metrics['total_points']:,} points)"
    )
    return "\n".join(lines)
