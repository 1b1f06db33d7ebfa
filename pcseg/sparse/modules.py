"""Row-wise layers on SparseTensor features: normalisation, activations, concatenation."""
from __future__ import annotations

import torch
from torch import nn

from pcseg.sparse.tensor import SparseTensor


class BatchNorm(nn.BatchNorm1d):
    """BatchNorm over all rows of the feature matrix [M, C]."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace_feats(super().forward(x.feats))


class ReLU(nn.Module):
    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(torch.relu(x.feats))


class LeakyReLU(nn.Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace_feats(nn.functional.leaky_relu(x.feats, self.negative_slope))

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


def cat(*tensors: SparseTensor) -> SparseTensor:
    """Channel-wise concatenation of tensors on the same coordinates (same manager and stride)."""
    if not tensors:
        raise ValueError("cat() needs at least one SparseTensor")
    first = tensors[0]
    for t in tensors[1:]:
        if not first.same_coordinates(t):
            raise ValueError(f"cat(): {t!r} is not on the coordinates of {first!r}")
    return first.replace_feats(torch.cat([t.feats for t in tensors], dim=1))
