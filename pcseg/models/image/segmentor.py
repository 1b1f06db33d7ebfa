"""`ImageSegmentor`: an image network behind the flat contract of the methods.

    model(batch)["logits"]   float [M, K]   one row per real pixel of the batch, in the order
                                            of `collate_flat` (image, row, column)

so `model(batch)["logits"]` and `batch["weak_label"]` [M] line up row for row exactly as a
3D Segmentor's logits and a scene batch's labels do. OCR's soft-region logits come along
as `aux_logits` [M, K] (the methods supervise them, weight AUX_WEIGHT).

A batch may carry `hflip` bool [B]: images the caller mirrored left-right (mean teacher's
student view); their logits are mirrored back before flattening, so row r stays pixel r.
"""
from __future__ import annotations

import torch
from torch import nn

from pcseg.models.image import build_image_model
from pcseg.models.image.common import input_image


class ImageSegmentor(nn.Module):
    """net: a network of IMAGE_MODELS (with `encode(image)` / `decode(feats, size)`)."""

    def __init__(self, name: str, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.net = build_image_model(name, num_classes)

    @property
    def feature_channels(self) -> int:
        """Channels of the deepest backbone stage (`encode(batch)["layer4"]`)."""
        return int(self.net.backbone.channels["layer4"])

    def encode(self, batch: dict) -> dict[str, torch.Tensor]:
        """Backbone stages of batch["image"] float [B, 3, H, W] ({"layer1", ..., "layer4"})."""
        return self.net.encode(input_image(batch))

    def decode(self, feats: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """Flat outputs of the head on `encode`'s stages: {"logits": [M, K], "aux_logits" (OCR)}."""
        out = self.net.decode(feats, batch["image"].shape[-2:])
        return {key: self.flatten(value, batch) for key, value in out.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.decode(self.encode(batch), batch)

    @staticmethod
    def flatten(grid: torch.Tensor, batch: dict) -> torch.Tensor:
        """[B, K, H, W] -> [M, K]: mirrored images (`hflip`) mirrored back, padding dropped."""
        if "hflip" in batch:
            flip = batch["hflip"].to(grid.device).view(-1, 1, 1, 1)
            grid = torch.where(flip, grid.flip(-1), grid)
        flat = grid.permute(0, 2, 3, 1).reshape(-1, grid.shape[1])
        if "pixel_index" in batch:
            flat = flat[batch["pixel_index"].to(flat.device)]
        return flat
