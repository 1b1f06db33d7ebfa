"""Label propagation to the nearest labelled row: pseudo labels from a feature neighbourhood.

With 1% of points labelled, most unlabelled points lie close to a labelled one on the same
surface; giving each unlabelled row the label of its nearest labelled row, when that row is
within `max_distance` in a feature space (3D: coordinates in metres and colour scaled to
metres, 2D: pixel position and colour), multiplies the supervised rows many times over at
a small noise cost. The rows are modality-free: any float features [M, D].

Cost: M x L distances for L labelled rows (L is small: that is the point of weak labels),
computed in row chunks so memory stays `chunk_rows x L` floats.
"""
from __future__ import annotations

import torch

from pcseg.weak.pseudo import IGNORE


def nearest_label_propagation(features: torch.Tensor, labels: torch.Tensor, max_distance: float,
                              chunk_rows: int = 65536) -> torch.Tensor:
    """int64 [M] pseudo labels: for every unlabelled row (labels == IGNORE), the label of the
    nearest labelled row (Euclidean distance in `features`) when it is < `max_distance`;
    IGNORE elsewhere, and on the labelled rows themselves (their labels are never copied
    into pseudo labels). Ties go to the labelled row of lowest index.

    features: float [M, D]; labels: int64 [M] with IGNORE = -1 where unlabelled.
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],):
        raise ValueError(f"features must be [M, D] and labels [M], got {tuple(features.shape)} and "
                         f"{tuple(labels.shape)}")
    if max_distance <= 0:
        raise ValueError(f"max_distance must be > 0, got {max_distance}")
    out = torch.full_like(labels, IGNORE)
    labelled = torch.nonzero(labels != IGNORE).squeeze(1)
    if len(labelled) == 0:
        return out
    anchors = features[labelled].to(torch.float64)
    anchor_labels = labels[labelled]
    for start in range(0, features.shape[0], chunk_rows):
        rows = features[start:start + chunk_rows].to(torch.float64)
        dist, nearest = torch.cdist(rows, anchors).min(dim=1)
        near = dist < max_distance
        chunk = out[start:start + chunk_rows]
        chunk[near] = anchor_labels[nearest[near]]
    out[labelled] = IGNORE
    return out


def segment_label_propagation(features: torch.Tensor, labels: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """int64 [M] pseudo labels: every unlabelled row of a segment that holds labelled rows takes
    the label of the nearest (in `features`) labelled row of its own segment, at any distance;
    IGNORE on rows of segments without labels and on the labelled rows themselves.

    features: float [M, D]; labels: int64 [M] with IGNORE = -1 where unlabelled; segments:
    int64 [M] group id per row (e.g. `pcseg.data.segments.surface_segments`, or superpixels).
    Cost: one small distance matrix per labelled segment (its rows x its labelled rows).
    """
    if features.ndim != 2 or labels.shape != (features.shape[0],) or segments.shape != labels.shape:
        raise ValueError(f"features must be [M, D], labels and segments [M], got {tuple(features.shape)}, "
                         f"{tuple(labels.shape)} and {tuple(segments.shape)}")
    out = torch.full_like(labels, IGNORE)
    labelled = labels != IGNORE
    order = torch.argsort(segments, stable=True)
    seg_sorted = segments[order]
    keys, counts = torch.unique_consecutive(seg_sorted, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    has_labels = torch.zeros(len(keys), dtype=torch.bool).index_fill_(
        0, torch.searchsorted(keys, segments[labelled]), True)
    for start, count in zip(starts[has_labels].tolist(), counts[has_labels].tolist()):
        rows = order[start:start + count]
        anchors = rows[labelled[rows]]
        nearest = torch.cdist(features[rows].to(torch.float64), features[anchors].to(torch.float64)).argmin(dim=1)
        out[rows] = labels[anchors[nearest]]
    out[labelled] = IGNORE
    return out
