"""Sparse pooling: local max/avg over a kernel map, global per batch entry."""
from __future__ import annotations

import torch
from torch import nn

from pcseg.scatter import scatter_max, scatter_mean
from pcseg.sparse.tensor import SparseTensor


class _LocalPool(nn.Module):
    def __init__(self, kernel_size: int = 2, stride: int = 2, dilation: int = 1):
        super().__init__()
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation

    def _pairs(self, x: SparseTensor) -> tuple[torch.Tensor, torch.Tensor, int, int]:
        out_stride = x.stride * self.stride
        kmap = x.manager.kernel_map(x.stride, out_stride, self.kernel_size, self.dilation)
        return kmap.in_rows, kmap.out_rows, kmap.num_out, out_stride

    def _wrap(self, x: SparseTensor, feats: torch.Tensor, out_stride: int) -> SparseTensor:
        return SparseTensor(feats, x.manager.coordinates(out_stride).coords, out_stride, x.manager)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, dilation={self.dilation}"


class MaxPool3d(_LocalPool):
    """Max over the active inputs in each output's kernel window (0 where there are none);
    the gradient goes to the winning input only."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        in_rows, out_rows, num_out, out_stride = self._pairs(x)
        out, _ = scatter_max(x.feats.index_select(0, in_rows), out_rows, dim_size=num_out)
        return self._wrap(x, out, out_stride)


class AvgPool3d(_LocalPool):
    """Mean over the active inputs in each output's kernel window (MinkowskiAvgPooling)."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        in_rows, out_rows, num_out, out_stride = self._pairs(x)
        out = scatter_mean(x.feats.index_select(0, in_rows), out_rows, dim_size=num_out)
        return self._wrap(x, out, out_stride)


class GlobalAvgPool(nn.Module):
    """[B, C] mean of each batch entry's rows."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return scatter_mean(x.feats, x.coords[:, 0].long(), dim_size=x.batch_size())


class GlobalMaxPool(nn.Module):
    """[B, C] max of each batch entry's rows."""

    def forward(self, x: SparseTensor) -> torch.Tensor:
        return scatter_max(x.feats, x.coords[:, 0].long(), dim_size=x.batch_size())[0]
