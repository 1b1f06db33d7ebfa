"""Scatter and segment reductions on native PyTorch (a torch-scatter work-alike).

A *scatter* reduces the entries of `src` that share a group id in `index` along `dim`:

    out[..., g, ...] = reduce(src[..., i, ...] for i where index[i] == g)

`index` follows torch-scatter's broadcasting: a 1-D index of length `src.size(dim)` applies
to every slice along the other dims (the usual `[N, C]` features + `[N]` group ids case); an
index with more dims is aligned with `src` from the front and expanded over trailing dims.
`dim_size` is the number of groups (default `index.max() + 1`). Groups no element falls into
are *empty*: their sum, mean, max, min and std are 0, and their arg is `src.size(dim)`.
A group id outside 0..dim_size-1 raises ValueError on CPU (a device assert on CUDA).

A *segment* reduction takes the groups as contiguous runs given by `ptr` int64 [B + 1]
(`ptr[0] == 0`, non-decreasing, `ptr[-1] == src.size(dim)`), segment b being rows
`ptr[b]:ptr[b + 1]` — a batch's `offset` with a leading 0.

Everything is device-agnostic (CPU and CUDA) and differentiable in `src`; the gradient of
max/min flows to the winning (arg) element only, never split across ties.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "gather_csr",
    "ptr_to_index",
    "scatter_log_softmax",
    "scatter_max",
    "scatter_mean",
    "scatter_min",
    "scatter_softmax",
    "scatter_std",
    "scatter_sum",
    "segment_max_csr",
    "segment_mean_csr",
    "segment_min_csr",
    "segment_sum_csr",
]


def _normalize_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise IndexError(f"dim {dim} is out of range for src with {ndim} dims")
    return dim % ndim


def _broadcast_index(index: Tensor, src: Tensor, dim: int) -> Tensor:
    """`index` viewed (not copied) with `src`'s shape, torch-scatter style."""
    if index.dim() == 1:
        if index.numel() != src.size(dim):
            raise ValueError(
                f"index has {index.numel()} entries but src has {src.size(dim)} along dim {dim} "
                f"(src shape {tuple(src.shape)})"
            )
        index = index.reshape((1,) * dim + (-1,) + (1,) * (src.dim() - dim - 1))
    elif index.dim() <= src.dim():
        index = index.reshape(tuple(index.shape) + (1,) * (src.dim() - index.dim()))
    else:
        raise ValueError(f"index has {index.dim()} dims, more than src's {src.dim()}")
    try:
        return index.expand_as(src)
    except RuntimeError:
        raise ValueError(
            f"index shape {tuple(index.shape)} does not broadcast to src shape {tuple(src.shape)}"
        ) from None


def _prepare(src: Tensor, index: Tensor, dim: int, dim_size: int | None) -> tuple[Tensor, int, int, Tensor]:
    """Checked `(index as int64, dim >= 0, dim_size, broadcast index)` for a scatter call."""
    if src.dim() == 0:
        raise ValueError("src must have at least one dim")
    dim = _normalize_dim(dim, src.dim())
    if index.dtype not in (torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8):
        raise TypeError(f"index must hold integer group ids, got {index.dtype}")
    index = index.to(device=src.device, dtype=torch.int64)
    if dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() else 0
    # On CUDA the scatter kernels' own device assert catches a bad id; a host-side check
    # here would cost a synchronisation on every call.
    if index.device.type == "cpu" and index.numel():
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= dim_size:
            raise ValueError(f"index holds group ids {lo}..{hi}, expected 0..{dim_size - 1} (dim_size={dim_size})")
    return index, dim, dim_size, _broadcast_index(index, src, dim)


def _out_shape(src: Tensor, dim: int, dim_size: int) -> list[int]:
    shape = list(src.shape)
    shape[dim] = dim_size
    return shape


def _group_count(index: Tensor, index_b: Tensor, src: Tensor, dim: int, dim_size: int) -> Tensor:
    """Elements per group, int64, shaped to broadcast against the reduced output."""
    if index.dim() == 1:
        # One bincount instead of scattering a src-sized tensor of ones.
        count = torch.bincount(index, minlength=dim_size)
        return count.view((1,) * dim + (-1,) + (1,) * (src.dim() - dim - 1))
    ones = torch.ones((), dtype=torch.int64, device=src.device).expand_as(index_b)
    count = torch.zeros(_out_shape(src, dim, dim_size), dtype=torch.int64, device=src.device)
    return count.scatter_add(dim, index_b, ones)


def _divide(total: Tensor, count: Tensor) -> Tensor:
    count = count.clamp(min=1)
    if total.is_floating_point() or total.is_complex():
        return total / count.to(total.dtype)
    return torch.div(total, count, rounding_mode="floor")


def scatter_sum(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Sum of each group.

    src: [..., N, ...] any dtype with N at `dim`; index: int [N] or broadcastable to src.
    Returns [..., dim_size, ...] of src's dtype; empty groups are 0.
    """
    _, dim, dim_size, index_b = _prepare(src, index, dim, dim_size)
    out = torch.zeros(_out_shape(src, dim, dim_size), dtype=src.dtype, device=src.device)
    return out.scatter_add(dim, index_b, src)


def scatter_mean(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Mean of each group (floor division for integer src, as torch-scatter).

    src: [..., N, ...]; index: int [N] or broadcastable to src.
    Returns [..., dim_size, ...] of src's dtype; empty groups are 0.
    """
    index, dim, dim_size, index_b = _prepare(src, index, dim, dim_size)
    out = torch.zeros(_out_shape(src, dim, dim_size), dtype=src.dtype, device=src.device)
    total = out.scatter_add(dim, index_b, src)
    return _divide(total, _group_count(index, index_b, src, dim, dim_size))


def _scatter_arg_extreme(
    src: Tensor, index: Tensor, dim: int, dim_size: int | None, reduce: str
) -> tuple[Tensor, Tensor]:
    index, dim, dim_size, index_b = _prepare(src, index, dim, dim_size)
    shape = _out_shape(src, dim, dim_size)
    n = src.size(dim)
    if n == 0:
        # Every group is empty; scattering the empty src keeps the result in src's graph.
        values = torch.zeros(shape, dtype=src.dtype, device=src.device).scatter_add(dim, index_b, src)
        return values, torch.full(shape, n, dtype=torch.int64, device=src.device)
    data = src.detach()
    # include_self=False leaves the zero fill in place only for empty groups.
    best = torch.zeros(shape, dtype=src.dtype, device=src.device).scatter_reduce(
        dim, index_b, data, reduce, include_self=False
    )
    best_at_src = best.gather(dim, index_b)
    wins = data == best_at_src
    # NaN propagates, so a NaN wins its group; checking the small output first spares two
    # src-sized passes in the usual NaN-free case.
    if data.is_floating_point() and bool(torch.isnan(best).any()):
        wins |= torch.isnan(data) & torch.isnan(best_at_src)
    # Positions travel as floats (exact below 2**24 in float32, 2**53 in float64) because
    # PyTorch's CPU scatter_reduce is several times faster on floats than on int64.
    position_dtype = torch.float32 if n <= 2**24 else torch.float64
    position = torch.arange(n, dtype=position_dtype, device=src.device)
    position = position.view((1,) * dim + (-1,) + (1,) * (src.dim() - dim - 1))
    candidate = torch.where(wins, position, float(n))
    # Ties go to the first winner; losers and empty groups keep the fill value n.
    arg = torch.full(shape, float(n), dtype=position_dtype, device=src.device).scatter_reduce(
        dim, index_b, candidate, "amin", include_self=True
    )
    arg = arg.long()
    if not (src.requires_grad and torch.is_grad_enabled()):
        return best, arg
    # Re-reading the winners through gather routes the gradient to the arg element only.
    empty = arg == n
    values = src.gather(dim, arg.clamp(max=n - 1))
    return values.masked_fill(empty, 0), arg


def scatter_max(
    src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Maximum of each group and where it is.

    src: [..., N, ...]; index: int [N] or broadcastable to src.
    Returns (values [..., dim_size, ...] of src's dtype, arg int64 [..., dim_size, ...]):
    arg is the position along `dim` in src of the maximum (the first one on ties; a NaN beats
    any number); empty groups get value 0 and arg N. Gradients flow to the arg element only.
    """
    return _scatter_arg_extreme(src, index, dim, dim_size, "amax")


def scatter_min(
    src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Minimum of each group and where it is; see `scatter_max` for shapes and conventions."""
    return _scatter_arg_extreme(src, index, dim, dim_size, "amin")


def _group_max_at_src(src: Tensor, index_b: Tensor, dim: int, dim_size: int) -> Tensor:
    """Each element's group maximum, detached: a shift for stable exp that cancels exactly."""
    data = src.detach()
    best = torch.zeros(_out_shape(src, dim, dim_size), dtype=src.dtype, device=src.device).scatter_reduce(
        dim, index_b, data, "amax", include_self=False
    )
    return best.gather(dim, index_b)


def _check_floating(src: Tensor, name: str) -> None:
    if not src.is_floating_point():
        raise TypeError(f"{name} needs floating-point src, got {src.dtype}")


def scatter_softmax(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Softmax over the elements of each group, numerically stable.

    src: float [..., N, ...]; index: int [N] or broadcastable to src.
    Returns src's shape and dtype: each group's entries are non-negative and sum to 1 (a group
    of only -inf gives NaN, as torch.softmax does).
    """
    _check_floating(src, "scatter_softmax")
    _, dim, dim_size, index_b = _prepare(src, index, dim, dim_size)
    exp = (src - _group_max_at_src(src, index_b, dim, dim_size)).exp()
    total = torch.zeros(_out_shape(src, dim, dim_size), dtype=src.dtype, device=src.device)
    total = total.scatter_add(dim, index_b, exp)
    return exp / total.gather(dim, index_b)


def scatter_log_softmax(src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None) -> Tensor:
    """Log of `scatter_softmax`, computed without forming the softmax (no log(0) underflow).

    src: float [..., N, ...]; index: int [N] or broadcastable to src. Returns src's shape.
    """
    _check_floating(src, "scatter_log_softmax")
    _, dim, dim_size, index_b = _prepare(src, index, dim, dim_size)
    shifted = src - _group_max_at_src(src, index_b, dim, dim_size)
    total = torch.zeros(_out_shape(src, dim, dim_size), dtype=src.dtype, device=src.device)
    total = total.scatter_add(dim, index_b, shifted.exp())
    return shifted - total.log().gather(dim, index_b)


def scatter_std(
    src: Tensor, index: Tensor, dim: int = 0, dim_size: int | None = None, unbiased: bool = True
) -> Tensor:
    """Standard deviation of each group.

    src: float [..., N, ...]; index: int [N] or broadcastable to src.
    unbiased: divide by (count - 1) instead of count.
    Returns [..., dim_size, ...]; groups with too few elements (0, or 1 when unbiased) are 0,
    as in torch-scatter. The gradient of a zero std is 0, not NaN.
    """
    _check_floating(src, "scatter_std")
    index, dim, dim_size, index_b = _prepare(src, index, dim, dim_size)
    zeros = torch.zeros(_out_shape(src, dim, dim_size), dtype=src.dtype, device=src.device)
    count = _group_count(index, index_b, src, dim, dim_size)
    mean = zeros.scatter_add(dim, index_b, src) / count.clamp(min=1).to(src.dtype)
    centred = src - mean.gather(dim, index_b)
    square_sum = zeros.scatter_add(dim, index_b, centred * centred)
    var = square_sum / (count - int(unbiased)).clamp(min=1).to(src.dtype)
    var = var.masked_fill(count <= int(unbiased), 0)
    # sqrt'(0) is infinite; taking the root of 1 there keeps zero-variance gradients finite.
    positive = var > 0
    return torch.where(positive, torch.where(positive, var, 1).sqrt(), 0)


def _check_ptr(ptr: Tensor, size: int) -> Tensor:
    if ptr.dim() != 1 or ptr.numel() == 0:
        raise ValueError(f"ptr must be a 1-D tensor [B + 1], got shape {tuple(ptr.shape)}")
    if ptr.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"ptr must be int64 or int32, got {ptr.dtype}")
    ptr = ptr.long()
    first, last = int(ptr[0]), int(ptr[-1])
    if first != 0 or last != size or bool((ptr[1:] < ptr[:-1]).any()):
        raise ValueError(
            f"ptr must start at 0, never decrease and end at src.size(dim)={size}; got {first}..{last}"
        )
    return ptr


def _index_from_checked_ptr(ptr: Tensor) -> Tensor:
    counts = ptr.diff()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=ptr.device), counts)


def ptr_to_index(ptr: Tensor) -> Tensor:
    """Segment id of every row: ptr int [B + 1] -> int64 [ptr[-1]] (e.g. [0,2,2,3] -> [0,0,2])."""
    last = int(ptr[-1]) if ptr.dim() == 1 and ptr.numel() else 0
    return _index_from_checked_ptr(_check_ptr(ptr, last))


def _segment_index(src: Tensor, ptr: Tensor, dim: int) -> tuple[Tensor, int]:
    if src.dim() == 0:
        raise ValueError("src must have at least one dim")
    dim = _normalize_dim(dim, src.dim())
    ptr = _check_ptr(ptr.to(src.device), src.size(dim))
    return _index_from_checked_ptr(ptr), ptr.numel() - 1


def segment_sum_csr(src: Tensor, ptr: Tensor, dim: int = 0) -> Tensor:
    """Sum of each segment: src [..., N, ...], ptr int [B + 1] -> [..., B, ...]; empty segments are 0."""
    index, num_segments = _segment_index(src, ptr, dim)
    return scatter_sum(src, index, dim, num_segments)


def segment_mean_csr(src: Tensor, ptr: Tensor, dim: int = 0) -> Tensor:
    """Mean of each segment: src [..., N, ...], ptr int [B + 1] -> [..., B, ...]; empty segments are 0."""
    index, num_segments = _segment_index(src, ptr, dim)
    return scatter_mean(src, index, dim, num_segments)


def segment_max_csr(src: Tensor, ptr: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """Maximum of each segment and its row: ([..., B, ...], arg int64 [..., B, ...]); see `scatter_max`."""
    index, num_segments = _segment_index(src, ptr, dim)
    return scatter_max(src, index, dim, num_segments)


def segment_min_csr(src: Tensor, ptr: Tensor, dim: int = 0) -> tuple[Tensor, Tensor]:
    """Minimum of each segment and its row: ([..., B, ...], arg int64 [..., B, ...]); see `scatter_min`."""
    index, num_segments = _segment_index(src, ptr, dim)
    return scatter_min(src, index, dim, num_segments)


def gather_csr(src: Tensor, ptr: Tensor, dim: int = 0) -> Tensor:
    """Per-segment values copied back to every row: src [..., B, ...], ptr int [B + 1] -> [..., ptr[-1], ...].

    The inverse of a segment reduction's shape change (e.g. subtract each scene's mean).
    """
    if src.dim() == 0:
        raise ValueError("src must have at least one dim")
    dim = _normalize_dim(dim, src.dim())
    ptr = ptr.to(src.device)
    if ptr.dim() != 1 or ptr.numel() != src.size(dim) + 1:
        raise ValueError(f"ptr must have src.size(dim) + 1 = {src.size(dim) + 1} entries, got shape {tuple(ptr.shape)}")
    return src.index_select(dim, ptr_to_index(ptr))
