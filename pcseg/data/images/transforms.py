"""Training augmentations for image samples, applied to every per-pixel key alike.

Per-pixel keys are PIXEL_KEYS; the image is resampled bilinearly, label-like keys by
nearest neighbour, so no new class value ever appears. Randomness comes only from the
`rng` argument; inputs are never modified.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from pcseg.data.contract import IGNORE
from pcseg.data.images.source import ImageSample

PIXEL_KEYS: tuple[str, ...] = ("image", "label", "instance", "weak_label", "pseudo_label")
_FILL = {"image": 0.0, "instance": -1}


def _pixel_keys(sample: ImageSample) -> list[str]:
    return [k for k in PIXEL_KEYS if k in sample]


def hflip(sample: ImageSample, rng: np.random.Generator, p: float = 0.5) -> ImageSample:
    """Mirror left-right with probability p."""
    out = dict(sample)
    if rng.random() < p:
        for key in _pixel_keys(sample):
            out[key] = np.ascontiguousarray(sample[key][:, ::-1])
    return out


def _resize(array: np.ndarray, height: int, width: int, key: str) -> np.ndarray:
    if key == "image":
        channels = [np.asarray(Image.fromarray(array[..., c]).resize((width, height), Image.BILINEAR))
                    for c in range(array.shape[2])]
        return np.clip(np.stack(channels, axis=-1), 0.0, 1.0).astype(np.float32)
    # Nearest neighbour by index arithmetic: exact for int64 labels of any range.
    rows = np.minimum((np.arange(height) + 0.5) * array.shape[0] / height, array.shape[0] - 1).astype(np.int64)
    cols = np.minimum((np.arange(width) + 0.5) * array.shape[1] / width, array.shape[1] - 1).astype(np.int64)
    return array[rows][:, cols]


def random_scale(sample: ImageSample, rng: np.random.Generator, scale: tuple[float, float] = (0.5, 2.0)) -> ImageSample:
    """Resize by a factor drawn uniformly from `scale`."""
    factor = rng.uniform(*scale)
    h, w = sample["image"].shape[:2]
    nh, nw = max(1, int(round(h * factor))), max(1, int(round(w * factor)))
    out = dict(sample)
    for key in _pixel_keys(sample):
        out[key] = _resize(np.asarray(sample[key]), nh, nw, key)
    return out


def random_crop(sample: ImageSample, rng: np.random.Generator, size: tuple[int, int]) -> ImageSample:
    """A random `size` = (H, W) window; smaller images are first padded bottom/right
    (image 0, labels IGNORE, instance -1) so every crop has exactly that size."""
    ch, cw = size
    h, w = sample["image"].shape[:2]
    ph, pw = max(h, ch), max(w, cw)
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    out = dict(sample)
    for key in _pixel_keys(sample):
        array = np.asarray(sample[key])
        padded = np.full((ph, pw) + array.shape[2:], _FILL.get(key, IGNORE), dtype=array.dtype)
        padded[:h, :w] = array
        out[key] = padded[y0:y0 + ch, x0:x0 + cw].copy()
    return out


def random_colour(sample: ImageSample, rng: np.random.Generator, jitter: float = 0.0,
                  shuffle: bool = False) -> ImageSample:
    """Per channel c: image_c -> gain_c * image_c + offset_c (gain in 1 +- jitter, offset in
    +- jitter / 2), clipped to 0..1; with `shuffle` the channels are also permuted at random.
    Labels are untouched."""
    image = np.asarray(sample["image"], dtype=np.float32)
    gain = rng.uniform(1 - jitter, 1 + jitter, size=3).astype(np.float32)
    offset = rng.uniform(-jitter / 2, jitter / 2, size=3).astype(np.float32)
    order = rng.permutation(3) if shuffle else np.arange(3)
    out = dict(sample)
    out["image"] = np.clip(image[..., order] * gain + offset, 0.0, 1.0).astype(np.float32)
    return out


class TrainTransforms:
    """The training augmentation of an image sample: random scale, random crop, flip, colour.

    scale: (min, max) factor range, (1, 1) = none; crop_size: square crop (None = keep the
    whole image); flip: random horizontal flips; colour_jitter / channel_shuffle: see
    `random_colour` (0 / False = none). Picklable (DataLoader workers).
    """

    def __init__(self, crop_size: int | None = None, scale: tuple[float, float] = (0.5, 2.0), flip: bool = True,
                 colour_jitter: float = 0.0, channel_shuffle: bool = False):
        if len(scale) != 2 or not 0 < scale[0] <= scale[1]:
            raise ValueError(f"config key 'data.images.scale': expected [min, max] with 0 < min <= max, "
                             f"got {list(scale)}")
        if crop_size is not None and crop_size < 1:
            raise ValueError(f"config key 'data.images.crop_size': expected a positive size or null, got {crop_size}")
        if not 0.0 <= colour_jitter < 1.0:
            raise ValueError(f"config key 'data.images.color_jitter': expected 0 <= jitter < 1, got {colour_jitter}")
        self.crop_size, self.scale, self.flip = crop_size, (float(scale[0]), float(scale[1])), flip
        self.colour_jitter, self.channel_shuffle = colour_jitter, channel_shuffle

    def __call__(self, sample: ImageSample, rng: np.random.Generator) -> ImageSample:
        if self.scale != (1.0, 1.0):
            sample = random_scale(sample, rng, self.scale)
        if self.crop_size is not None:
            sample = random_crop(sample, rng, (self.crop_size, self.crop_size))
        if self.flip:
            sample = hflip(sample, rng)
        if self.colour_jitter > 0 or self.channel_shuffle:
            sample = random_colour(sample, rng, self.colour_jitter, self.channel_shuffle)
        return sample
