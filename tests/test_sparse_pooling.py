"""Sparse pooling against dense max_pool3d / avg_pool3d, and global pools against loops.

Dense mapping: max pooling = dense max_pool3d with inactive cells -inf; sparse average =
mean over ACTIVE inputs only (MinkowskiAvgPooling) = dense avg_pool3d(feats) / avg_pool3d(mask).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pcseg.sparse import AvgPool3d, GlobalAvgPool, GlobalMaxPool, MaxPool3d, SparseTensor
from sparse_reference import at_sites, pad_amounts, padded, random_tensor

TOL = dict(atol=1e-5, rtol=1e-5)


def _mask(x: SparseTensor) -> torch.Tensor:
    return x.replace_feats(torch.ones(len(x), 1)).dense()


@pytest.mark.parametrize("tensor_stride", [1, 2, 4])
@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 2), (3, 1)])
def test_max_pool_equals_dense(tensor_stride, kernel_size, stride):
    gen = torch.Generator().manual_seed(tensor_stride * 10 + kernel_size + stride)
    x = random_tensor(gen, 3, stride=tensor_stride)
    y = MaxPool3d(kernel_size, stride)(x)
    grid = x.dense().masked_fill(_mask(x) == 0, float("-inf"))
    low, high = pad_amounts(kernel_size, 1)
    ref = F.max_pool3d(padded(grid, low, high + kernel_size, float("-inf")), kernel_size, stride)
    assert y.stride == tensor_stride * stride
    torch.testing.assert_close(y.feats, at_sites(ref, y.coords, y.stride), **TOL)


@pytest.mark.parametrize("tensor_stride", [1, 2, 4])
@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 2), (3, 1)])
def test_avg_pool_equals_dense(tensor_stride, kernel_size, stride):
    gen = torch.Generator().manual_seed(tensor_stride * 10 + kernel_size + stride + 50)
    x = random_tensor(gen, 3, stride=tensor_stride)
    y = AvgPool3d(kernel_size, stride)(x)
    low, high = pad_amounts(kernel_size, 1)

    def pool(grid):
        return F.avg_pool3d(padded(grid, low, high + kernel_size), kernel_size, stride)

    ref = pool(x.dense()) / pool(_mask(x)).clamp(min=1e-12)
    torch.testing.assert_close(y.feats, at_sites(ref, y.coords, y.stride), **TOL)


def test_global_pools_per_batch_entry():
    coords = torch.tensor([[0, 0, 0, 0], [1, 2, 0, 0], [0, 1, 0, 0], [1, 0, 5, 0], [1, 0, 0, 1]], dtype=torch.int32)
    feats = torch.tensor([[1.0, -1.0], [2.0, 2.0], [3.0, -5.0], [4.0, 3.0], [-6.0, 1.0]])
    x = SparseTensor(feats, coords)
    assert GlobalAvgPool()(x).tolist() == [[2.0, -3.0], [0.0, 2.0]]
    assert GlobalMaxPool()(x).tolist() == [[3.0, -1.0], [4.0, 3.0]]


@pytest.mark.parametrize("layer", [MaxPool3d(2, 2), AvgPool3d(3, 2), MaxPool3d(3, 1)])
def test_pool_gradcheck(layer):
    gen = torch.Generator().manual_seed(5)
    x = random_tensor(gen, 2, extent=4, dtype=torch.float64)

    def fn(feats):
        return layer(x.replace_feats(feats)).feats

    assert torch.autograd.gradcheck(fn, (x.feats.clone().requires_grad_(),))
