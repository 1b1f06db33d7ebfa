"""pcseg.scatter against tiny hand-made cases, a Python-loop reference, gradcheck and torch-scatter."""
from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from pcseg.scatter import (
    gather_csr,
    ptr_to_index,
    scatter_log_softmax,
    scatter_max,
    scatter_mean,
    scatter_min,
    scatter_softmax,
    scatter_std,
    scatter_sum,
    segment_max_csr,
    segment_mean_csr,
    segment_min_csr,
    segment_sum_csr,
)

HAS_TORCH_SCATTER = importlib.util.find_spec("torch_scatter") is not None
needs_torch_scatter = pytest.mark.skipif(
    not HAS_TORCH_SCATTER, reason="torch-scatter is not installed (optional comparison peer)"
)
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# ---------------------------------------------------------------------------------------------
# Python-loop reference: walk every element of src, find its output cell, reduce the lists.


def _groups(src: torch.Tensor, index: torch.Tensor, dim: int, dim_size: int) -> dict:
    """out cell -> list of (value, position along dim) in src order, for every non-empty cell."""
    dim = dim % src.dim()
    if index.dim() == 1:
        shape = [1] * src.dim()
        shape[dim] = -1
        index = index.view(shape)
    else:
        index = index.view(tuple(index.shape) + (1,) * (src.dim() - index.dim()))
    index = index.expand_as(src)
    cells: dict = {}
    for pos in itertools.product(*(range(s) for s in src.shape)):
        cell = list(pos)
        cell[dim] = int(index[pos])
        assert 0 <= cell[dim] < dim_size
        cells.setdefault(tuple(cell), []).append((src[pos].item(), pos[dim]))
    return cells


def _out_cells(src: torch.Tensor, dim: int, dim_size: int):
    shape = list(src.shape)
    shape[dim % src.dim()] = dim_size
    return shape, itertools.product(*(range(s) for s in shape))


def reference_reduce(src, index, dim, dim_size, reduce):
    """Reduced values (and args for max/min) by plain Python over the cells."""
    cells = _groups(src, index, dim, dim_size)
    shape, positions = _out_cells(src, dim, dim_size)
    values = torch.zeros(shape, dtype=torch.float64)
    args = torch.full(shape, src.shape[dim], dtype=torch.int64)
    for cell in positions:
        items = cells.get(cell, [])
        if not items:
            continue
        vals = [v for v, _ in items]
        if reduce == "sum":
            values[cell] = sum(vals)
        elif reduce == "mean":
            values[cell] = sum(vals) / len(vals)
        elif reduce in ("max", "min"):
            best = max(vals) if reduce == "max" else min(vals)
            values[cell] = best
            args[cell] = min(p for v, p in items if v == best)  # first winner on ties
        elif reduce in ("std", "std_biased"):
            ddof = 1 if reduce == "std" else 0
            if len(vals) > ddof:
                mean = sum(vals) / len(vals)
                values[cell] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - ddof))
    return values, args


def reference_softmax(src, index, dim, dim_size, log=False):
    cells = _groups(src, index, dim, dim_size)
    out = torch.zeros(src.shape, dtype=torch.float64)
    d = dim % src.dim()
    for cell, items in cells.items():
        norm = sum(math.exp(v) for v, _ in items)
        for v, p in items:
            pos = list(cell)
            pos[d] = p
            out[tuple(pos)] = (v - math.log(norm)) if log else math.exp(v) / norm
    return out


# (src shape, dim, index shape: None = 1-D along dim)
CASES = [
    ((20,), 0, None),
    ((17, 3), 0, None),
    ((4, 15, 2), 1, None),
    ((4, 15, 2), -2, None),
    ((3, 2, 11), 2, None),
    ((6, 7), 1, (6, 7)),  # index as big as src
    ((5, 8, 3), 1, (5, 8)),  # index broadcast over the trailing feature dim
]


def _case(shape, dim, index_shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    n = shape[dim]
    dim_size = 6  # ids are drawn from 0..3, so groups 4 and 5 are always empty
    ishape = (n,) if index_shape is None else index_shape
    index = torch.randint(0, 4, ishape, generator=gen)
    return src, index, dim_size


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim,index_shape", CASES)
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min", "std", "std_biased"])
def test_reductions_match_loop_reference(shape, dim, index_shape, dtype, reduce):
    src, index, dim_size = _case(shape, dim, index_shape, dtype, seed=len(shape) * 10 + dim)
    src_before, index_before = src.clone(), index.clone()
    ref_values, ref_args = reference_reduce(src, index, dim, dim_size, reduce)
    if reduce in ("max", "min"):
        values, args = (scatter_max if reduce == "max" else scatter_min)(src, index, dim, dim_size)
        assert torch.equal(args, ref_args)
    elif reduce == "std_biased":
        values = scatter_std(src, index, dim, dim_size, unbiased=False)
    else:
        fn = {"sum": scatter_sum, "mean": scatter_mean, "std": scatter_std}[reduce]
        values = fn(src, index, dim, dim_size)
    assert values.dtype == dtype and list(values.shape) == list(ref_values.shape)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(values.double(), ref_values, atol=tol, rtol=tol)
    assert torch.equal(src, src_before) and torch.equal(index, index_before)  # inputs untouched


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim,index_shape", CASES)
@pytest.mark.parametrize("log", [False, True])
def test_softmax_matches_loop_reference(shape, dim, index_shape, dtype, log):
    src, index, dim_size = _case(shape, dim, index_shape, dtype, seed=7 + dim)
    fn = scatter_log_softmax if log else scatter_softmax
    out = fn(src, index, dim)
    assert out.dtype == dtype and out.shape == src.shape
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.double(), reference_softmax(src, index, dim, dim_size, log), atol=tol, rtol=tol)


# ---------------------------------------------------------------------------------------------
# Exact tiny cases.


def test_scatter_max_min_hand_built():
    src = torch.tensor([1.0, 5, 2, 4])
    index = torch.tensor([0, 0, 2, 2])
    values, args = scatter_max(src, index, dim_size=4)
    assert values.tolist() == [5, 0, 4, 0] and args.tolist() == [1, 4, 3, 4]
    values, args = scatter_min(src, index, dim_size=4)
    assert values.tolist() == [1, 0, 2, 0] and args.tolist() == [0, 4, 2, 4]


def test_scatter_sum_mean_std_hand_built():
    src = torch.tensor([[1.0, 10], [3, 30], [5, 50], [7, 70]], dtype=torch.float64)
    index = torch.tensor([1, 1, 0, 1])
    assert scatter_sum(src, index).tolist() == [[5, 50], [11, 110]]
    assert scatter_mean(src, index, dim_size=3).tolist() == [[5, 50], [11 / 3, 110 / 3], [0, 0]]
    # group 1 = {1, 3, 7}: mean 11/3, squared deviations sum 56/3
    std = scatter_std(src[:, :1], index, dim_size=3)
    torch.testing.assert_close(std, torch.tensor([[0.0], [math.sqrt(28 / 3)], [0.0]], dtype=torch.float64))
    std = scatter_std(src[:, :1], index, unbiased=False)
    torch.testing.assert_close(std, torch.tensor([[0.0], [math.sqrt(56 / 9)]], dtype=torch.float64))


def test_scatter_along_dim1_hand_built():
    src = torch.tensor([[1.0, 2, 3, 4], [5, 6, 7, 8]])
    index = torch.tensor([0, 1, 0, 1])
    assert scatter_sum(src, index, dim=1).tolist() == [[4, 6], [12, 14]]
    values, args = scatter_max(src, index, dim=-1)
    assert values.tolist() == [[3, 4], [7, 8]] and args.tolist() == [[2, 3], [2, 3]]


def test_softmax_hand_built():
    src = torch.tensor([0.0, math.log(3.0), 5.0])
    index = torch.tensor([0, 0, 1])
    torch.testing.assert_close(scatter_softmax(src, index), torch.tensor([0.25, 0.75, 1.0]))
    torch.testing.assert_close(
        scatter_log_softmax(src, index), torch.tensor([math.log(0.25), math.log(0.75), 0.0])
    )


def test_softmax_is_stable_for_huge_logits():
    src = torch.tensor([1000.0, 1000.0, -1000.0, -1001.0], dtype=torch.float32)
    index = torch.tensor([0, 0, 1, 1])
    expected_second = 1 / (1 + math.e)
    torch.testing.assert_close(
        scatter_softmax(src, index), torch.tensor([0.5, 0.5, 1 - expected_second, expected_second])
    )
    log = scatter_log_softmax(torch.tensor([0.0, -200.0]), torch.tensor([0, 0]))
    assert torch.isfinite(log).all() and abs(log[1].item() + 200.0) < 1e-4


def test_ties_pick_first_and_gradient_goes_to_arg_only():
    src = torch.tensor([3.0, 1.0, 3.0, 2.0, 2.0], requires_grad=True)
    index = torch.tensor([0, 0, 0, 1, 1])
    values, args = scatter_max(src, index)
    assert values.tolist() == [3, 2] and args.tolist() == [0, 3]
    (values * torch.tensor([10.0, 100.0])).sum().backward()
    assert src.grad.tolist() == [10, 0, 0, 100, 0]
    src.grad = None
    values, args = scatter_min(src, index, dim_size=3)
    assert args.tolist() == [1, 3, 5]
    values.sum().backward()
    assert src.grad.tolist() == [0, 1, 0, 1, 0]


def test_integer_src():
    src = torch.tensor([7, 2, 9, 4, -3])
    index = torch.tensor([0, 0, 1, 1, 3])
    assert scatter_sum(src, index).tolist() == [9, 13, 0, -3]
    assert scatter_mean(src, index).tolist() == [4, 6, 0, -3]  # floor division, as torch-scatter
    values, args = scatter_max(src, index)
    assert values.dtype == torch.int64 and values.tolist() == [7, 9, 0, -3] and args.tolist() == [0, 2, 5, 4]


def test_nan_propagates_to_max():
    values, args = scatter_max(torch.tensor([1.0, float("nan"), 2.0]), torch.tensor([0, 0, 0]))
    assert math.isnan(values.item()) and args.tolist() == [1]


# ---------------------------------------------------------------------------------------------
# Empty groups and empty input.


@pytest.mark.parametrize("dim_size", [None, 3])
def test_empty_src(dim_size):
    src = torch.zeros(0, 4)
    index = torch.zeros(0, dtype=torch.int64)
    groups = dim_size or 0
    assert scatter_sum(src, index, dim_size=dim_size).shape == (groups, 4)
    assert torch.equal(scatter_mean(src, index, dim_size=dim_size), torch.zeros(groups, 4))
    assert torch.equal(scatter_std(src, index, dim_size=dim_size), torch.zeros(groups, 4))
    for fn in (scatter_max, scatter_min):
        values, args = fn(src, index, dim_size=dim_size)
        assert torch.equal(values, torch.zeros(groups, 4))
        assert torch.equal(args, torch.zeros(groups, 4, dtype=torch.int64))
    assert scatter_softmax(src, index, dim_size=dim_size).shape == (0, 4)
    assert scatter_log_softmax(src, index).shape == (0, 4)
    assert segment_sum_csr(src, torch.tensor([0, 0])).tolist() == [[0.0] * 4]


def test_empty_src_with_grad():
    src = torch.zeros(0, 2, requires_grad=True)
    values, args = scatter_max(src, torch.zeros(0, dtype=torch.int64), dim_size=2)
    values.sum().backward()
    assert src.grad.shape == (0, 2) and args.tolist() == [[0, 0], [0, 0]]


# ---------------------------------------------------------------------------------------------
# Gradients.


def _distinct(shape, seed):
    """float64 values with no ties (a shuffled grid), so max/min are differentiable."""
    gen = torch.Generator().manual_seed(seed)
    n = math.prod(shape)
    return (torch.randperm(n, generator=gen).double() / n + 0.1).view(shape).requires_grad_()


@pytest.mark.parametrize(
    "fn",
    [
        scatter_sum,
        scatter_mean,
        lambda s, i, d, n: scatter_max(s, i, d, n)[0],
        lambda s, i, d, n: scatter_min(s, i, d, n)[0],
        scatter_softmax,
        scatter_log_softmax,
        scatter_std,
        lambda s, i, d, n: scatter_std(s, i, d, n, unbiased=False),
    ],
    ids=["sum", "mean", "max", "min", "softmax", "log_softmax", "std", "std_biased"],
)
@pytest.mark.parametrize("dim", [0, 1])
def test_gradcheck(fn, dim):
    src = _distinct((9, 4), seed=dim)
    index = torch.tensor([0, 2, 0, 2, 2, 4, 0, 4, 3])[: src.shape[dim]]  # groups 1, 5 empty; 3 single
    assert torch.autograd.gradcheck(lambda s: fn(s, index, dim, 6), (src,))


def test_std_gradient_of_constant_group_is_zero():
    src = torch.tensor([2.0, 2.0, 5.0], dtype=torch.float64, requires_grad=True)
    std = scatter_std(src, torch.tensor([0, 0, 1]))
    std.sum().backward()
    assert std.tolist() == [0.0, 0.0] and src.grad.tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------
# Segment (CSR) variants.


def test_segments_hand_built():
    src = torch.tensor([[1.0], [4.0], [2.0], [8.0], [3.0]], dtype=torch.float64)
    ptr = torch.tensor([0, 2, 2, 5])
    assert ptr_to_index(ptr).tolist() == [0, 0, 2, 2, 2]
    assert segment_sum_csr(src, ptr).tolist() == [[5], [0], [13]]
    assert segment_mean_csr(src, ptr).tolist() == [[2.5], [0], [13 / 3]]
    values, args = segment_max_csr(src, ptr)
    assert values.tolist() == [[4], [0], [8]] and args.tolist() == [[1], [5], [3]]
    values, args = segment_min_csr(src, ptr)
    assert values.tolist() == [[1], [0], [2]] and args.tolist() == [[0], [5], [2]]
    assert gather_csr(torch.tensor([10, 20, 30]), ptr).tolist() == [10, 10, 30, 30, 30]


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_segments_match_scatter_reference(dim):
    gen = torch.Generator().manual_seed(3)
    shape = {0: (12, 5), 1: (6, 12, 5), -1: (5, 12)}[dim]
    src = torch.randn(shape, generator=gen, dtype=torch.float64)
    ptr = torch.tensor([0, 3, 3, 4, 12])
    index = torch.tensor([0, 0, 0, 2, 3, 3, 3, 3, 3, 3, 3, 3])
    for seg, ref in [("sum", "sum"), ("mean", "mean"), ("max", "max"), ("min", "min")]:
        ref_values, ref_args = reference_reduce(src, index, dim, 4, ref)
        fn = {"sum": segment_sum_csr, "mean": segment_mean_csr, "max": segment_max_csr, "min": segment_min_csr}[seg]
        out = fn(src, ptr, dim)
        if seg in ("max", "min"):
            out, args = out
            assert torch.equal(args, ref_args)
        torch.testing.assert_close(out, ref_values)
    per_segment = segment_mean_csr(src, ptr, dim)
    back = gather_csr(per_segment, ptr, dim)
    assert torch.equal(back, per_segment.index_select(dim, index))


def test_segment_gradcheck():
    src = _distinct((7, 3), seed=5)
    ptr = torch.tensor([0, 2, 2, 7])
    assert torch.autograd.gradcheck(lambda s: segment_mean_csr(s, ptr), (src,))
    assert torch.autograd.gradcheck(lambda s: segment_max_csr(s, ptr)[0], (src,))


# ---------------------------------------------------------------------------------------------
# Errors a caller can cause.


def test_errors_are_clear():
    src = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"group ids 0\.\.5, expected 0\.\.2"):
        scatter_sum(src, torch.tensor([0, 5, 1, 1]), dim_size=3)
    with pytest.raises(ValueError, match="group ids -1"):
        scatter_max(src, torch.tensor([0, -1, 1, 1]))
    with pytest.raises(ValueError, match="index has 3 entries but src has 4 along dim 0"):
        scatter_mean(src, torch.tensor([0, 1, 1]))
    with pytest.raises(TypeError, match="integer group ids"):
        scatter_sum(src, torch.tensor([0.0, 1, 1, 1]))
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        scatter_sum(src, torch.tensor([0, 1, 1, 1]), dim=2)
    with pytest.raises(TypeError, match="floating-point"):
        scatter_softmax(torch.tensor([1, 2]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="ptr must start at 0, never decrease and end at src.size"):
        segment_sum_csr(src, torch.tensor([0, 3, 2, 4]))
    with pytest.raises(ValueError, match=r"end at src.size\(dim\)=4; got 0..5"):
        segment_sum_csr(src, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match=r"ptr must have src.size\(dim\) \+ 1 = 5 entries"):
        gather_csr(src, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="never decrease"):
        ptr_to_index(torch.tensor([0, 2, 1]))


def test_int32_index_is_accepted():
    src = torch.tensor([1.0, 2.0, 3.0])
    assert scatter_sum(src, torch.tensor([1, 0, 1], dtype=torch.int32)).tolist() == [2, 4]


# ---------------------------------------------------------------------------------------------
# Devices and the torch-scatter peer.


@pytest.mark.skipif(len(DEVICES) == 1, reason="no CUDA device")
def test_cuda_matches_cpu():
    src, index, dim_size = _case((40, 8), 0, None, torch.float32, seed=11)
    for fn in (scatter_sum, scatter_mean, scatter_std, scatter_softmax, scatter_log_softmax):
        torch.testing.assert_close(fn(src.cuda(), index.cuda(), 0, dim_size).cpu(), fn(src, index, 0, dim_size))
    for fn in (scatter_max, scatter_min):
        values, args = fn(src.cuda(), index.cuda(), 0, dim_size)
        ref_values, ref_args = fn(src, index, 0, dim_size)
        assert torch.equal(values.cpu(), ref_values) and torch.equal(args.cpu(), ref_args)


@needs_torch_scatter
@pytest.mark.parametrize("shape,dim,index_shape", CASES)
def test_matches_torch_scatter(shape, dim, index_shape):
    import torch_scatter

    src, index, dim_size = _case(shape, dim, index_shape, torch.float64, seed=13)
    for ours, theirs in [
        (scatter_sum, torch_scatter.scatter_sum),
        (scatter_mean, torch_scatter.scatter_mean),
        (scatter_std, torch_scatter.scatter_std),
        (scatter_softmax, torch_scatter.composite.scatter_softmax),
        (scatter_log_softmax, torch_scatter.composite.scatter_log_softmax),
    ]:
        expected = theirs(src, index, dim, dim_size=dim_size)
        torch.testing.assert_close(ours(src, index, dim, dim_size), expected, atol=1e-5, rtol=1e-5)
    for ours, theirs in [(scatter_max, torch_scatter.scatter_max), (scatter_min, torch_scatter.scatter_min)]:
        values, args = ours(src, index, dim, dim_size)
        ref_values, ref_args = theirs(src, index, dim, dim_size=dim_size)
        assert torch.equal(values, ref_values) and torch.equal(args, ref_args)


@needs_torch_scatter
def test_segments_match_torch_scatter():
    import torch_scatter

    src = torch.randn(12, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    ptr = torch.tensor([0, 3, 3, 4, 12])
    for reduce, ours in [("sum", segment_sum_csr), ("mean", segment_mean_csr)]:
        torch.testing.assert_close(ours(src, ptr), torch_scatter.segment_csr(src, ptr, reduce=reduce))
    for reduce, ours in [("max", segment_max_csr), ("min", segment_min_csr)]:
        values, args = ours(src, ptr)
        ref_values, ref_args = torch_scatter.segment_csr(src, ptr, reduce=reduce)
        assert torch.equal(values, ref_values) and torch.equal(args, ref_args)
