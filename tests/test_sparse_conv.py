"""Sparse conv layers against dense conv3d / conv_transpose3d (see tests/sparse_reference.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pcseg.sparse import Conv3d, ConvTranspose3d, conv_function, conv_torch
from pcseg.sparse.kernel_map import kernel_offsets
from sparse_reference import at_sites, dense_weight, pad_amounts, padded, random_tensor

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(autouse=True)
def _seed_layer_init():
    # Layer parameters initialise from torch's global generator, as in every nn.Module.
    torch.manual_seed(0)

@pytest.fixture(autouse=True)
def _torch_backend(monkeypatch):
    # These tests define the pure-PyTorch twin; tests/test_native.py checks native against it.
    monkeypatch.setenv(conv_function.ENV_VAR, "torch")


@pytest.mark.parametrize("tensor_stride", [1, 2, 4])
@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), (2, 1), (3, 2), (5, 1)])
def test_submanifold_conv_equals_dense(tensor_stride, kernel_size, dilation):
    gen = torch.Generator().manual_seed(100 * tensor_stride + 10 * kernel_size + dilation)
    x = random_tensor(gen, 3, stride=tensor_stride)
    conv = Conv3d(3, 4, kernel_size=kernel_size, dilation=dilation, bias=True)
    y = conv(x)
    assert y.stride == tensor_stride and torch.equal(y.coords, x.coords)
    low, high = pad_amounts(kernel_size, dilation)
    grid = padded(x.dense(), low, high)
    ref = F.conv3d(grid, dense_weight(conv.weight, kernel_size), conv.bias, dilation=dilation)
    torch.testing.assert_close(y.feats, at_sites(ref, x.coords, tensor_stride), **TOL)


@pytest.mark.parametrize("tensor_stride", [1, 2])
@pytest.mark.parametrize("kernel_size", [2, 3])
def test_strided_conv_equals_dense(tensor_stride, kernel_size):
    gen = torch.Generator().manual_seed(7 * tensor_stride + kernel_size)
    x = random_tensor(gen, 3, stride=tensor_stride)
    conv = Conv3d(3, 5, kernel_size=kernel_size, stride=2)
    y = conv(x)
    out_stride = 2 * tensor_stride
    assert y.stride == out_stride
    expected_coords = torch.unique(torch.cat([x.coords[:, :1], x.coords[:, 1:] // out_stride * out_stride], 1), dim=0)
    assert torch.equal(y.coords, expected_coords)
    low, high = pad_amounts(kernel_size, 1)
    ref = F.conv3d(padded(x.dense(), low, high + kernel_size), dense_weight(conv.weight, kernel_size), stride=2)
    torch.testing.assert_close(y.feats, at_sites(ref, y.coords, out_stride), **TOL)


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_transposed_conv_equals_dense(kernel_size):
    gen = torch.Generator().manual_seed(30 + kernel_size)
    fine = random_tensor(gen, 3, stride=2)
    coarse = Conv3d(3, 4, kernel_size=2, stride=2)(fine)
    up = ConvTranspose3d(4, 3, kernel_size=kernel_size, stride=2, bias=True)
    y = up(coarse)
    assert y.stride == 2 and torch.equal(y.coords, fine.coords)
    pad = kernel_size // 2 if kernel_size % 2 else 0
    w = dense_weight(up.weight, kernel_size).transpose(0, 1)  # conv_transpose3d: [C_in, C_out, k, k, k]
    ref = F.conv_transpose3d(coarse.dense(), w, up.bias, stride=2, padding=pad, output_padding=1)
    torch.testing.assert_close(y.feats, at_sites(ref, fine.coords, 2), **TOL)


def test_kernel_maps_built_once_and_reused():
    gen = torch.Generator().manual_seed(1)
    x = random_tensor(gen, 2)
    a, b = Conv3d(2, 2), Conv3d(2, 2)
    y = b(a(x))
    assert x.manager.num_map_builds == 1  # both submanifold layers share the map
    down = Conv3d(2, 2, kernel_size=2, stride=2)(y)
    Conv3d(2, 2)(Conv3d(2, 2)(down))
    assert x.manager.num_map_builds == 3  # + down map + stride-2 submanifold map
    up = ConvTranspose3d(2, 2, kernel_size=2, stride=2)(down)
    up.feats.sum().backward()
    assert x.manager.num_map_builds == 3  # transposed reuses the down map; backward builds nothing


@pytest.mark.parametrize("in_stride,out_stride,kernel_size,dilation", [(2, 4, 3, 1), (2, 2, 3, 2), (2, 2, 2, 1), (4, 4, 3, 3), (1, 1, 5, 2), (1, 2, 3, 2)])
def test_kernel_map_pairs_match_python_loop(in_stride, out_stride, kernel_size, dilation):
    gen = torch.Generator().manual_seed(2)
    x = random_tensor(gen, 1, extent=4, stride=in_stride)
    kmap = x.manager.kernel_map(in_stride, out_stride, kernel_size, dilation)
    coarse = x.manager.coordinates(out_stride).coords.tolist()
    fine = {tuple(c): i for i, c in enumerate(x.coords.tolist())}
    step = in_stride * dilation
    expected = []
    for k, (dx, dy, dz) in enumerate(kernel_offsets(kernel_size).tolist()):
        for o, (b, cx, cy, cz) in enumerate(coarse):
            i = fine.get((b, cx + step * dx, cy + step * dy, cz + step * dz))
            if i is not None:
                expected.append((k, i, o))
    got = []
    for k, (s, e) in enumerate(kmap.bounds()):
        got += [(k, i, o) for i, o in zip(kmap.in_rows[s:e].tolist(), kmap.out_rows[s:e].tolist())]
    assert sorted(got, key=lambda t: (t[0], t[2])) == got  # sorted by (offset, out row)
    assert sorted(got) == sorted(expected)
    assert kmap.num_out == len(coarse)


def test_identity_offset_pairs_every_row_with_itself():
    gen = torch.Generator().manual_seed(3)
    x = random_tensor(gen, 1, extent=4, stride=2)
    sub = x.manager.kernel_map(2, 2, 3, 1)
    s, e = sub.bounds()[sub.identity_offset]
    assert torch.equal(sub.in_rows[s:e], torch.arange(len(x))) and torch.equal(sub.out_rows[s:e], torch.arange(len(x)))
    assert x.manager.kernel_map(2, 2, 2, 1).identity_offset is None
    assert x.manager.kernel_map(2, 4, 3, 1).identity_offset is None


def test_kernel_offsets_order():
    assert kernel_offsets(2).tolist()[:3] == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]
    assert kernel_offsets(3)[13].tolist() == [0, 0, 0] and kernel_offsets(3)[0].tolist() == [-1, -1, -1]


@pytest.mark.parametrize("out_stride,kernel_size", [(1, 3), (2, 2), (2, 3)])
def test_conv_gradcheck(out_stride, kernel_size):
    gen = torch.Generator().manual_seed(3)
    x = random_tensor(gen, 2, extent=4, dtype=torch.float64)
    kmap = x.manager.kernel_map(1, out_stride, kernel_size, 1)
    feats = x.feats.clone().requires_grad_()
    weight = torch.randn(kernel_size ** 3, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: conv_function.sparse_conv(f, w, kmap), (feats, weight))


def test_transposed_conv_gradcheck():
    gen = torch.Generator().manual_seed(4)
    x = random_tensor(gen, 2, extent=4, dtype=torch.float64)
    kmap = x.manager.kernel_map(2, 1, 2, 1)
    coarse = torch.randn(len(x.manager.coordinates(2)), 2, generator=gen, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(8, 2, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, w: conv_function.sparse_conv(f, w, kmap), (coarse, weight))


def test_conv_under_autocast_runs_in_autocast_dtype():
    gen = torch.Generator().manual_seed(6)
    x = random_tensor(gen, 4)
    conv = Conv3d(4, 3)
    reference = conv(x).feats
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x).feats
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference, atol=0.1, rtol=0.05)
    y.float().sum().backward()
    assert conv.weight.grad.dtype == torch.float32 and torch.isfinite(conv.weight.grad).all()


def test_backend_selection(monkeypatch):
    feats, weight = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, 1, dtype=torch.float64)
    monkeypatch.setenv(conv_function.ENV_VAR, "torch")
    assert conv_function.select_backend(feats, weight) is conv_torch
    monkeypatch.setenv(conv_function.ENV_VAR, "")
    assert conv_function.select_backend(feats, weight) is conv_torch  # float64: never native
    monkeypatch.setenv(conv_function.ENV_VAR, "native")
    with pytest.raises(RuntimeError, match="CPU float32"):
        conv_function.select_backend(feats, weight)
    monkeypatch.setenv(conv_function.ENV_VAR, "cuda-magic")
    with pytest.raises(ValueError, match="PCSEG_SPARSE_BACKEND"):
        conv_function.select_backend(feats, weight)
