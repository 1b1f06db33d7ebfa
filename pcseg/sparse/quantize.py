"""Points -> voxels: unique voxels, the inverse map back, mean features, majority-vote labels."""
from __future__ import annotations

import numpy as np
import torch

from pcseg.data.contract import IGNORE
from pcseg.sparse.coords import pack_keys


def _as_tensor(x: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
    return torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x


def quantize(
    coord: torch.Tensor | np.ndarray,
    voxel_size: float,
    batch: torch.Tensor | np.ndarray | None = None,
    feats: torch.Tensor | np.ndarray | None = None,
    labels: torch.Tensor | np.ndarray | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Voxelize points; voxel of a point = floor(coord / voxel_size).

    coord:  float [N, 3] metres; batch: int [N] batch index (all 0 when None)
    feats:  float [N, C] (optional); labels: int64 [N] with IGNORE=-1 (optional)
    Returns voxel coords int32 [M, 4] (batch, x, y, z) sorted by (batch, x, y, z), inverse
    int64 [N] (point -> voxel row), voxel feats [M, C] = mean of its points' feats (or None),
    voxel labels int64 [M] = most frequent label among its labelled points, ties to the
    smaller label, IGNORE only when all its points are IGNORE (or None).
    Numpy inputs are accepted; outputs are torch tensors on coord's device.
    """
    coord, batch, feats, labels = map(_as_tensor, (coord, batch, feats, labels))
    if coord.dim() != 2 or coord.shape[1] != 3:
        raise ValueError(f"coord must be [N, 3], got {tuple(coord.shape)}")
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
    n = coord.shape[0]
    for name, x in (("batch", batch), ("feats", feats), ("labels", labels)):
        if x is not None and x.shape[0] != n:
            raise ValueError(f"{name} has {x.shape[0]} rows, coord has {n}")
    grid = torch.floor(coord / voxel_size).to(torch.int64)
    b = torch.zeros(n, dtype=torch.int64, device=coord.device) if batch is None else batch.to(torch.int64)
    keys = pack_keys(torch.cat([b.unsqueeze(1), grid], dim=1))
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    m = unique_keys.numel()
    # Any point of a voxel has the voxel's coordinates; scatter them (all writes agree).
    vcoords = torch.empty((m, 4), dtype=torch.int64, device=coord.device)
    vcoords[inverse] = torch.cat([b.unsqueeze(1), grid], dim=1)
    counts = torch.bincount(inverse, minlength=m)
    vfeats = None
    if feats is not None:
        vfeats = feats.new_zeros((m, feats.shape[1])).index_add_(0, inverse, feats)
        vfeats = vfeats / counts.unsqueeze(1).to(feats.dtype)
    vlabels = None if labels is None else _vote(inverse, labels.to(torch.int64), m)
    return vcoords.to(torch.int32), inverse, vfeats, vlabels


def _vote(inverse: torch.Tensor, labels: torch.Tensor, m: int) -> torch.Tensor:
    """int64 [M] majority label per voxel among non-IGNORE points; IGNORE if it has none."""
    keep = labels != IGNORE
    if bool((labels[keep] < 0).any()):
        raise ValueError(f"labels must be >= 0 or IGNORE={IGNORE}, got {int(labels[keep].min())}")
    out = torch.full((m,), IGNORE, dtype=torch.int64, device=labels.device)
    if not bool(keep.any()):
        return out
    num_labels = int(labels[keep].max().item()) + 1
    pair, pair_count = torch.unique(inverse[keep] * num_labels + labels[keep], return_counts=True)
    voxel, label = pair // num_labels, pair % num_labels
    # One score per (voxel, label): higher count wins, then the smaller label.
    score = pair_count * num_labels + (num_labels - 1 - label)
    best = torch.full((m,), -1, dtype=torch.int64, device=labels.device)
    best.scatter_reduce_(0, voxel, score, "amax")
    has = best >= 0
    out[has] = num_labels - 1 - best[has] % num_labels
    return out
