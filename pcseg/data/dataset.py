"""`SceneDataset`: a torch Dataset over any scene source, with weak labels and augmentation.

Item i = source.load(names[i]) -> protocol (weak_label) -> transforms. Augmentation draws
from a generator seeded by (seed, epoch, i), so a run resumed at epoch e sees exactly the
batches the original run saw; call `set_epoch(e)` before iterating each epoch (DataLoader
workers copy the dataset when the iterator is created, so set it before `iter(loader)`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from pcseg.data.collate import check_features, collate_scenes
from pcseg.data.contract import IGNORE, Scene
from pcseg.weak.protocol import Protocol, SceneSource, apply_protocol, iter_source, make_protocol
from pcseg.weak.protocol_file import load_protocol

SceneTransform = Callable[[Scene, np.random.Generator], Scene]


def resolve_protocol(value: str | None, source: SceneSource, seed: int, source_id: str = "") -> Protocol | None:
    """The protocol a config's `data.protocol` names: None (full labels), a protocol file
    (an existing path, or any value ending in .npz), or a spec ("ratio:0.01") sampled here
    from `source` with `seed` (the same points `pcseg weak-labels make` would write)."""
    if value is None:
        return None
    if Path(value).is_file() or str(value).endswith(".npz"):
        return load_protocol(value)
    return make_protocol(value, iter_source(source), seed, source_id or type(source).__name__)


class SceneDataset(Dataset):
    """Scenes of `source` (`names()`/`load(name)`), as contract scene dicts.

    protocol: a `Protocol` (see `pcseg.weak`): `weak_label` = `label` on its points, IGNORE
    elsewhere; None = full supervision (`weak_label` = `label`). The dense `label` is kept
    for evaluation. transforms: `t(scene, rng) -> scene` (e.g. `pcseg.data.transforms.Compose`).
    features: input feature names concatenated into `feat` by `self.collate` (DataLoader's
    `collate_fn`).
    """

    def __init__(self, source: SceneSource, protocol: Protocol | None = None,
                 transforms: SceneTransform | None = None, features: Sequence[str] = ("color",),
                 seed: int = 0):
        check_features(features)
        self.source = source
        self.names = list(source.names())
        self.protocol = protocol
        self.transforms = transforms
        self.features = tuple(features)
        self.seed = int(seed)
        self.epoch = 0
        if protocol is not None:
            missing = [n for n in self.names if n not in protocol.scenes]
            if missing:
                where = protocol.path or protocol.spec
                raise ValueError(f"protocol {where} (made from {protocol.source}) has no entry for "
                                 f"{len(missing)} scene(s) of the data, e.g. {', '.join(missing[:3])}")

    def __len__(self) -> int:
        return len(self.names)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def generator(self, index: int) -> np.random.Generator:
        """The augmentation generator of item `index` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def load(self, index: int) -> Scene:
        """Item `index` with weak labels applied, before augmentation."""
        name = self.names[index]
        scene = dict(self.source.load(name))
        scene["name"] = name
        if self.protocol is not None:
            return apply_protocol(scene, self.protocol, name=name)
        if "label" in scene:
            scene["weak_label"] = np.asarray(scene["label"], dtype=np.int64).copy()
        return scene

    def __getitem__(self, index: int) -> Scene:
        scene = self.load(index)
        if self.transforms is not None:
            scene = self.transforms(scene, self.generator(index))
        return scene

    def collate(self, scenes: Sequence[Scene]) -> dict:
        """`collate_scenes` with this dataset's features: pass as a DataLoader's `collate_fn`."""
        return collate_scenes(scenes, self.features)

    def labelled_classes(self) -> list[set[int]]:
        """Per item, the classes that have at least one weak label (what DSP pairs on).
        Read from the protocol; without one, every scene's labels are loaded."""
        if self.protocol is not None:
            return [self.protocol.labelled_classes(n) for n in self.names]
        out = []
        for name in self.names:
            label = np.asarray(self.source.load(name)["label"])
            out.append(set(int(c) for c in np.unique(label[label != IGNORE])))
        return out
