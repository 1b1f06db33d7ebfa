"""Full-resolution prediction of one image: tiles for large images, a flip vote.

`logits_fn(sample) -> float [h*w, K]` runs the network on a (sub)image (`collate_flat` of
that one sample, row-major pixels). Around it, `ImagePredictor(patch, stride)`:
- tiles: an image larger than `patch` along an axis is cut into overlapping patch x patch
  tiles every `stride` px (`pcseg.data.images.tiling`); tile logits are averaged over overlaps;
- votes: 1 = plain, 2 = also the mirrored image (its logits mirrored back); softmax averaged.
It has the signature of `pcseg.engine.inference.predict_scene`, so evaluation and the trainer
take either.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from pcseg.data.images.source import ImageSample
from pcseg.data.images.tiling import reassemble_logits, tile_boxes
from pcseg.engine.inference import LogitsFn

IMAGE_VOTES = (1, 2)


class ImagePredictor:
    """`predictor(logits_fn, sample, votes) -> float32 [H*W, K]` class probabilities of every
    pixel in row-major order. patch None: the whole image in one pass."""

    def __init__(self, patch: Optional[int] = None, stride: int = 512):
        self.patch, self.stride = patch, stride

    def grid_logits(self, logits_fn: LogitsFn, image: np.ndarray) -> torch.Tensor:
        """float [K, H, W] logits of image float32 [H, W, 3], tile by tile when it is large."""
        height, width = image.shape[:2]

        def run(part: np.ndarray) -> torch.Tensor:
            flat = logits_fn({"image": np.ascontiguousarray(part), "name": "image"})
            return flat.reshape(part.shape[0], part.shape[1], -1).permute(2, 0, 1)

        if self.patch is None or (height <= self.patch and width <= self.patch):
            return run(image)
        boxes = tile_boxes(height, width, self.patch, self.stride)
        return reassemble_logits([run(image[y0:y1, x0:x1]) for y0, x0, y1, x1 in boxes], boxes, height, width)

    @torch.no_grad()
    def __call__(self, logits_fn: LogitsFn, sample: ImageSample, votes: int = 1,
                 max_points: Optional[int] = None) -> np.ndarray:
        """max_points: the 3D chunking key, unused here (images tile by `patch`)."""
        if votes not in IMAGE_VOTES:
            raise ValueError(f"image prediction takes votes 1 or 2 (plus the mirrored image), got {votes}")
        image = np.asarray(sample["image"], dtype=np.float32)
        total: Optional[torch.Tensor] = None
        for vote in range(votes):
            view = image if vote == 0 else image[:, ::-1]
            grid = self.grid_logits(logits_fn, view)
            if vote == 1:
                grid = grid.flip(-1)
            prob = torch.softmax(grid.float(), dim=0)
            total = prob if total is None else total + prob
        assert total is not None
        prob = (total / votes).permute(1, 2, 0).reshape(image.shape[0] * image.shape[1], -1)
        return prob.cpu().numpy()
