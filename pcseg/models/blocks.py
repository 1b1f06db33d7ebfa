"""Residual blocks on SparseTensors (MinkowskiEngine's modules/resnet_block.py)."""
from __future__ import annotations

from torch import nn

from pcseg.sparse import BatchNorm, Conv3d, ReLU, SparseTensor


class BasicBlock(nn.Module):
    """conv3-BN-ReLU-conv3-BN plus the (optionally projected) input, then ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1,
                 downsample: nn.Module | None = None, bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = Conv3d(inplanes, planes, kernel_size=3, stride=stride, dilation=dilation)
        self.norm1 = BatchNorm(planes, momentum=bn_momentum)
        self.conv2 = Conv3d(planes, planes, kernel_size=3, stride=1, dilation=dilation)
        self.norm2 = BatchNorm(planes, momentum=bn_momentum)
        self.relu = ReLU()
        self.downsample = downsample

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)
