"""Views of a flat image batch (`pcseg.data.images.flat_batch.collate_flat`) for the methods,
with every pixel row accounted for.

    augment_images   mean teacher's student view: per-image brightness / contrast jitter and a
                     horizontal flip that `ImageSegmentor` undoes on the logits (`hflip`), so
                     row r of the student's and the teacher's logits is the same pixel
    cutmix_images    CPS's CutMix: the batch's unlabelled images mixed in pairs with a box;
                     returns the mixed batch and, per mixed row, the batch row it comes from

All randomness comes from the CPU generator passed in.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from pcseg.weak.pseudo import IGNORE

# area of the pasted box, as a fraction of the image (the CPS code's CutMix proportion range)
CUTMIX_AREA = (0.25, 0.5)


def augment_images(batch: dict, generator: torch.Generator, flip: bool = True, color_jitter: float = 0.2) -> dict:
    """A copy of `batch` whose `image` [B, 3, H, W] has brightness, then contrast (around the
    image's mean grey) scaled by factors in 1 +- color_jitter, clipped to 0..1, and is mirrored
    left-right for images with `hflip` bool [B] set (half of them when `flip`)."""
    image = batch["image"]
    num = image.shape[0]
    u = torch.rand(num, 2, generator=generator).to(image.device, image.dtype)
    brightness = (1 + color_jitter * (2 * u[:, 0] - 1)).view(-1, 1, 1, 1)
    contrast = (1 + color_jitter * (2 * u[:, 1] - 1)).view(-1, 1, 1, 1)
    out = image * brightness
    grey = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - grey) * contrast + grey).clamp(0.0, 1.0)
    flips = torch.rand(num, generator=generator) < 0.5 if flip else torch.zeros(num, dtype=torch.bool)
    flips = flips.to(image.device)
    out = torch.where(flips.view(-1, 1, 1, 1), out.flip(-1), out)
    return {**batch, "image": out, "hflip": flips}


def unlabelled_images(batch: dict) -> torch.Tensor:
    """int64 [n]: indices of the batch's images without any labelled pixel (CPU)."""
    labelled = (batch["weak_label"] != IGNORE).long().cpu()
    per_image = torch.zeros(len(batch["offset"]), dtype=torch.int64).index_add_(0, batch["batch"].cpu(), labelled)
    return torch.nonzero(per_image == 0).flatten()


def box_mask(height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """bool [H, W]: one axis-aligned box inside the image covering a fraction of it drawn from
    CUTMIX_AREA, with a random aspect ratio (side fractions a^t and a^(1-t), t uniform)."""
    lo, hi = CUTMIX_AREA
    u = torch.rand(4, generator=generator, dtype=torch.float64).tolist()
    area = lo + (hi - lo) * u[0]
    side_y = math.exp(u[1] * math.log(area))
    h = min(height, max(1, round(side_y * height)))
    w = min(width, max(1, round(area / side_y * width)))
    y0 = min(int(u[2] * (height - h + 1)), height - h)
    x0 = min(int(u[3] * (width - w + 1)), width - w)
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0:y0 + h, x0:x0 + w] = True
    return mask


def cutmix_images(batch: dict, generator: torch.Generator) -> Optional[tuple[dict, torch.Tensor]]:
    """Mix the unlabelled images u_0..u_{n-1} of `batch` (n >= 2, else None): mixed image i is
    u_i with a box (`box_mask`) of u_{(i+1) mod n} pasted in.

    Returns (mixed batch: image [n, 3, H, W], weak_label / batch [n*H*W], offset, sizes, names;
    src int64 [n*H*W]: the row of `batch` each mixed pixel comes from). The batch's images must
    be one size (no padding), as with `data.images.crop_size`.
    """
    if "pixel_index" in batch:
        raise ValueError("method.cps.cutmix needs the images of a batch to be one size; set data.images.crop_size")
    pick = unlabelled_images(batch)
    n = len(pick)
    if n < 2:
        return None
    image = batch["image"]
    height, width = image.shape[-2:]
    partner = pick.roll(-1)
    masks = torch.stack([box_mask(height, width, generator) for _ in range(n)])
    mixed = torch.where(masks.unsqueeze(1).to(image.device), image[partner.to(image.device)],
                        image[pick.to(image.device)])
    pixel = torch.arange(height * width)
    src = torch.where(masks.reshape(n, -1), partner.unsqueeze(1) * height * width + pixel,
                      pick.unsqueeze(1) * height * width + pixel).reshape(-1)
    weak = batch["weak_label"]
    names = batch.get("names")
    out = {"image": mixed, "weak_label": weak[src.to(weak.device)],
           "batch": torch.arange(n).repeat_interleave(height * width).to(weak.device),
           "offset": (torch.arange(1, n + 1) * height * width).to(weak.device),
           "sizes": torch.tensor([[height, width]] * n),
           "names": [f"{names[a]}+{names[b]}" for a, b in zip(pick.tolist(), partner.tolist())] if names else []}
    return out, src
