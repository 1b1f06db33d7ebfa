"""Colours for labels, errors and legends. Class colours come from `datasets/*.yaml` only."""
from __future__ import annotations

import numpy as np

from pcseg.data.contract import IGNORE
from pcseg.data.meta import load_dataset_meta

# Points without a class (IGNORE / unlabelled) and correctly predicted points: greys that
# recede behind the class colours; wrong predictions: saturated red so they jump out.
UNLABELLED_GREY = np.array([0.78, 0.78, 0.78], dtype=np.float32)
CORRECT_GREY = np.array([0.55, 0.55, 0.55], dtype=np.float32)
WRONG_RED = np.array([0.9, 0.05, 0.05], dtype=np.float32)


def dataset_palette(dataset: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """(palette uint8 [K, 3], class names [K]) of a shipped dataset or a class YAML path."""
    meta = load_dataset_meta(dataset)
    return meta.colors.copy(), meta.class_names


def colorize(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colours of `labels`.

    labels: int [N] class indices, IGNORE (-1) for unlabelled; palette: uint8 [K, 3] (0..255)
    or float [K, 3] (0..1). Returns float32 [N, 3] in 0..1; IGNORE points are UNLABELLED_GREY.
    Raises ValueError for labels outside 0..K-1 that are not IGNORE.
    """
    labels = np.asarray(labels)
    table = _palette01(palette)
    bad = (labels != IGNORE) & ((labels < 0) | (labels >= len(table)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"label {int(labels[i])} at point {i} has no colour: the palette has {len(table)} classes "
            f"(0..{len(table) - 1}, IGNORE={IGNORE}); pick the dataset whose classes these are"
        )
    # Row K of the extended table is the grey every IGNORE label indexes.
    table = np.vstack([table, UNLABELLED_GREY[None]])
    return table[np.where(labels == IGNORE, len(table) - 1, labels)]


def error_colors(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """float32 [N, 3]: WRONG_RED where pred != label, CORRECT_GREY where equal, and
    UNLABELLED_GREY where the ground truth is IGNORE (no verdict possible).

    pred, label: int [N].
    """
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise ValueError(f"prediction has shape {pred.shape}, ground truth {label.shape}")
    out = np.where((pred == label)[:, None], CORRECT_GREY, WRONG_RED).astype(np.float32)
    out[label == IGNORE] = UNLABELLED_GREY
    return out


def legend_entries(palette: np.ndarray, class_names: tuple[str, ...] | list[str],
                   classes: np.ndarray | None = None) -> list[tuple[int, str, np.ndarray]]:
    """[(class index, name, float32 rgb 0..1)] for `classes` (int class indices, IGNORE
    skipped; all classes when None), in class order."""
    table = _palette01(palette)
    if len(class_names) != len(table):
        raise ValueError(f"{len(class_names)} class names for a palette of {len(table)} colours")
    ids = range(len(table)) if classes is None else sorted({int(c) for c in classes if c != IGNORE})
    return [(i, class_names[i], table[i]) for i in ids]


def legend_text(palette: np.ndarray, class_names: tuple[str, ...] | list[str],
                classes: np.ndarray | None = None) -> str:
    """One line per class: index, name and colour as 0..255 rgb, for a terminal."""
    return "\n".join(
        f"{i:3d} {name:<16s} rgb({', '.join(str(int(round(v * 255))) for v in rgb)})"
        for i, name, rgb in legend_entries(palette, class_names, classes)
    )


def _palette01(palette: np.ndarray) -> np.ndarray:
    """float32 [K, 3] in 0..1 from a uint8 (0..255) or float (0..1) palette."""
    palette = np.asarray(palette)
    if palette.ndim != 2 or palette.shape[1] != 3:
        raise ValueError(f"palette must be [K, 3], got shape {palette.shape}")
    if np.issubdtype(palette.dtype, np.integer):
        return palette.astype(np.float32) / 255.0
    return palette.astype(np.float32)
