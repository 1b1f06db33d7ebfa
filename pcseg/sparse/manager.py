"""The coordinate manager: coordinate sets and kernel maps, built once and shared.

Every SparseTensor derived from one input shares one manager. It caches
- one `CoordinateSet` per tensor stride (strided sets are the finer set floored), and
- one `KernelMap` per (input stride, output stride, kernel size, dilation), reused by every
  layer with that geometry and by backward; a transposed conv reuses the matching
  down-sampling map with input and output swapped.

Maps on CPU are built by the native hash-table builder (`ops/kernel_map.cpp`) where the
native kernels load, elsewhere (CUDA, `PCSEG_SPARSE_BACKEND=torch`) by a binary search on the
sorted keys in PyTorch; both give the same pairs in the same order.
"""
from __future__ import annotations

import torch

from pcseg.sparse.conv_function import native_map_builder
from pcseg.sparse.coords import CoordinateSet, check_range, pack_offsets
from pcseg.sparse.kernel_map import KernelMap, centre_offset, kernel_offsets

MapKey = tuple[int, int, int, int]  # (fine stride, coarse stride, kernel size, dilation)


class CoordinateManager:
    """Coordinate sets per tensor stride and kernel maps, each computed once.

    `num_map_builds` counts kernel maps actually built (tests use it to check reuse).
    """

    def __init__(self) -> None:
        self._sets: dict[int, CoordinateSet] = {}
        self._maps: dict[MapKey, KernelMap] = {}
        self.num_map_builds = 0

    def strides(self) -> list[int]:
        return sorted(self._sets)

    def insert(self, coords: torch.Tensor, stride: int) -> CoordinateSet:
        """Register `coords` int32 [M, 4] at `stride`; an existing set must hold the same rows."""
        existing = self._sets.get(stride)
        if existing is not None:
            if coords is not existing.coords and not torch.equal(coords, existing.coords):
                raise ValueError(f"this manager already holds different coordinates at tensor stride {stride}")
            return existing
        self._sets[stride] = CoordinateSet(coords, stride)
        return self._sets[stride]

    def coordinates(self, stride: int) -> CoordinateSet:
        """The set at `stride`, derived (floored) from the nearest finer set if not cached."""
        if stride in self._sets:
            return self._sets[stride]
        finer = [s for s in self._sets if s < stride and stride % s == 0]
        if not finer:
            raise ValueError(
                f"no coordinates at tensor stride {stride} and none finer to derive them from "
                f"(cached strides: {self.strides()}); a transposed conv only upsamples onto "
                "coordinates an earlier layer produced"
            )
        self._sets[stride] = self._sets[max(finer)].coarsened(stride)
        return self._sets[stride]

    def kernel_map(self, in_stride: int, out_stride: int, kernel_size: int, dilation: int = 1) -> KernelMap:
        """Pairs from rows at `in_stride` to rows at `out_stride` (equal: submanifold; larger:
        strided down-sampling; smaller: transposed up-sampling, the down map reversed)."""
        if out_stride < in_stride:
            if in_stride % out_stride:
                raise ValueError(f"cannot upsample from stride {in_stride} to {out_stride}: not a divisor")
            down = self._map((out_stride, in_stride, kernel_size, dilation))
            return down.transposed(num_out=len(self.coordinates(out_stride)))
        if out_stride % in_stride:
            raise ValueError(f"cannot downsample from stride {in_stride} to {out_stride}: not a multiple")
        return self._map((in_stride, out_stride, kernel_size, dilation))

    def _map(self, key: MapKey) -> KernelMap:
        if key not in self._maps:
            self._maps[key] = self._build(*key)
            self.num_map_builds += 1
        return self._maps[key]

    def _build(self, fine_stride: int, coarse_stride: int, kernel_size: int, dilation: int) -> KernelMap:
        """For output (coarse) row o and offset d: input row i with c_in[i] = c_out[o] + d * dilation * fine_stride."""
        fine = self.coordinates(fine_stride)
        coarse = self.coordinates(coarse_stride)
        offsets = kernel_offsets(kernel_size) * (dilation * fine_stride)
        check_range(coarse.low + int(offsets.min()), coarse.high + int(offsets.max()))
        native = native_map_builder(fine.coords.device)
        if native is not None:
            in_rows, out_rows, offset_ptr = native.kernel_map(fine.keys, coarse.keys, pack_offsets(offsets))
        else:
            in_rows, out_rows, offset_ptr = _torch_pairs(fine, coarse, offsets, kernel_size, dilation * fine_stride,
                                                         dilation)
        identity = centre_offset(kernel_size) if fine_stride == coarse_stride else None
        return KernelMap(in_rows, out_rows, offset_ptr, len(coarse), identity)


def _torch_pairs(fine: CoordinateSet, coarse: CoordinateSet, offsets: torch.Tensor, k: int, step: int,
                 dilation: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(in_rows, out_rows, offset_ptr) of the map, by binary search on any device.

    One search per (dx, dy) column of the kernel instead of per offset: z is the key's lowest
    field, so the inputs at dz = 0 .. k-1 of a column are among the next (k - 1) * dilation + 1
    sorted keys from the column's lowest key on (coordinates at stride t are multiples of t, so
    each tap lies at most `dilation` keys after the last).
    """
    device = fine.coords.device
    # Column starts: offsets with iz = 0 (z is fastest in the offset order).
    base = coarse.sorted_keys.unsqueeze(0) + pack_offsets(offsets[::k]).to(device).unsqueeze(1)
    start = torch.searchsorted(fine.sorted_keys, base)  # [k*k, M_out], rows sorted: cache friendly
    n_in = len(fine)
    k_parts, out_parts, in_parts = [], [], []
    for j in range((k - 1) * dilation + 1):
        pos = start + j
        dz = fine.sorted_keys[pos.clamp(max=max(n_in - 1, 0))] - base
        hit = (pos < n_in) & (dz >= 0) & (dz <= (k - 1) * step) & (dz % step == 0)
        column, col_out = torch.nonzero(hit, as_tuple=True)
        k_parts.append(column * k + dz[column, col_out] // step)
        out_parts.append(coarse.order[col_out])
        in_parts.append(fine.order[pos[column, col_out]])
    # Sorted by offset (the KernelMap contract), then output row (local scatter-adds).
    k_idx, out_rows = torch.cat(k_parts), torch.cat(out_parts)
    sort = torch.argsort(k_idx * len(coarse) + out_rows)
    k_idx, in_rows, out_rows = k_idx[sort], torch.cat(in_parts)[sort], out_rows[sort]
    counts = torch.bincount(k_idx, minlength=len(offsets)).cpu()
    offset_ptr = torch.zeros(len(offsets) + 1, dtype=torch.int64)
    offset_ptr[1:] = torch.cumsum(counts, 0)
    return in_rows, out_rows, offset_ptr
