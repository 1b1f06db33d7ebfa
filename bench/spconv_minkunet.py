"""MinkUNet34C built from spconv 2.x layers: the peer column of bench/sparse_conv.py's model rows.

Layer for layer `pcseg.models.minkunet.MinkUNet34C` (itself MinkowskiEngine's
examples/minkunet.py): a 5^3 stem, four kernel-2 stride-2 downsamplings to tensor stride 16,
BasicBlocks (2, 3, 4, 6, 2, 2, 2, 2) with planes (32, 64, 128, 256, 256, 128, 96, 96), four
kernel-2 transposed convs back onto the finer coordinates, each concatenated with its encoder
skip, and a 1x1 classifier with bias. In spconv terms:

- stride-preserving convs are `SubMConv3d`, one `indice_key` per (tensor stride, kernel size),
  so every level builds its rulebook once per input and all its layers reuse it;
- downsampling is `SparseConv3d(k=2, s=2)` keyed `down{stride}`, and upsampling is
  `SparseInverseConv3d(k=2)` with the same key, i.e. the down rulebook reversed (pcseg's
  `ConvTranspose3d` onto cached coordinates);
- 1x1 projections are `SubMConv3d(k=1)`, which spconv runs as one `torch.mm`;
- BatchNorm1d and ReLU act on the `[N, C]` feature matrix, as pcseg's layers do.

`build_minkunet34c(3, 20)` has pcseg's minkunet34c parameter count (37,856,052; the bench
checks). spconv is imported only when a model is built, so importing this file never needs it.
"""
from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from spconv.pytorch import SparseConvTensor

PLANES = (32, 64, 128, 256, 256, 128, 96, 96)
LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)
INIT_DIM = 32


def _spconv() -> ModuleType:
    import spconv.pytorch as spconv

    return spconv


def _relu_bn(bn: nn.BatchNorm1d, x: SparseConvTensor) -> SparseConvTensor:
    """x with features ReLU(BN(x.features)) (x: spconv SparseConvTensor)."""
    return x.replace_feature(torch.relu(bn(x.features)))


class BasicBlock(nn.Module):
    """subm3-BN-ReLU-subm3-BN plus the (1x1-projected where channels change) input, then ReLU."""

    def __init__(self, inplanes: int, planes: int, indice_key: str):
        super().__init__()
        spconv = _spconv()
        self.conv1 = spconv.SubMConv3d(inplanes, planes, 3, bias=False, indice_key=indice_key)
        self.norm1 = nn.BatchNorm1d(planes)
        self.conv2 = spconv.SubMConv3d(planes, planes, 3, bias=False, indice_key=indice_key)
        self.norm2 = nn.BatchNorm1d(planes)
        self.project = None
        if inplanes != planes:
            self.project = spconv.SubMConv3d(inplanes, planes, 1, bias=False)
            self.project_norm = nn.BatchNorm1d(planes)

    def forward(self, x: SparseConvTensor) -> SparseConvTensor:
        out = self.conv2(_relu_bn(self.norm1, self.conv1(x)))
        residual = x.features if self.project is None else self.project_norm(self.project(x).features)
        return out.replace_feature(torch.relu(self.norm2(out.features) + residual))


def _stage(inplanes: int, planes: int, blocks: int, indice_key: str) -> nn.Sequential:
    layers = [BasicBlock(inplanes, planes, indice_key)]
    layers += [BasicBlock(planes, planes, indice_key) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class SpconvMinkUNet34C(nn.Module):
    """`forward(x)` maps a SparseConvTensor of stride-1 voxels to logits [N, out_channels] on
    its rows."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        spconv = _spconv()
        planes, layers = PLANES, LAYERS
        self.conv0p1s1 = spconv.SubMConv3d(in_channels, INIT_DIM, 5, bias=False, indice_key="subm1k5")
        self.bn0 = nn.BatchNorm1d(INIT_DIM)
        downs, encoders, inplanes = [], [], INIT_DIM
        for level in range(4):
            stride = 2 ** level
            downs.append(nn.ModuleList([
                spconv.SparseConv3d(inplanes, inplanes, 2, stride=2, bias=False, indice_key=f"down{stride}"),
                nn.BatchNorm1d(inplanes)]))
            encoders.append(_stage(inplanes, planes[level], layers[level], f"subm{2 * stride}"))
            inplanes = planes[level]
        self.down, self.encoder = nn.ModuleList(downs), nn.ModuleList(encoders)
        skips = (planes[2], planes[1], planes[0], INIT_DIM)  # channels at strides 8, 4, 2, 1
        ups, decoders = [], []
        for level in range(4):
            stride = 2 ** (3 - level)  # output tensor stride of this up
            ups.append(nn.ModuleList([
                spconv.SparseInverseConv3d(inplanes, planes[4 + level], 2, bias=False,
                                           indice_key=f"down{stride}"),
                nn.BatchNorm1d(planes[4 + level])]))
            key = "subm1" if stride == 1 else f"subm{stride}"
            decoders.append(_stage(planes[4 + level] + skips[level], planes[4 + level], layers[4 + level], key))
            inplanes = planes[4 + level]
        self.up, self.decoder = nn.ModuleList(ups), nn.ModuleList(decoders)
        self.final = spconv.SubMConv3d(planes[7], out_channels, 1, bias=True)

    def forward(self, x: SparseConvTensor) -> torch.Tensor:
        out = _relu_bn(self.bn0, self.conv0p1s1(x))
        skips = [out]  # tensor strides 1, 2, 4, 8 (then the bottleneck at 16)
        for (conv, bn), stage in zip(self.down, self.encoder):
            out = stage(_relu_bn(bn, conv(out)))
            skips.append(out)
        out = skips.pop()
        for (conv, bn), stage in zip(self.up, self.decoder):
            up = _relu_bn(bn, conv(out))
            out = stage(up.replace_feature(torch.cat([up.features, skips.pop().features], 1)))
        return self.final(out).features


def build_minkunet34c(in_channels: int, out_channels: int) -> SpconvMinkUNet34C:
    """spconv MinkUNet34C; raises ImportError when spconv is not installed."""
    return SpconvMinkUNet34C(in_channels, out_channels)


def spconv_indices(coords: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """spconv's (indices int32 [N, 4], spatial shape) for pcseg voxels `coords` int32 [N, 4].

    spconv wants non-negative indices: they are shifted by a multiple of 16 (the largest not
    above their minimum), so each k=2 s=2 level groups voxels exactly as pcseg's floor of the
    unshifted coordinates does; the spatial shape is rounded up to a multiple of 16 so no level
    drops a boundary slab."""
    spatial = coords[:, 1:] - torch.div(coords[:, 1:].amin(0), 16, rounding_mode="floor") * 16
    indices = torch.cat([coords[:, :1], spatial], 1).int().contiguous()
    return indices, ((spatial.amax(0) + 16) // 16 * 16).tolist()


def sparse_input(coords: torch.Tensor, feats: torch.Tensor) -> SparseConvTensor:
    """SparseConvTensor of int32 [N, 4] (batch, x, y, z) voxels and float [N, C] features."""
    indices, shape = spconv_indices(coords)
    return _spconv().SparseConvTensor(feats, indices, shape, int(coords[:, 0].max()) + 1)
