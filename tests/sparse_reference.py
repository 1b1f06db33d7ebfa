"""Helpers shared by the sparse tests: random sparse grids and dense reference layouts.

How sparse semantics map to dense (the contract the tests check):
- a SparseTensor at tensor stride t is a dense grid with cell (b, x/t, y/t, z/t) holding its
  row and every inactive cell holding 0 (or -inf for max pooling);
- submanifold conv = dense conv3d, same-size output (odd kernel: padding dilation*(k//2) each
  side; even kernel: offsets 0..k-1, so padding dilation*(k-1) at the high end only),
  read at the active sites;
- strided conv = dense conv3d with the same padding and stride s, read at the output sites
  (input coords floored to multiples of s*t);
- transposed conv = dense conv_transpose3d(stride s, padding k//2 for odd k), read at the
  cached finer sites.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pcseg.sparse import SparseTensor


def random_coords(gen: torch.Generator, batch: int = 2, extent: int = 7, stride: int = 1,
                  density: float = 0.35) -> torch.Tensor:
    """int32 [M, 4] unique (b, x, y, z), in random row order, on a random subset of an
    extent^3 grid, multiples of stride."""
    cells = torch.stack(torch.meshgrid(*[torch.arange(extent)] * 3, indexing="ij"), -1).reshape(-1, 3)
    rows = []
    for b in range(batch):
        keep = torch.rand(len(cells), generator=gen) < density
        sel = cells[keep] * stride
        rows.append(torch.cat([torch.full((len(sel), 1), b), sel], 1))
    coords = torch.cat(rows).to(torch.int32)
    # Shuffled rows: nothing may assume coordinates arrive sorted.
    return coords[torch.randperm(len(coords), generator=gen)]


def random_tensor(gen: torch.Generator, channels: int, dtype=torch.float32, **kw) -> SparseTensor:
    coords = random_coords(gen, **kw)
    feats = torch.randn(len(coords), channels, generator=gen, dtype=dtype)
    return SparseTensor(feats, coords, stride=kw.get("stride", 1))


def dense_weight(weight: torch.Tensor, k: int) -> torch.Tensor:
    """[K, C_in, C_out] -> conv3d layout [C_out, C_in, k, k, k] (offset order x, y, z)."""
    return weight.reshape(k, k, k, weight.shape[1], weight.shape[2]).permute(4, 3, 0, 1, 2)


def pad_amounts(k: int, dilation: int) -> tuple[int, int]:
    """(low, high) dense padding that makes a sparse kernel's offsets a dense conv window."""
    if k % 2:
        return dilation * (k // 2), dilation * (k // 2)
    return 0, dilation * (k - 1)


def padded(grid: torch.Tensor, low: int, high: int, value: float = 0.0) -> torch.Tensor:
    return F.pad(grid, (low, high) * 3, value=value)


def at_sites(grid: torch.Tensor, coords: torch.Tensor, stride: int) -> torch.Tensor:
    """Rows [M, C] of a dense grid [B, C, X, Y, Z] at coords int [M, 4] of tensor stride `stride`."""
    c = coords.long()
    idx = c[:, 1:] // stride
    return grid[c[:, 0], :, idx[:, 0], idx[:, 1], idx[:, 2]]
