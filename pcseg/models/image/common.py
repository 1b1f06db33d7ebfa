"""Pieces shared by the 2D networks: input handling and conv-BN-ReLU."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

# torchvision's ImageNet statistics: pretrained ResNets expect inputs normalised by them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_image(batch_or_image: dict[str, Any] | torch.Tensor) -> torch.Tensor:
    """float [B, 3, H, W] 0..1 from a batch dict (its `image`) or the tensor itself."""
    image = batch_or_image["image"] if isinstance(batch_or_image, dict) else batch_or_image
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image networks expect image float [B, 3, H, W] in 0..1, got {shape}")
    return image


class Normalize(nn.Module):
    """(x - mean) / std per channel; buffers are not saved, so state_dicts match torchvision."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, kernel, padding=dilation * (kernel // 2), dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
