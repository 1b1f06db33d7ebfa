"""Sparse convolution layers (MinkowskiEngine semantics).

Conv3d, stride 1: submanifold — output coords = input coords, at any tensor stride.
Conv3d, stride s > 1: output coords = input coords floored to multiples of s * tensor stride.
ConvTranspose3d: up-sampling onto the cached finer coordinates (never generates new ones).
Kernel offsets are in units of dilation * input tensor stride; weight is [K, C_in, C_out]
with K = kernel_size**3 in the order of `pcseg.sparse.kernel_map`.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from pcseg.sparse.conv_function import sparse_conv
from pcseg.sparse.tensor import SparseTensor


class _ConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 dilation: int, bias: bool):
        super().__init__()
        if stride < 1 or dilation < 1:
            raise ValueError(f"stride and dilation must be >= 1, got {stride}, {dilation}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.weight = nn.Parameter(torch.empty(kernel_size ** 3, in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # MinkowskiEngine's default: uniform(+-1/sqrt(fan_in)), fan_in = C_in * K.
        bound = 1.0 / math.sqrt(self.in_channels * self.weight.shape[0])
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def _apply_conv(self, x: SparseTensor, out_stride: int) -> SparseTensor:
        if x.feats.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects {self.in_channels} channels, got {x.feats.shape[1]}")
        kmap = x.manager.kernel_map(x.stride, out_stride, self.kernel_size, self.dilation)
        out = sparse_conv(x.feats, self.weight, kmap)
        if self.bias is not None:
            out = out + self.bias
        return SparseTensor(out, x.manager.coordinates(out_stride).coords, out_stride, x.manager)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, dilation={self.dilation}, bias={self.bias is not None}")


class Conv3d(_ConvBase):
    """Sparse 3D conv: submanifold at stride 1, strided down-sampling otherwise."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 dilation: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return self._apply_conv(x, x.stride * self.stride)


class ConvTranspose3d(_ConvBase):
    """Sparse transposed conv from tensor stride t to t / stride, onto the cached finer coords.

    Equals dense `conv_transpose3d(stride, padding=kernel_size // 2 for odd kernels else 0)`
    evaluated at the finer active sites.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 2, stride: int = 2,
                 dilation: int = 1, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride, dilation, bias)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.stride % self.stride:
            raise ValueError(f"cannot upsample tensor stride {x.stride} by {self.stride}")
        return self._apply_conv(x, x.stride // self.stride)
