"""`s4l`: S4L-rotation (Zhai et al., ICCV 2019) as an auxiliary loss of an image segmentor.

Every image of the batch, labelled or not, is rotated by 0, 90, 180 and 270 degrees; a
rotation head (global average pool of the backbone's deepest stage, then one linear layer to
4 classes) predicts which, and its 4-way cross-entropy joins the segmentation loss:

    loss = CE(logits, weak_label) + w * mean_{images, r} CE(head(backbone(rot_r(x))), r)

The unrotated copy shares the segmentation forward pass (its backbone features feed both
heads); the three others run the backbone only. The head is used in training only and is
saved with the method; `predict` is the plain network.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from pcseg.methods.base import Method, MethodContext, network_ce

ROTATIONS = 4


def rotated_copies(image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The rotations 1..3 of image float [B, 3, H, W] (k x 90 degrees counter-clockwise,
    `torch.rot90` on (H, W)) and the rotation labels int64 [4 B] of (unrotated, k=1, 2, 3)."""
    copies = [torch.rot90(image, k, dims=(2, 3)) for k in range(1, ROTATIONS)]
    labels = torch.arange(ROTATIONS, device=image.device).repeat_interleave(image.shape[0])
    return copies, labels


class S4LRotation(Method):
    """model: an `ImageSegmentor` (`encode` / `decode`); rotation_head: Linear(C, 4) on its
    pooled deepest features."""

    def __init__(self, model: nn.Module, weight: float = 1.0, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        if not hasattr(model, "encode") or not hasattr(model, "feature_channels"):
            raise ValueError("method s4l (rotation prediction) needs an image network (data.modality=images)")
        self.model, self.weight = model, weight
        self.rotation_head = nn.Linear(model.feature_channels, ROTATIONS)
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def rotation_logits(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:
        """float [B, 4] from the deepest stage [B, C, h, w]."""
        return self.rotation_head(feats["layer4"].mean(dim=(2, 3)))

    def forward(self, batch: dict) -> dict:
        if "pixel_index" in batch:
            # zero padding sits bottom/right: its position after rotation would give the rotation away
            raise ValueError("method s4l needs the images of a batch to be one size; set data.images.crop_size")
        feats = self.model.encode(batch)
        out = self.model.decode(feats, batch)
        ce = network_ce(out, batch["weak_label"], self.class_weights)
        copies, targets = rotated_copies(batch["image"])
        logits = torch.cat([self.rotation_logits(feats)] +
                           [self.rotation_logits(self.model.encode({"image": c})) for c in copies])
        rotation = F.cross_entropy(logits.float(), targets)
        accuracy = (logits.detach().argmax(1) == targets).float().mean()
        loss = ce + self.weight * rotation
        return {"loss": loss, "ce": ce.detach(), "rotation": rotation.detach(), "rotation_acc": accuracy,
                "logits": out["logits"]}


def build_s4l(ctx: MethodContext) -> S4LRotation:
    weights = ctx.class_weights()
    return S4LRotation(ctx.make_model(), ctx.cfg.method.s4l.weight, weights)
