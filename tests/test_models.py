"""Every backbone runs forward + backward; Segmentor returns logits per original point."""
from __future__ import annotations

import pytest
import torch

from pcseg.models import BACKBONES, Segmentor, build_backbone
from pcseg.models.minkunet import MinkUNet34C
from pcseg.sparse import SparseTensor, conv_function, quantize


@pytest.fixture(autouse=True, scope="module")
def _one_thread_torch_backend():
    # Tiny ops on a loaded 2-core machine are dominated by OpenMP thread hand-offs; the
    # native kernels (maybe compiled on first use) are checked in tests/test_native.py.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(conv_function.ENV_VAR, "torch")
        yield
    torch.set_num_threads(threads)


def _expected_params(in_channels: int, out_channels: int, planes, layers, init_dim: int = 32) -> int:
    """Parameter count of ME's MinkUNet with BasicBlocks, derived from PLANES/LAYERS alone."""
    def bn(c):
        return 2 * c

    def make_layer(inp, p, n):
        total = 0
        for i in range(n):
            total += 27 * inp * p + bn(p) + 27 * p * p + bn(p)
            if i == 0 and inp != p:
                total += inp * p + bn(p)
            inp = p
        return total, p

    total, inp = 125 * in_channels * init_dim + bn(init_dim), init_dim
    for i in range(4):
        total += 8 * inp * inp + bn(inp)
        count, inp = make_layer(inp, planes[i], layers[i])
        total += count
    skips = [planes[2], planes[1], planes[0], init_dim]
    for i in range(4):
        total += 8 * inp * planes[4 + i] + bn(planes[4 + i])
        count, inp = make_layer(planes[4 + i] + skips[i], planes[4 + i], layers[4 + i])
        total += count
    return total + inp * out_channels + out_channels


def _small_scene(gen: torch.Generator, n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    coord = torch.rand(n, 3, generator=gen) * 0.6
    batch = (torch.arange(n) >= n // 2).long()
    return coord, batch


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_forward_backward(name):
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)  # parameter init of nn.Module draws from the global generator
    coord, batch = _small_scene(gen)
    coords, _, _, _ = quantize(coord, 0.05, batch)
    x = SparseTensor(torch.rand(len(coords), 3, generator=gen), coords)
    model = BACKBONES[name](3, 5)
    out, feats = model(x, return_features=True)
    assert out.feats.shape == (len(coords), 5) and torch.equal(out.coords, coords)
    assert sorted(feats) == [1, 2, 4, 8, 16] and all(f.stride == s for s, f in feats.items())
    out.feats.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.conv0p1s1.weight.grad.abs().sum() > 0


def test_minkunet34c_matches_minkowski_engine_layout():
    model = MinkUNet34C(3, 20)
    assert [len(getattr(model, f"block{i}")) for i in range(1, 9)] == [2, 3, 4, 6, 2, 2, 2, 2]
    assert model.conv0p1s1.weight.shape == (125, 3, 32)
    assert model.convtr4p16s2.weight.shape == (8, 256, 256)
    assert model.block5[0].conv1.weight.shape == (27, 256 + 128, 256)
    assert model.block8[0].conv1.weight.shape == (27, 96 + 32, 96)
    assert model.final.weight.shape == (1, 96, 20) and model.final.bias.shape == (20,)
    expected = _expected_params(3, 20, (32, 64, 128, 256, 256, 128, 96, 96), (2, 3, 4, 6, 2, 2, 2, 2))
    assert sum(p.numel() for p in model.parameters()) == expected


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(ValueError, match="minkunet34c"):
        build_backbone("minkunet99z", 3, 2)


def test_segmentor_logits_per_original_point():
    gen = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    coord, batch_idx = _small_scene(gen, 400)
    batch = {"coord": coord, "feat": torch.rand(400, 3, generator=gen), "batch": batch_idx,
             "offset": torch.tensor([200, 400])}
    model = Segmentor("minkunet14a", 3, 7, voxel_size=0.05).eval()
    out = model(batch, return_features=True)
    assert out["logits"].shape == (400, 7)
    coords, inverse, _, _ = quantize(coord, 0.05, batch_idx)
    assert torch.equal(out["inverse"], inverse)
    # Points in one voxel get that voxel's logits: identical rows within each voxel.
    first = torch.zeros(len(coords), dtype=torch.long).scatter_(0, inverse.flip(0), torch.arange(400).flip(0))
    torch.testing.assert_close(out["logits"], out["logits"][first][inverse])
    assert out["features"][4].stride == 4
