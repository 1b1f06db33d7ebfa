"""Kernel maps: for each kernel offset, the (input row, output row) pairs of a sparse conv.

Offset order (fixed, shared by every backend and by the weight layout [K, C_in, C_out]):
offset index k = (ix * ks + iy) * ks + iz, i.e. x slowest, z fastest — the order of a dense
`conv3d` weight `w[:, :, ix, iy, iz]` flattened. Per axis the offsets (in units of
`dilation * input tensor stride`) are `-(ks // 2) .. ks // 2` for odd `ks` (centred) and
`0 .. ks - 1` for even `ks` (anchored at the output voxel's lower corner, so a kernel-2
stride-2 conv gathers exactly the 8 children of a coarse voxel).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class KernelMap:
    """Rows connected by each kernel offset.

    in_rows:     int64 [P] input row of each pair
    out_rows:    int64 [P] output row of each pair
    offset_ptr:  int64 [K + 1] on CPU; pairs of offset k are rows offset_ptr[k]:offset_ptr[k+1]
                 (pairs sorted by k; within one offset each in row and each out row appears
                 at most once)
    num_out:     number of output rows
    identity_offset: index k whose pairs are exactly (i, i) for every row i (the centre of an
                 odd submanifold kernel), so a backend may do a plain mm there; None otherwise
    """

    in_rows: torch.Tensor
    out_rows: torch.Tensor
    offset_ptr: torch.Tensor
    num_out: int
    identity_offset: int | None = None

    @property
    def num_offsets(self) -> int:
        return int(self.offset_ptr.numel()) - 1

    def bounds(self) -> list[tuple[int, int]]:
        """(start, end) pair-row range of each offset, as Python ints."""
        ptr = self.offset_ptr.tolist()
        return list(zip(ptr[:-1], ptr[1:]))

    def transposed(self, num_out: int) -> "KernelMap":
        """The same pairs with input and output swapped (transposed conv); `num_out` = rows of
        the new output (the old input)."""
        return KernelMap(self.out_rows, self.in_rows, self.offset_ptr, num_out, self.identity_offset)


def kernel_offsets(kernel_size: int, dimension: int = 3) -> torch.Tensor:
    """int64 [kernel_size**dimension, dimension] unit offsets in the documented order."""
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    start = -(kernel_size // 2) if kernel_size % 2 == 1 else 0
    axis = torch.arange(start, start + kernel_size, dtype=torch.int64)
    grids = torch.meshgrid(*([axis] * dimension), indexing="ij")
    return torch.stack([g.reshape(-1) for g in grids], dim=1)


def centre_offset(kernel_size: int, dimension: int = 3) -> int | None:
    """Index of the zero offset for odd kernels (the identity of a submanifold conv), else None."""
    if kernel_size % 2 == 0:
        return None
    return (kernel_size ** dimension) // 2
