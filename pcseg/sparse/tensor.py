"""SparseTensor: features on unique integer coordinates at one tensor stride."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from pcseg.sparse.manager import CoordinateManager


class SparseTensor:
    """feats [M, C] on coords int32 [M, 4] = (batch, x, y, z), x/y/z multiples of `stride`.

    Every tensor derived from one input by pcseg.sparse layers shares its `manager`, which
    caches coordinate sets and kernel maps. Immutable in spirit: layers return new tensors.
    Aliases for MinkowskiEngine users: `F` = feats, `C` = coords, `tensor_stride` = stride.
    """

    def __init__(self, feats: torch.Tensor, coords: torch.Tensor, stride: int = 1,
                 manager: CoordinateManager | None = None):
        if feats.dim() != 2 or feats.shape[0] != coords.shape[0]:
            raise ValueError(f"feats must be [M={coords.shape[0]}, C], got {tuple(feats.shape)}")
        if feats.device != coords.device:
            raise ValueError(f"feats on {feats.device} but coords on {coords.device}")
        self.manager = manager if manager is not None else CoordinateManager()
        self._set = self.manager.insert(coords, stride)
        self.feats = feats
        self.stride = stride

    @property
    def coords(self) -> torch.Tensor:
        return self._set.coords

    @property
    def F(self) -> torch.Tensor:  # noqa: N802 - MinkowskiEngine name
        return self.feats

    @property
    def C(self) -> torch.Tensor:  # noqa: N802 - MinkowskiEngine name
        return self.coords

    @property
    def tensor_stride(self) -> int:
        return self.stride

    @property
    def device(self) -> torch.device:
        return self.feats.device

    def __len__(self) -> int:
        return int(self.feats.shape[0])

    def __repr__(self) -> str:
        return f"SparseTensor(rows={len(self)}, channels={self.feats.shape[1]}, stride={self.stride})"

    def replace_feats(self, feats: torch.Tensor) -> "SparseTensor":
        """A tensor with `feats` [M, C'] on these coordinates (same manager)."""
        return SparseTensor(feats, self.coords, self.stride, self.manager)

    def same_coordinates(self, other: "SparseTensor") -> bool:
        return self.manager is other.manager and self.stride == other.stride

    def __add__(self, other: "SparseTensor") -> "SparseTensor":
        if not self.same_coordinates(other):
            raise ValueError(f"cannot add tensors on different coordinates ({self!r} + {other!r})")
        return self.replace_feats(self.feats + other.feats)

    def slice(self, inverse: torch.Tensor) -> torch.Tensor:
        """Per-point features [N, C] from the point -> voxel map `inverse` int64 [N] of `quantize`."""
        return self.feats.index_select(0, inverse)

    to_points = slice

    def batch_size(self) -> int:
        return int(self.coords[:, 0].max().item()) + 1 if len(self) else 0

    def dense(self, shape: Sequence[int] | None = None,
              min_coordinate: Sequence[int] = (0, 0, 0)) -> torch.Tensor:
        """Dense grid [B, C, X, Y, Z]: row r lands at (coords[r, 1:] - min_coordinate) / stride.

        `shape` (X, Y, Z) defaults to the smallest grid holding every row; empty cells are 0.
        """
        origin = torch.as_tensor(list(min_coordinate), dtype=torch.int64, device=self.device)
        idx = (self.coords[:, 1:].to(torch.int64) - origin)
        if bool((idx < 0).any()) or bool((idx % self.stride != 0).any()):
            raise ValueError(f"dense(): coords must be >= min_coordinate {tuple(min_coordinate)} "
                             f"and on the stride-{self.stride} lattice from it")
        idx = idx // self.stride
        if shape is None:
            shape = (idx.amax(0) + 1).tolist() if len(self) else [0, 0, 0]
        grid = self.feats.new_zeros((self.batch_size(), self.feats.shape[1], *shape))
        b = self.coords[:, 0].long()
        grid[b, :, idx[:, 0], idx[:, 1], idx[:, 2]] = self.feats
        return grid
