"""Coordinate hashing: (batch, x, y, z) packed into one int64 key, looked up by binary search.

A sorted key array plus `torch.searchsorted` is the hash table: it runs on CPU and CUDA alike,
and shifting every coordinate by a kernel offset is one integer add on the keys.
"""
from __future__ import annotations

import torch

BATCH_BITS = 11
COORD_BITS = 17
COORD_BIAS = 1 << (COORD_BITS - 1)
COORD_MIN = -COORD_BIAS
COORD_MAX = COORD_BIAS - 1
MAX_BATCH = (1 << BATCH_BITS) - 1


def pack_offsets(offsets: torch.Tensor) -> torch.Tensor:
    """int64 [K] key shift of each spatial offset int64 [K, 3] (valid while coords stay in range)."""
    return (offsets[:, 0] << (2 * COORD_BITS)) + (offsets[:, 1] << COORD_BITS) + offsets[:, 2]


def pack_keys(coords: torch.Tensor) -> torch.Tensor:
    """int64 [M] keys of int [M, 4] (batch, x, y, z) coordinates; raises if out of range."""
    if coords.dim() != 2 or coords.shape[1] != 4:
        raise ValueError(f"coords must be [M, 4] (batch, x, y, z), got {tuple(coords.shape)}")
    c = coords.to(torch.int64)
    if c.numel():
        check_range(c[:, 1:].amin().item(), c[:, 1:].amax().item())
        b_min, b_max = c[:, 0].amin().item(), c[:, 0].amax().item()
        if b_min < 0 or b_max > MAX_BATCH:
            raise ValueError(f"batch index must be in 0..{MAX_BATCH}, got {b_min}..{b_max}")
    return ((c[:, 0] << (3 * COORD_BITS)) + ((c[:, 1] + COORD_BIAS) << (2 * COORD_BITS))
            + ((c[:, 2] + COORD_BIAS) << COORD_BITS) + (c[:, 3] + COORD_BIAS))


def check_range(low: int, high: int) -> None:
    """Raise if integer coordinates low..high do not fit the key's fields."""
    if low < COORD_MIN or high > COORD_MAX:
        raise ValueError(
            f"voxel coordinates span {low}..{high}, outside the supported {COORD_MIN}..{COORD_MAX}: "
            "use a larger voxel size or recentre the scene"
        )


class CoordinateSet:
    """Unique coordinates at one tensor stride and their hash table.

    coords: int32 [M, 4] (batch, x, y, z), x/y/z multiples of `stride`; row order is the row
    order of every feature matrix on this set.
    """

    def __init__(self, coords: torch.Tensor, stride: int):
        if coords.dtype != torch.int32:
            raise ValueError(f"coords must be int32, got {coords.dtype}")
        self.coords = coords
        self.stride = stride
        keys = pack_keys(coords)
        self.sorted_keys, self.order = torch.sort(keys)
        if self.sorted_keys.numel() > 1 and bool((self.sorted_keys[1:] == self.sorted_keys[:-1]).any()):
            raise ValueError("coords contain duplicate (batch, x, y, z) rows; quantize points first")
        if coords.numel() and bool((torch.remainder(coords[:, 1:], stride) != 0).any()):
            raise ValueError(f"coords at tensor stride {stride} must be multiples of {stride}")
        self.keys = keys
        spatial = coords[:, 1:]
        self.low = int(spatial.amin().item()) if coords.numel() else 0
        self.high = int(spatial.amax().item()) if coords.numel() else 0

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    def lookup(self, keys: torch.Tensor) -> torch.Tensor:
        """int64 rows (same shape as `keys`) of each key in this set, -1 where absent."""
        if len(self) == 0:
            return torch.full_like(keys, -1)
        pos = torch.searchsorted(self.sorted_keys, keys).clamp_(max=len(self) - 1)
        found = self.sorted_keys[pos] == keys
        return torch.where(found, self.order[pos], torch.full_like(pos, -1))

    def coarsened(self, stride: int) -> "CoordinateSet":
        """The unique coordinates floored to multiples of `stride` (ME's strided output coords)."""
        spatial = torch.div(self.coords[:, 1:], stride, rounding_mode="floor") * stride
        coarse = torch.cat([self.coords[:, :1], spatial], dim=1)
        keys = pack_keys(coarse)
        # Unique in key order keeps rows sorted by (batch, x, y, z): deterministic on every device.
        _, first = _unique_first(keys)
        return CoordinateSet(coarse[first], stride)


def _unique_first(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted unique keys and, for each, the index of one row holding it."""
    unique_keys, inverse = torch.unique(keys, sorted=True, return_inverse=True)
    first = torch.full((unique_keys.numel(),), keys.numel(), dtype=torch.int64, device=keys.device)
    first.scatter_reduce_(0, inverse, torch.arange(keys.numel(), device=keys.device), "amin")
    return unique_keys, first
