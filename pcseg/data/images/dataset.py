"""`ImageDataset`: the images of a source with their weak labels (the 2D `SceneDataset`).

Item i = source.load(names[i]) -> `weak_label` [H, W] from the protocol (or every label
without one) -> optional training transforms `t(sample, rng)`. The dense `label` is kept for
evaluation only.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from pcseg.data.images.protocols import apply_image_protocol
from pcseg.data.images.source import ImageSample
from pcseg.weak.protocol import Protocol, SceneSource

ImageTransform = Callable[[ImageSample, np.random.Generator], ImageSample]


class ImageDataset:
    """Images of `source` (`names()` / `load(name)`); `protocol` None = full supervision."""

    def __init__(self, source: SceneSource, protocol: Optional[Protocol] = None,
                 transforms: Optional[ImageTransform] = None):
        self.source = source
        self.names = list(source.names())
        self.protocol = protocol
        self.transforms = transforms
        if protocol is not None:
            missing = [n for n in self.names if n not in protocol.scenes]
            if missing:
                raise ValueError(f"protocol {protocol.path or protocol.spec} (made from {protocol.source}) has no "
                                 f"entry for {len(missing)} image(s) of the data, e.g. {', '.join(missing[:3])}")

    def __len__(self) -> int:
        return len(self.names)

    def load(self, index: int) -> ImageSample:
        """Image `index` with `weak_label` int64 [H, W], before augmentation."""
        name = self.names[index]
        sample = dict(self.source.load(name))
        sample["name"] = name
        if self.protocol is not None:
            return apply_image_protocol(sample, self.protocol)
        sample["weak_label"] = np.asarray(sample["label"], dtype=np.int64).copy()
        return sample

    def has_labels(self) -> list[bool]:
        """Per image: whether it has at least one labelled pixel (read from the protocol;
        without one every image counts as labelled)."""
        if self.protocol is None:
            return [True] * len(self.names)
        return [len(self.protocol.entry(n).indices) > 0 for n in self.names]
