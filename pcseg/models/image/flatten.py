"""Image outputs -> the modality-free flat contract of pcseg.weak and the methods."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from pcseg.data.contract import IGNORE
from pcseg.models.image.ocr import AUX_WEIGHT


def flatten_logits(logits: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits [B, K, H, W], label [B, H, W] -> (logits [M, K], labels [M], group [M]) with
    M = B*H*W in (image, row, column) order; group is the image index (int64)."""
    b, k, h, w = logits.shape
    if tuple(label.shape) != (b, h, w):
        raise ValueError(f"flatten_logits: label {tuple(label.shape)} does not match logits {tuple(logits.shape)}")
    flat = logits.permute(0, 2, 3, 1).reshape(-1, k)
    group = torch.arange(b, device=logits.device).repeat_interleave(h * w)
    return flat, label.reshape(-1), group


def segmentation_loss(output: dict[str, torch.Tensor], label: torch.Tensor) -> dict[str, torch.Tensor]:
    """Supervised loss of an image network's output on label [B, H, W] (IGNORE skipped):
    {"loss", "loss_ce"} plus "loss_aux" (weight AUX_WEIGHT, OCR's soft-region supervision)
    when the output has `aux_logits`. No labelled pixel gives a zero loss that still backprops."""
    def ce(logits: torch.Tensor) -> torch.Tensor:
        if not bool((label != IGNORE).any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits, label, ignore_index=IGNORE)

    terms = {"loss_ce": ce(output["logits"])}
    if "aux_logits" in output:
        terms["loss_aux"] = ce(output["aux_logits"])
    terms["loss"] = terms["loss_ce"] + AUX_WEIGHT * terms.get("loss_aux", 0.0)
    return terms
