"""SparseTensor, coordinate hashing, cat / dense / add and the errors users can hit."""
from __future__ import annotations

import pytest
import torch

from pcseg.sparse import BatchNorm, Conv3d, ConvTranspose3d, LeakyReLU, ReLU, SparseTensor, cat, conv_function
from pcseg.sparse.coords import CoordinateSet, pack_keys


@pytest.fixture(autouse=True)
def _seed_and_torch_backend(monkeypatch):
    # Layer parameters initialise from torch's global generator, as in every nn.Module; the
    # native kernels (maybe compiled on first use) are checked in tests/test_native.py.
    torch.manual_seed(0)
    monkeypatch.setenv(conv_function.ENV_VAR, "torch")

def test_lookup_finds_rows_and_misses():
    coords = torch.tensor([[0, 5, -3, 2], [1, 5, -3, 2], [0, 0, 0, 0]], dtype=torch.int32)
    s = CoordinateSet(coords, 1)
    query = pack_keys(torch.tensor([[0, 0, 0, 0], [1, 5, -3, 2], [0, 5, -3, 2], [2, 0, 0, 0]]))
    assert s.lookup(query).tolist() == [2, 1, 0, -1]


def test_coarsened_floors_negative_coordinates():
    coords = torch.tensor([[0, -1, 0, 0], [0, -2, 1, 1], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.int32)
    assert CoordinateSet(coords, 1).coarsened(2).coords.tolist() == [[0, -2, 0, 0], [0, 0, 0, 0]]


def test_dense_layout_and_cat_and_add():
    coords = torch.tensor([[0, 0, 2, 0], [1, 2, 0, 4]], dtype=torch.int32)
    x = SparseTensor(torch.tensor([[1.0], [2.0]]), coords, stride=2)
    grid = x.dense()
    assert grid.shape == (2, 1, 2, 2, 3)
    assert grid[0, 0, 0, 1, 0] == 1.0 and grid[1, 0, 1, 0, 2] == 2.0 and grid.sum() == 3.0
    y = cat(x, x.replace_feats(torch.tensor([[5.0], [6.0]])))
    assert y.feats.tolist() == [[1.0, 5.0], [2.0, 6.0]] and y.stride == 2
    assert (x + x).feats.tolist() == [[2.0], [4.0]]
    assert ReLU()(x.replace_feats(torch.tensor([[-1.0], [2.0]]))).feats.tolist() == [[0.0], [2.0]]
    assert LeakyReLU(0.5)(x.replace_feats(torch.tensor([[-1.0], [2.0]]))).feats.tolist() == [[-0.5], [2.0]]
    bn = BatchNorm(1).train()
    assert bn(x).feats.flatten().tolist() == pytest.approx([-1.0, 1.0], abs=1e-3)


def test_layers_do_not_modify_inputs():
    gen = torch.Generator().manual_seed(0)
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.int32)
    feats = torch.randn(2, 2, generator=gen)
    x = SparseTensor(feats.clone(), coords.clone())
    ReLU()(Conv3d(2, 2)(x))
    assert torch.equal(x.feats, feats) and torch.equal(x.coords, coords)


def test_errors_name_the_problem():
    coords = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.int32)
    with pytest.raises(ValueError, match="duplicate"):
        SparseTensor(torch.zeros(2, 1), coords)
    with pytest.raises(ValueError, match="multiples of 2"):
        SparseTensor(torch.zeros(1, 1), torch.tensor([[0, 1, 0, 0]], dtype=torch.int32), stride=2)
    a = SparseTensor(torch.zeros(1, 1), torch.tensor([[0, 0, 0, 0]], dtype=torch.int32))
    b = SparseTensor(torch.zeros(1, 1), torch.tensor([[0, 0, 0, 0]], dtype=torch.int32))
    with pytest.raises(ValueError, match="cat"):
        cat(a, b)
    with pytest.raises(ValueError, match="expects 3 channels"):
        Conv3d(3, 2)(a)
    coarse = SparseTensor(torch.zeros(1, 1), torch.tensor([[0, 0, 0, 0]], dtype=torch.int32), stride=2)
    with pytest.raises(ValueError, match="no coordinates at tensor stride 1"):
        ConvTranspose3d(1, 1)(coarse)
