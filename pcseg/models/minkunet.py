"""MinkUNet family, layer for layer as MinkowskiEngine's examples/minkunet.py.

Variants are subclasses setting BLOCK / LAYERS / PLANES; layer names carry their tensor
stride (`conv1p1s2`: input at stride 1, stride-2 conv). Encoder: a 5^3 stem and four
kernel-2 stride-2 downsamplings to tensor stride 16; decoder: four kernel-2 transposed convs
back onto the cached finer coordinates, each concatenated with the encoder skip.
"""
from __future__ import annotations

from torch import nn

from pcseg.models.blocks import BasicBlock
from pcseg.sparse import BatchNorm, Conv3d, ConvTranspose3d, ReLU, SparseTensor, cat


class MinkUNetBase(nn.Module):
    """U-Net on a SparseTensor; `forward(x)` returns out_channels logits on x's coordinates."""

    BLOCK: type[BasicBlock] = BasicBlock
    LAYERS: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    PLANES: tuple[int, ...] = (32, 64, 128, 256, 256, 128, 96, 96)
    INIT_DIM = 32

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        block, planes, layers = self.BLOCK, self.PLANES, self.LAYERS
        self.inplanes = self.INIT_DIM
        self.conv0p1s1 = Conv3d(in_channels, self.inplanes, kernel_size=5)
        self.bn0 = BatchNorm(self.inplanes)

        self.conv1p1s2 = Conv3d(self.inplanes, self.inplanes, kernel_size=2, stride=2)
        self.bn1 = BatchNorm(self.inplanes)
        self.block1 = self._make_layer(block, planes[0], layers[0])
        self.conv2p2s2 = Conv3d(self.inplanes, self.inplanes, kernel_size=2, stride=2)
        self.bn2 = BatchNorm(self.inplanes)
        self.block2 = self._make_layer(block, planes[1], layers[1])
        self.conv3p4s2 = Conv3d(self.inplanes, self.inplanes, kernel_size=2, stride=2)
        self.bn3 = BatchNorm(self.inplanes)
        self.block3 = self._make_layer(block, planes[2], layers[2])
        self.conv4p8s2 = Conv3d(self.inplanes, self.inplanes, kernel_size=2, stride=2)
        self.bn4 = BatchNorm(self.inplanes)
        self.block4 = self._make_layer(block, planes[3], layers[3])

        self.convtr4p16s2 = ConvTranspose3d(self.inplanes, planes[4], kernel_size=2, stride=2)
        self.bntr4 = BatchNorm(planes[4])
        self.inplanes = planes[4] + planes[2] * block.expansion
        self.block5 = self._make_layer(block, planes[4], layers[4])
        self.convtr5p8s2 = ConvTranspose3d(self.inplanes, planes[5], kernel_size=2, stride=2)
        self.bntr5 = BatchNorm(planes[5])
        self.inplanes = planes[5] + planes[1] * block.expansion
        self.block6 = self._make_layer(block, planes[5], layers[5])
        self.convtr6p4s2 = ConvTranspose3d(self.inplanes, planes[6], kernel_size=2, stride=2)
        self.bntr6 = BatchNorm(planes[6])
        self.inplanes = planes[6] + planes[0] * block.expansion
        self.block7 = self._make_layer(block, planes[6], layers[6])
        self.convtr7p2s2 = ConvTranspose3d(self.inplanes, planes[7], kernel_size=2, stride=2)
        self.bntr7 = BatchNorm(planes[7])
        self.inplanes = planes[7] + self.INIT_DIM
        self.block8 = self._make_layer(block, planes[7], layers[7])

        self.final = Conv3d(planes[7] * block.expansion, out_channels, kernel_size=1, bias=True)
        self.relu = ReLU()
        self._init_weights()

    def _make_layer(self, block: type[BasicBlock], planes: int, blocks: int) -> nn.Sequential:
        downsample = None
        if self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(Conv3d(self.inplanes, planes * block.expansion, kernel_size=1),
                                       BatchNorm(planes * block.expansion))
        layers = [block(self.inplanes, planes, downsample=downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        # As ME's ResNetBase: kaiming-normal (fan_out = K * C_out) convs, identity BatchNorm.
        for m in self.modules():
            if isinstance(m, Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, BatchNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def encode(self, x: SparseTensor) -> dict[int, SparseTensor]:
        """Encoder outputs by tensor stride {1, 2, 4, 8, 16} (the decoder's skips and bottleneck)."""
        # tensor_stride=1
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        # tensor_stride=2
        out_b1p2 = self.block1(self.relu(self.bn1(self.conv1p1s2(out_p1))))
        # tensor_stride=4
        out_b2p4 = self.block2(self.relu(self.bn2(self.conv2p2s2(out_b1p2))))
        # tensor_stride=8
        out_b3p8 = self.block3(self.relu(self.bn3(self.conv3p4s2(out_b2p4))))
        # tensor_stride=16
        out_b4p16 = self.block4(self.relu(self.bn4(self.conv4p8s2(out_b3p8))))
        return {1: out_p1, 2: out_b1p2, 4: out_b2p4, 8: out_b3p8, 16: out_b4p16}

    def decode(self, features: dict[int, SparseTensor]) -> SparseTensor:
        """Logits at stride 1 from `encode`'s outputs (any of them may be replaced, e.g. by DSP's
        reallocated features, as long as it keeps its coordinates)."""
        # tensor_stride=8
        out = self.relu(self.bntr4(self.convtr4p16s2(features[16])))
        out = self.block5(cat(out, features[8]))
        # tensor_stride=4
        out = self.relu(self.bntr5(self.convtr5p8s2(out)))
        out = self.block6(cat(out, features[4]))
        # tensor_stride=2
        out = self.relu(self.bntr6(self.convtr6p4s2(out)))
        out = self.block7(cat(out, features[2]))
        # tensor_stride=1
        out = self.relu(self.bntr7(self.convtr7p2s2(out)))
        out = self.block8(cat(out, features[1]))
        return self.final(out)

    def forward(self, x: SparseTensor, return_features: bool = False
                ) -> SparseTensor | tuple[SparseTensor, dict[int, SparseTensor]]:
        """Logits at x's coordinates; with `return_features` also the encoder outputs by stride."""
        features = self.encode(x)
        logits = self.decode(features)
        if not return_features:
            return logits
        return logits, features


class MinkUNet14(MinkUNetBase):
    LAYERS = (1, 1, 1, 1, 1, 1, 1, 1)


class MinkUNet18(MinkUNetBase):
    LAYERS = (2, 2, 2, 2, 2, 2, 2, 2)


class MinkUNet34(MinkUNetBase):
    LAYERS = (2, 3, 4, 6, 2, 2, 2, 2)


class MinkUNet14A(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet14B(MinkUNet14):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet14C(MinkUNet14):
    PLANES = (32, 64, 128, 256, 192, 192, 128, 128)


class MinkUNet14D(MinkUNet14):
    PLANES = (32, 64, 128, 256, 384, 384, 384, 384)


class MinkUNet18A(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 96, 96)


class MinkUNet18B(MinkUNet18):
    PLANES = (32, 64, 128, 256, 128, 128, 128, 128)


class MinkUNet18D(MinkUNet18):
    PLANES = (32, 64, 128, 256, 384, 384, 384, 384)


class MinkUNet34A(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 64)


class MinkUNet34B(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 64, 32)


class MinkUNet34C(MinkUNet34):
    PLANES = (32, 64, 128, 256, 256, 128, 96, 96)
