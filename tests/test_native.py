"""Native sparse-conv kernels (ops/sparse_conv.cpp) against the pure-PyTorch twin.

The JIT build happens once, in the module-scoped `ext` fixture; every test that needs the
kernels skips with the build's reason where no compiler/ninja is available.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from pcseg.sparse import conv_torch, native
from pcseg.sparse.conv_function import native_map_builder, sparse_conv
from pcseg.sparse.kernel_map import KernelMap, kernel_offsets
from pcseg.sparse.manager import CoordinateManager

from sparse_reference import random_coords


@pytest.fixture(scope="module")
def ext() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ok = native.available()
    if not ok:
        reason = caught[0].message if caught else "PCSEG_NO_NATIVE is set"
        pytest.skip(f"native extension unavailable: {reason}")


@pytest.fixture(params=[True, False], ids=["simd", "blas"])
def kernels(request: pytest.FixtureRequest, ext: None) -> Iterator[None]:
    """Runs a test on both float32 kernel sets (on CPUs without AVX-512F, twice on BLAS)."""
    with native.simd_kernels(request.param):
        yield


def random_map(rng: np.random.Generator, n_in: int, n_out: int, k: int, identity: int | None,
               fill: float = 0.4) -> KernelMap:
    """K offsets of random pairs, each in row and out row at most once per offset.

    With `identity`, n_in == n_out and that offset pairs every row with itself (shuffled, so
    backends cannot rely on the pairs being in row order). Offset 1 (or 0) is left empty.
    """
    empty = 0 if identity == 1 else 1
    ins, outs, ptr = [], [], [0]
    for i in range(k):
        if i == identity:
            rows = rng.permutation(n_in)
            a, b = rows, rows
        else:
            n = 0 if i == empty else int(rng.integers(1, int(fill * min(n_in, n_out)) + 2))
            a = rng.choice(n_in, size=n, replace=False)
            b = rng.choice(n_out, size=n, replace=False)
        ins.append(a)
        outs.append(b)
        ptr.append(ptr[-1] + len(a))

    def rows(parts: list[np.ndarray]) -> torch.Tensor:
        return torch.from_numpy(np.concatenate(parts).astype(np.int64))

    return KernelMap(rows(ins), rows(outs), torch.tensor(ptr, dtype=torch.int64), n_out, identity)


def loop_forward(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Obviously-correct reference: one pair at a time."""
    out = torch.zeros(kmap.num_out, weight.shape[2], dtype=feats.dtype)
    for k, (start, end) in enumerate(kmap.bounds()):
        for p in range(start, end):
            out[kmap.out_rows[p]] += feats[kmap.in_rows[p]] @ weight[k]
    return out


def assert_close_scaled(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    """Equal to `tol` relative to the largest magnitude: the backends sum in different orders,
    and a grad_weight entry sums thousands of products, so absolute 1e-5 would test rounding."""
    scale = max(1.0, float(want.abs().max())) if want.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)


def assert_matches_twin(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap, tol: float) -> None:
    gen = torch.Generator().manual_seed(1)
    grad_out = torch.randn(kmap.num_out, weight.shape[2], generator=gen, dtype=feats.dtype)
    assert_close_scaled(native.conv_forward(feats, weight, kmap), conv_torch.conv_forward(feats, weight, kmap), tol)
    got = native.conv_backward(grad_out, feats, weight, kmap)
    want = conv_torch.conv_backward(grad_out, feats, weight, kmap)
    for g, w in zip(got, want):
        assert_close_scaled(g, w, tol)


def test_hand_computed(kernels: None) -> None:
    # Three rows on a line: 0 - 1 - 2. Offsets (-1, 0, +1): out[o] gathers in[o + d].
    feats = torch.tensor([[1.0], [2.0], [3.0]])
    weight = torch.tensor([[[10.0]], [[1.0]], [[100.0]]])  # [K=3, 1, 1]
    kmap = KernelMap(in_rows=torch.tensor([0, 1, 0, 1, 2, 1, 2]), out_rows=torch.tensor([1, 2, 0, 1, 2, 0, 1]),
                     offset_ptr=torch.tensor([0, 2, 5, 7]), num_out=3, identity_offset=1)
    out = native.conv_forward(feats, weight, kmap)
    assert out[:, 0].tolist() == [1 + 200, 2 + 10 + 300, 3 + 20]
    grad_feats, grad_weight = native.conv_backward(torch.ones(3, 1), feats, weight, kmap)
    # in row 0 feeds out 1 (w=10) and out 0 (w=1); row 1 feeds 2, 1, 0; row 2 feeds 2 and 1.
    assert grad_feats[:, 0].tolist() == [11, 111, 101]
    # grad_weight[k] = sum of feats[in] over that offset's pairs (grad_out is all ones).
    assert grad_weight[:, 0, 0].tolist() == [1 + 2, 1 + 2 + 3, 2 + 3]


# The kernels cut outputs into ~8 chunks per thread; 9000 rows also makes the per-offset GEMMs long;
# 70 -> 130 channels cross the AVX-512 kernels' 6-row x 64-column tiles and masked last vectors.
@pytest.mark.parametrize("n,c_in,c_out", [(300, 1, 1), (300, 3, 5), (300, 16, 32), (300, 33, 17), (9000, 4, 3),
                                          (300, 70, 130)])
def test_submanifold_like_matches_twin(kernels: None, n: int, c_in: int, c_out: int) -> None:
    rng = np.random.default_rng(n + c_in * 100 + c_out)
    kmap = random_map(rng, n, n, 27, identity=13, fill=0.1)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(n, c_in, generator=gen)
    weight = torch.randn(27, c_in, c_out, generator=gen)
    assert_matches_twin(feats, weight, kmap, tol=1e-5)


def test_strided_and_transposed_match_twin(kernels: None) -> None:
    # Kernel 2, stride 2: every fine row belongs to exactly one of the 8 offsets of one coarse row.
    rng = np.random.default_rng(7)
    n_fine, n_coarse = 400, 90
    parent = np.sort(rng.integers(0, n_coarse, n_fine))
    child = rng.integers(0, 8, n_fine)
    keep = np.unique(parent * 8 + child, return_index=True)[1]  # one fine row per (parent, child)
    order = np.lexsort((parent[keep], child[keep]))
    ins, outs, child_sorted = keep[order], parent[keep][order], child[keep][order]
    ptr = np.searchsorted(child_sorted, np.arange(9))
    down = KernelMap(torch.from_numpy(ins), torch.from_numpy(outs), torch.from_numpy(ptr), n_coarse, None)
    gen = torch.Generator().manual_seed(3)
    fine = torch.randn(n_fine, 8, generator=gen)
    assert_matches_twin(fine, torch.randn(8, 8, 12, generator=gen), down, tol=1e-5)
    up = down.transposed(n_fine)
    coarse = torch.randn(n_coarse, 12, generator=gen)
    assert_matches_twin(coarse, torch.randn(8, 12, 8, generator=gen), up, tol=1e-5)


def test_float64_matches_pair_loop_and_gradcheck(ext: None) -> None:
    rng = np.random.default_rng(11)
    kmap = random_map(rng, 12, 12, 5, identity=2)
    gen = torch.Generator().manual_seed(5)
    feats = torch.randn(12, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(5, 3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.testing.assert_close(native.conv_forward(feats, weight, kmap), loop_forward(feats.detach(), weight.detach(), kmap))

    class NativeConv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, f, w):
            ctx.save_for_backward(f, w)
            return native.conv_forward(f, w, kmap)

        @staticmethod
        def backward(ctx, grad):
            return native.conv_backward(grad.contiguous(), *ctx.saved_tensors, kmap)

    assert torch.autograd.gradcheck(NativeConv.apply, (feats, weight))


def test_thread_count_does_not_change_results(kernels: None) -> None:
    # Chunking follows the thread count, but every output row sums its pairs in offset order
    # on one thread, so forward and grad_feats are bitwise identical; grad_weight adds
    # per-thread partial sums, so only rounding may differ.
    rng = np.random.default_rng(8)
    kmap = random_map(rng, 3000, 3000, 27, identity=13, fill=0.2)
    gen = torch.Generator().manual_seed(8)
    feats, weight = torch.randn(3000, 8, generator=gen), torch.randn(27, 8, 8, generator=gen)
    grad_out = torch.randn(3000, 8, generator=gen)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            results.append((native.conv_forward(feats, weight, kmap), *native.conv_backward(grad_out, feats, weight, kmap)))
    finally:
        torch.set_num_threads(threads)
    (out1, gf1, gw1), (out3, gf3, gw3) = results
    assert torch.equal(out1, out3) and torch.equal(gf1, gf3)
    assert_close_scaled(gw1, gw3, 1e-5)


def test_non_contiguous_inputs(kernels: None) -> None:
    rng = np.random.default_rng(2)
    kmap = random_map(rng, 50, 50, 9, identity=4)
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(6, 50, generator=gen).t()  # [50, 6], column-major view
    weight = torch.randn(9, 7, 6, generator=gen).transpose(1, 2)  # [9, 6, 7] view
    assert not feats.is_contiguous() and not weight.is_contiguous()
    assert_matches_twin(feats, weight, kmap, tol=1e-5)
    assert not feats.is_contiguous()  # inputs untouched


def test_real_scannet_kernel_maps(kernels: None, shared_data) -> None:
    path = shared_data / "scannet" / "scene0000_00_vert_all.npy"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    xyz = np.load(path)[:, :3]
    vox = np.unique(np.floor(xyz / 0.08).astype(np.int32), axis=0)  # 8 cm keeps the test fast
    coords = torch.from_numpy(np.concatenate([np.zeros((len(vox), 1), np.int32), vox], axis=1))
    manager = CoordinateManager()
    manager.insert(coords, stride=1)
    gen = torch.Generator().manual_seed(0)
    subm = manager.kernel_map(1, 1, 3)
    assert subm.identity_offset == 13
    feats = torch.randn(len(vox), 16, generator=gen)
    assert_matches_twin(feats, torch.randn(27, 16, 16, generator=gen) * 0.1, subm, tol=1e-5)
    down = manager.kernel_map(1, 2, 2)
    assert_matches_twin(feats, torch.randn(8, 16, 8, generator=gen) * 0.1, down, tol=1e-5)
    up = manager.kernel_map(2, 1, 2)
    coarse = torch.randn(down.num_out, 8, generator=gen)
    assert_matches_twin(coarse, torch.randn(8, 8, 16, generator=gen) * 0.1, up, tol=1e-5)


def loop_pairs(fine: torch.Tensor, coarse: torch.Tensor, kernel_size: int, step: int) -> list[tuple[int, int, int]]:
    """(offset, in row, out row) of every pair, by dictionary lookups, sorted by (offset, out row)."""
    rows = {tuple(c): i for i, c in enumerate(fine.tolist())}
    pairs = []
    for k, (dx, dy, dz) in enumerate(kernel_offsets(kernel_size).tolist()):
        for o, (b, x, y, z) in enumerate(coarse.tolist()):
            i = rows.get((b, x + step * dx, y + step * dy, z + step * dz))
            if i is not None:
                pairs.append((k, i, o))
    return pairs


def map_pairs(kmap: KernelMap) -> list[tuple[int, int, int]]:
    return [(k, i, o) for k, (s, e) in enumerate(kmap.bounds())
            for i, o in zip(kmap.in_rows[s:e].tolist(), kmap.out_rows[s:e].tolist())]


@pytest.mark.parametrize("in_stride,out_stride,kernel_size,dilation",
                         [(1, 1, 3, 1), (1, 1, 5, 1), (2, 2, 3, 2), (1, 2, 2, 1), (2, 4, 3, 1), (4, 4, 2, 1)])
def test_native_kernel_map_equals_loop_and_torch_search(ext: None, monkeypatch: pytest.MonkeyPatch, in_stride: int,
                                                        out_stride: int, kernel_size: int, dilation: int) -> None:
    coords = random_coords(torch.Generator().manual_seed(kernel_size + 7 * in_stride), batch=2, extent=6,
                           stride=in_stride, density=0.4)
    maps = {}
    for backend in ("torch", "native"):
        monkeypatch.setenv("PCSEG_SPARSE_BACKEND", backend)
        manager = CoordinateManager()
        manager.insert(coords, stride=in_stride)
        maps[backend] = manager.kernel_map(in_stride, out_stride, kernel_size, dilation)
        coarse = manager.coordinates(out_stride).coords
    assert native_map_builder(torch.device("cpu")) is native
    expected = loop_pairs(coords, coarse, kernel_size, in_stride * dilation)
    assert map_pairs(maps["native"]) == expected  # same pairs, same (offset, out row) order
    assert map_pairs(maps["torch"]) == expected
    assert maps["native"].identity_offset == maps["torch"].identity_offset
    assert maps["native"].num_out == len(coarse)


def test_native_map_builder_selection(ext: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PCSEG_SPARSE_BACKEND", "torch")
    assert native_map_builder(torch.device("cpu")) is None
    monkeypatch.delenv("PCSEG_SPARSE_BACKEND")
    assert native_map_builder(torch.device("cpu")) is native
    assert native_map_builder(torch.device("meta")) is None  # any other device: the PyTorch search


def test_native_kernel_map_rejects_bad_keys(ext: None) -> None:
    with pytest.raises(RuntimeError, match="in_keys must be a CPU int64 vector"):
        native.kernel_map(torch.zeros(3, dtype=torch.int32), torch.zeros(3, dtype=torch.int64),
                          torch.zeros(1, dtype=torch.int64))


def test_autograd_function_native_equals_torch(ext: None, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(4)
    kmap = random_map(rng, 80, 80, 27, identity=13)
    grads = {}
    for backend in ("torch", "native"):
        monkeypatch.setenv("PCSEG_SPARSE_BACKEND", backend)
        gen = torch.Generator().manual_seed(9)
        feats = torch.randn(80, 4, generator=gen, requires_grad=True)
        weight = torch.randn(27, 4, 6, generator=gen, requires_grad=True)
        out = sparse_conv(feats, weight, kmap)
        (out * torch.arange(6.0)).sum().backward()
        grads[backend] = (out.detach(), feats.grad, weight.grad)
    for a, b in zip(grads["torch"], grads["native"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bad_kernel_map_raises_clear_error(ext: None) -> None:
    feats, weight = torch.ones(3, 2), torch.ones(3, 2, 2)
    short_ptr = KernelMap(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 2]), 3, None)
    with pytest.raises(RuntimeError, match="offset_ptr has 2 entries, expected K \\+ 1 = 4"):
        native.conv_forward(feats, weight, short_ptr)
    not_identity = KernelMap(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 1]), torch.tensor([0, 0, 3, 3]), 3, 1)
    with pytest.raises(RuntimeError, match="in_row != out_row"):
        native.conv_forward(feats, weight, not_identity)
    out_of_range = KernelMap(torch.tensor([0, 3]), torch.tensor([0, 1]), torch.tensor([0, 2, 2, 2]), 3, None)
    with pytest.raises(RuntimeError, match="rows out of range"):
        native.conv_forward(feats, weight, out_of_range)


def test_no_native_env_disables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.setenv("PCSEG_NO_NATIVE", "1")
    assert native.available() is False
    with pytest.raises(RuntimeError, match="unavailable"):
        native.conv_forward(torch.ones(1, 1), torch.ones(1, 1, 1), KernelMap(
            torch.tensor([0]), torch.tensor([0]), torch.tensor([0, 1]), 1, 0))


def test_build_failure_warns_once_and_falls_back(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(native, "_module", None)
    monkeypatch.delenv("PCSEG_NO_NATIVE", raising=False)
    monkeypatch.setattr(native, "ops_dir", lambda: tmp_path)  # a folder without the sources
    with pytest.warns(RuntimeWarning, match="sources not found: .*sparse_conv.cpp"):
        assert native.available() is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second call must stay quiet
        assert native.available() is False


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    import os
    import time

    from pcseg.sparse import native
    lock = tmp_path / "lock"
    lock.touch()
    native._remove_stale_lock(tmp_path)  # a build running now: keep its lock
    assert lock.exists()
    old = time.time() - native.STALE_LOCK_SECONDS - 5
    os.utime(lock, (old, old))
    with pytest.warns(RuntimeWarning, match="stale native-build lock"):
        native._remove_stale_lock(tmp_path)
    assert not lock.exists()
    native._remove_stale_lock(tmp_path)  # no lock: nothing to do
