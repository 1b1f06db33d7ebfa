"""DeepLabv3+ (Chen et al., ECCV 2018) on a dilated ResNet.

ASPP on the last stage (1x1, three 3x3 atrous convs, image pooling), then a decoder that
upsamples it to stride 4 and fuses the 48-channel projection of layer1 (low-level features).
Atrous rates are (6, 12, 18) at output stride 16 and doubled, (12, 24, 36), at stride 8.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pcseg.models.image.common import ConvBNReLU, Normalize, input_image
from pcseg.models.image.resnet import ResNet

ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 36)}


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: [B, cin, h, w] -> [B, cout, h, w].

    The image-pooling branch is conv (with bias) + ReLU, without batch norm: normalising B
    pooled values over the batch degenerates at the small batches of semi-supervised and CPU
    training (B = 2 maps every channel to exactly -1 / +1, a feature that says which image of
    the pair is brighter and means nothing at evaluation).
    """

    def __init__(self, cin: int, rates: tuple[int, ...], cout: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(cin, cout, 1)] + [ConvBNReLU(cin, cout, 3, r) for r in rates])
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(ConvBNReLU(cout * (len(rates) + 2), cout, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [b(x) for b in self.branches]
        outs.append(F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.project(torch.cat(outs, dim=1))


class DeepLabV3Plus(nn.Module):
    """`forward(batch or image [B,3,H,W] 0..1)` -> {"logits": [B, K, H, W]}."""

    def __init__(self, backbone: ResNet, num_classes: int, output_stride: int) -> None:
        super().__init__()
        if output_stride not in ASPP_RATES:
            raise ValueError(f"DeepLabv3+ output_stride {output_stride}; expected one of {sorted(ASPP_RATES)}")
        self.normalize = Normalize()
        self.backbone = backbone
        self.aspp = ASPP(backbone.channels["layer4"], ASPP_RATES[output_stride])
        self.low_level = ConvBNReLU(backbone.channels["layer1"], 48, 1)
        self.decoder = nn.Sequential(ConvBNReLU(256 + 48, 256, 3), ConvBNReLU(256, 256, 3))
        self.classifier = nn.Conv2d(256, num_classes, 1)

    def encode(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ResNet stages of image float [B, 3, H, W] 0..1 ({"layer1": stride 4, ..., "layer4"})."""
        return self.backbone(self.normalize(image))

    def decode(self, feats: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """ASPP + decoder on the stages of `encode`: {"logits": [B, K, *size]}."""
        low = self.low_level(feats["layer1"])  # stride 4
        high = F.interpolate(self.aspp(feats["layer4"]), size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return {"logits": F.interpolate(logits, size=size, mode="bilinear", align_corners=False)}

    def forward(self, batch_or_image: dict[str, Any] | torch.Tensor) -> dict[str, torch.Tensor]:
        image = input_image(batch_or_image)
        return self.decode(self.encode(image), image.shape[-2:])
