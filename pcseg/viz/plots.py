"""Figures people would rather look at than read: confusion matrices, training curves and
the label-efficiency curve (mIoU against label ratio). matplotlib's Agg canvas, no display."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np


def _figure(width_in: float, height_in: float, dpi: float = 100.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=fig.dpi, facecolor="white")
    return out


def row_normalize(matrix: np.ndarray) -> np.ndarray:
    """float64 [K, K]: each row (ground-truth class) divided by its sum; all-zero rows stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    sums = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, sums, out=np.zeros_like(matrix), where=sums > 0)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], out_png: str | Path,
                   title: str = "confusion (rows: ground truth, normalised)") -> Path:
    """Heatmap of the row-normalised confusion matrix with the fraction in every cell.

    matrix: int [K, K], rows = ground truth, columns = prediction.
    """
    matrix = np.asarray(matrix)
    k = len(class_names)
    if matrix.shape != (k, k):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({k}, {k}) for {k} class names")
    norm = row_normalize(matrix)
    side = max(4.0, 0.5 * k + 2.0)
    fig = _figure(side, side)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels=list(class_names), fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("ground truth")
    ax.set_title(title, fontsize=10)
    for i in range(k):
        for j in range(k):
            if matrix[i].sum() > 0:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return _save(fig, out_png)


def read_log(log_jsonl: str | Path) -> list[dict]:
    """The records of a run's `log.jsonl`; ValueError naming the file and line if one is not JSON."""
    records = []
    with open(log_jsonl, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"{log_jsonl}:{number}: not a JSON object ({err.msg})") from None
    return records


def plot_training_curves(log_jsonl: str | Path, out_png: str | Path) -> Path:
    """Loss and its terms (train), learning rate, and mIoU (train/val) against step, from the
    run's `log.jsonl` (one `{"split", "epoch", "step", "lr", "loss", <terms>, "miou"}` per line)."""
    records = read_log(log_jsonl)
    if not records:
        raise ValueError(f"{log_jsonl}: no records to plot")
    skip = {"split", "epoch", "step", "lr", "miou", "oa", "macc", "time"}
    fig = _figure(12, 3.6)
    ax_loss, ax_lr, ax_miou = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))
    for split in sorted({r.get("split", "train") for r in records}):
        rows = [r for r in records if r.get("split", "train") == split and "step" in r]
        terms = sorted({k for r in rows for k, v in r.items() if k not in skip and isinstance(v, (int, float))})
        for term in terms:
            xs = [r["step"] for r in rows if isinstance(r.get(term), (int, float))]
            ys = [r[term] for r in rows if isinstance(r.get(term), (int, float))]
            ax_loss.plot(xs, ys, label=f"{split} {term}", marker="." if split == "val" else None)
        if split == "train" and any("lr" in r for r in rows):
            ax_lr.plot([r["step"] for r in rows if "lr" in r], [r["lr"] for r in rows if "lr" in r])
        has_miou = [r for r in rows if isinstance(r.get("miou"), (int, float))]
        if has_miou:
            ax_miou.plot([r["step"] for r in has_miou], [r["miou"] for r in has_miou], marker=".", label=split)
    for ax, title in ((ax_loss, "loss"), (ax_lr, "learning rate"), (ax_miou, "mIoU")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out_png)


def plot_label_curve(curves: dict[str, list[tuple[float, float, float, int]]], out_png: str | Path,
                     title: str = "mIoU against label ratio") -> Path:
    """One line per method: mean mIoU with a ±std band against the label ratio (log axis).

    curves: method -> [(ratio, mean, std, number of seeds)] sorted by ratio; mIoU in 0..1,
    drawn in percent.
    """
    if not curves:
        raise ValueError("no runs to plot")
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot(1, 1, 1)
    for method, points in sorted(curves.items()):
        ratio, mean, std = (np.array([p[i] for p in points], dtype=np.float64) for i in range(3))
        line, = ax.plot(ratio, 100 * mean, marker="o", label=method)
        ax.fill_between(ratio, 100 * (mean - std), 100 * (mean + std), color=line.get_color(), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("label ratio (1.0 = full labels)")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    return _save(fig, out_png)


def plot_grouped_bars(labels: Sequence[str], groups: dict[str, list[tuple[float, float | None] | None]],
                      out_png: str | Path, ylabel: str = "", title: str = "") -> Path:
    """One group of bars per label, one bar per key of `groups` (value ± std whisker).

    groups: series name -> one (value, std) per label, or None where that label has no value;
    a std of None (one seed: no spread to show) draws the bar without a whisker.
    """
    if not labels or not groups:
        raise ValueError("no bars to plot")
    for name, values in groups.items():
        if len(values) != len(labels):
            raise ValueError(f"series {name!r} has {len(values)} values for {len(labels)} labels")
    fig = _figure(max(6.4, 0.9 * len(labels) + 2.0), 4.4)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(groups)
    for k, (name, values) in enumerate(groups.items()):
        xs = [i + (k - (len(groups) - 1) / 2) * width for i, v in enumerate(values) if v is not None]
        heights = [v[0] for v in values if v is not None]
        errors = [float("nan") if v[1] is None else v[1] for v in values if v is not None]
        ax.bar(xs, heights, width, yerr=errors, capsize=2, label=name)
    ax.set_xticks(range(len(labels)), labels=list(labels), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_png)
