"""Segmentor: points -> voxels -> backbone -> per-point logits."""
from __future__ import annotations

from torch import nn

from pcseg.models.backbones import build_backbone
from pcseg.sparse import SparseTensor, quantize


class Segmentor(nn.Module):
    """Voxelizes a batch at `voxel_size` inside forward and carries logits back to its points.

    The backbone's final 1x1 conv (with bias) is the linear classification head, as in
    MinkowskiEngine's MinkUNet: `backbone(in_channels, num_classes)`.
    """

    def __init__(self, backbone: str, in_channels: int, num_classes: int, voxel_size: float):
        super().__init__()
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be > 0, got {voxel_size}")
        self.num_classes = num_classes
        self.voxel_size = voxel_size
        self.backbone = build_backbone(backbone, in_channels, num_classes)

    def forward(self, batch: dict, return_features: bool = False) -> dict:
        """batch: `coord` float32 [N, 3], `feat` float32 [N, C], `batch` int64 [N] (collate_scenes).

        Returns `logits` float [N, num_classes] on the batch's original points; with
        `return_features` also `features` {stride: SparseTensor of encoder features} and
        `inverse` int64 [N] (point -> voxel row of the stride-1 coordinates).
        """
        coords, inverse, feats, _ = quantize(batch["coord"], self.voxel_size, batch["batch"], batch["feat"])
        x = SparseTensor(feats, coords)
        if not return_features:
            return {"logits": self.backbone(x).slice(inverse)}
        out, features = self.backbone(x, return_features=True)
        return {"logits": out.slice(inverse), "features": features, "inverse": inverse}

