"""OCR: Object-Contextual Representations (Yuan, Chen, Wang, ECCV 2020) on a dilated ResNet.

With pixel features x_i (i over the H*W pixels) and soft object regions M [K, H*W] from an
auxiliary head (supervised with cross-entropy, weight AUX_WEIGHT = 0.4):

    region features     f_k  = sum_i softmax_i(M_k)_i x_i                  (SpatialGather)
    pixel-region rel.   w_ik = softmax_k( phi(x_i)^T psi(f_k) / sqrt(d) )  (ObjectAttention)
    object context      y_i  = rho( sum_k w_ik delta(f_k) )
    augmented repr.     z_i  = g([x_i, y_i])  -> 1x1 classifier

phi, psi are two 1x1 conv-BN-ReLU layers, delta and rho one each; d = key channels (256).
As in the ResNet OCRNet of openseg, the auxiliary head reads layer3 and OCR reads layer4,
both at output stride 8.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pcseg.models.image.common import ConvBNReLU, Normalize, input_image
from pcseg.models.image.resnet import ResNet

AUX_WEIGHT = 0.4


class SpatialGather(nn.Module):
    """Region features: feats [B, C, H, W], region logits [B, K, H, W] -> [B, C, K]."""

    def forward(self, feats: torch.Tensor, region_logits: torch.Tensor) -> torch.Tensor:
        weights = F.softmax(region_logits.flatten(2), dim=2)  # [B, K, HW], softmax over pixels
        return torch.bmm(feats.flatten(2), weights.transpose(1, 2))


class ObjectAttention(nn.Module):
    """Object context of every pixel: x [B, C, H, W], regions [B, C, K] -> [B, C, H, W]."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.key_channels = key_channels
        self.f_pixel = nn.Sequential(ConvBNReLU(channels, key_channels), ConvBNReLU(key_channels, key_channels))
        self.f_object = nn.Sequential(ConvBNReLU(channels, key_channels), ConvBNReLU(key_channels, key_channels))
        self.f_down = ConvBNReLU(channels, key_channels)
        self.f_up = ConvBNReLU(key_channels, channels)

    def relation(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """w [B, HW, K]: softmax over regions of phi(x_i) . psi(f_k) / sqrt(d)."""
        query = self.f_pixel(x).flatten(2).transpose(1, 2)            # [B, HW, d]
        key = self.f_object(regions.unsqueeze(-1)).flatten(2)         # [B, d, K]
        return F.softmax(torch.bmm(query, key) / self.key_channels ** 0.5, dim=-1)

    def forward(self, x: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        value = self.f_down(regions.unsqueeze(-1)).flatten(2).transpose(1, 2)  # [B, K, d]
        context = torch.bmm(self.relation(x, regions), value)                 # [B, HW, d]
        context = context.transpose(1, 2).reshape(x.shape[0], self.key_channels, *x.shape[-2:])
        return self.f_up(context)


class OCRHead(nn.Module):
    """Soft regions + OCR: (layer3 [B, C3, h, w], layer4 [B, C4, h, w]) ->
    (logits [B, K, h, w], aux_logits [B, K, h, w])."""

    def __init__(self, aux_channels: int, channels: int, num_classes: int, mid_channels: int = 512,
                 key_channels: int = 256, dropout: float = 0.05) -> None:
        super().__init__()
        self.aux_head = nn.Sequential(ConvBNReLU(aux_channels, mid_channels, 3), nn.Dropout2d(dropout),
                                      nn.Conv2d(mid_channels, num_classes, 1))
        self.conv3x3 = ConvBNReLU(channels, mid_channels, 3)
        self.gather = SpatialGather()
        self.attention = ObjectAttention(mid_channels, key_channels)
        self.fuse = nn.Sequential(ConvBNReLU(2 * mid_channels, mid_channels), nn.Dropout2d(dropout))
        self.classifier = nn.Conv2d(mid_channels, num_classes, 1)

    def forward(self, aux_feats: torch.Tensor, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        aux_logits = self.aux_head(aux_feats)
        x = self.conv3x3(feats)
        context = self.attention(x, self.gather(x, aux_logits))
        return self.classifier(self.fuse(torch.cat([context, x], dim=1))), aux_logits


class OCRNet(nn.Module):
    """`forward(batch or image [B,3,H,W] 0..1)` -> {"logits", "aux_logits"}, both [B, K, H, W]."""

    def __init__(self, backbone: ResNet, num_classes: int) -> None:
        super().__init__()
        self.normalize = Normalize()
        self.backbone = backbone
        self.head = OCRHead(backbone.channels["layer3"], backbone.channels["layer4"], num_classes)

    def encode(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The ResNet stages of image float [B, 3, H, W] 0..1 ({"layer1", ..., "layer4"})."""
        return self.backbone(self.normalize(image))

    def decode(self, feats: dict[str, torch.Tensor], size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """OCR head on the stages of `encode`: {"logits", "aux_logits"}, both [B, K, *size]."""
        logits, aux_logits = self.head(feats["layer3"], feats["layer4"])
        return {"logits": F.interpolate(logits, size=size, mode="bilinear", align_corners=False),
                "aux_logits": F.interpolate(aux_logits, size=size, mode="bilinear", align_corners=False)}

    def forward(self, batch_or_image: dict[str, Any] | torch.Tensor) -> dict[str, torch.Tensor]:
        image = input_image(batch_or_image)
        return self.decode(self.encode(image), image.shape[-2:])
