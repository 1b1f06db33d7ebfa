"""From a resolved config to the pieces of a run: scene sources, weak-label protocol,
training batches, network and method (`build_setup`), and the network alone for
evaluation/prediction (`build_model`). With `data.modality: images` each of them hands over
to `pcseg.engine.build_images`, which builds the same pieces for images."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from pcseg.config import apply_overrides, config_from_dict
from pcseg.data.collate import collate_scenes, feature_channels
from pcseg.data.contract import IGNORE, Scene
from pcseg.data.dataset import SceneDataset
from pcseg.data.images.dataset import ImageDataset
from pcseg.data.meta import DatasetMeta, load_dataset_meta
from pcseg.data.propagated import PropagatedSource, build_propagator
from pcseg.data.sampler import PairSampler
from pcseg.data.transforms import train_transforms
from pcseg.engine import distributed as dist
from pcseg.engine.checkpoint import load_checkpoint, model_state
from pcseg.engine.evaluate import SceneSource
from pcseg.engine.inference import predict_scene
from pcseg.engine.loader import EpochLoader
from pcseg.engine.trainer import TrainSetup
from pcseg.methods import MethodContext, build_method
from pcseg.weak.protocol import Protocol, iter_source, make_protocol
from pcseg.weak.protocol_file import load_protocol

# Validation rooms come from another source seed; room seeds are SeedSequence([seed, index]),
# so the two sets never share a room.
VAL_SEED_OFFSET = 1
MODALITIES = ("points", "images")


def is_images(cfg: DictConfig) -> bool:
    """Whether the config trains on images (`data.modality`); an unknown modality is an error."""
    if cfg.data.modality not in MODALITIES:
        raise ValueError(f"config key 'data.modality': unknown modality {cfg.data.modality!r}; "
                         f"valid: {', '.join(MODALITIES)}")
    return cfg.data.modality == "images"


class CachedSource:
    """Keeps every scene of `source` in memory after its first load (synthetic rooms are
    generated on each load, ~0.4 s per 60k-point room; a training run loads each many times)."""

    def __init__(self, source: SceneSource):
        self.source = source
        self._scenes: dict[str, Scene] = {}

    def names(self) -> list[str]:
        return self.source.names()

    def load(self, name: str) -> Scene:
        if name not in self._scenes:
            self._scenes[name] = self.source.load(name)
        # a shallow copy: callers may add keys, and never write into the arrays (contract)
        return dict(self._scenes[name])

    def preload(self, workers: int = 1) -> None:
        """Load every scene now, in `workers` processes (each scene is a function of its name
        alone, so the scenes are the same whatever the number of workers)."""
        todo = [name for name in self.names() if name not in self._scenes]
        if workers <= 1 or len(todo) < 2:
            for name in todo:
                self.load(name)
            return
        # spawn: the parent may already run torch threads, which fork does not carry safely
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for name, scene in zip(todo, pool.map(self.source.load, todo, chunksize=max(1, len(todo) // (4 * workers)))):
                self._scenes[name] = scene


class UnionSource:
    """The scenes of several sources, in order (S3DIS trains on five areas, each a split)."""

    def __init__(self, sources: Sequence[SceneSource]):
        self._where: dict[str, SceneSource] = {}
        for source in sources:
            for name in source.names():
                if name in self._where:
                    raise ValueError(f"scene {name!r} appears in two of the splits being joined")
                self._where[name] = source

    def names(self) -> list[str]:
        return list(self._where)

    def load(self, name: str) -> Scene:
        return self._where[name].load(name)


class SubsetSource:
    """The scenes `names` of `source`, in that order (`data.train_scenes` / `data.val_scenes`)."""

    def __init__(self, source: SceneSource, names: Sequence[str], key: str):
        missing = sorted(set(names) - set(source.names()))
        if missing:
            raise ValueError(f"config key '{key}': scenes not in the selected split(s): {', '.join(missing)}")
        self.source, self._names = source, list(names)

    def names(self) -> list[str]:
        return list(self._names)

    def load(self, name: str) -> Scene:
        return self.source.load(name)


def build_source(cfg: DictConfig, split: str) -> SceneSource:
    """The scenes (or images) of `split` ("train" or "val") as the config describes them."""
    if is_images(cfg):
        from pcseg.engine.build_images import image_source
        return image_source(cfg, split)
    source = _split_source(cfg, split)
    key = "data.train_scenes" if split == "train" else "data.val_scenes"
    names = cfg.data.train_scenes if split == "train" else cfg.data.val_scenes
    return SubsetSource(source, list(names), key) if names else source


def _split_source(cfg: DictConfig, split: str) -> SceneSource:
    d = cfg.data
    if d.source == "synthetic":
        from pcseg.data.synthetic import SyntheticRoomSource
        if split == "train":
            return CachedSource(SyntheticRoomSource(d.train_rooms, seed=d.synthetic_seed, num_points=d.room_points))
        return CachedSource(SyntheticRoomSource(d.val_rooms, seed=d.synthetic_seed + VAL_SEED_OFFSET,
                                                num_points=d.room_points))
    if d.source == "store":
        from pcseg.data.store import SceneStore
        if not d.store:
            raise ValueError("config key 'data.store': data.source=store needs the path of an HDF5 store")
        splits = [x.strip() for x in (d.train_split if split == "train" else d.val_split).split(",")]
        stores = [SceneStore(d.store, split=x) for x in splits]
        return stores[0] if len(stores) == 1 else UnionSource(stores)
    raise ValueError(f"config key 'data.source': unknown source {d.source!r}; valid: synthetic, store")


def source_identity(cfg: DictConfig) -> str:
    """What a protocol made on the fly records as the data it was sampled from."""
    d = cfg.data
    if d.source == "synthetic":
        return f"synthetic:{d.train_rooms}:{d.synthetic_seed}:{d.room_points}"
    return f"{d.store}:{d.train_split}"


def build_protocol(cfg: DictConfig, source: SceneSource) -> Optional[Protocol]:
    """`data.protocol`: None (all labels), a protocol file, or a spec sampled now ("ratio:0.01")."""
    if is_images(cfg):
        from pcseg.data.images.from_config import build_image_protocol
        return build_image_protocol(cfg, source)
    spec = cfg.data.protocol
    if spec is None:
        return None
    if Path(spec).is_file() or spec.endswith(".npz") or "/" in spec:
        return load_protocol(spec)
    return make_protocol(spec, iter_source(source), seed=cfg.data.protocol_seed, source=source_identity(cfg),
                         dataset=cfg.data.dataset)


def labelled_histogram(dataset: SceneDataset | ImageDataset, num_classes: int) -> np.ndarray:
    """int64 [K] labelled points per class: the protocol's labels, or every label without one."""
    if dataset.protocol is not None:
        labels = [dataset.protocol.entry(n).labels for n in dataset.names]
    else:
        labels = [np.asarray(dataset.source.load(n)["label"]).reshape(-1) for n in dataset.names]
    flat = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    return np.bincount(flat[flat != IGNORE], minlength=num_classes).astype(np.int64)[:num_classes]


def build_model(cfg: DictConfig, num_classes: int) -> nn.Module:
    """The Segmentor named by `model.name` (voxelizes inside, logits on original points), or
    the ImageSegmentor with data.modality=images (logits on every pixel)."""
    if is_images(cfg):
        from pcseg.engine.build_images import image_model
        return image_model(cfg, num_classes)
    from pcseg.models.segmentor import Segmentor
    return Segmentor(cfg.model.name, feature_channels(cfg.data.features), num_classes, cfg.data.voxel_size)


def load_trained(path: str | Path, device: torch.device) -> tuple[nn.Module, DictConfig, DatasetMeta]:
    """The inference network of a checkpoint (eval mode, on `device`), its config and dataset facts."""
    ckpt = load_checkpoint(path)
    cfg = config_from_dict(ckpt["config"])
    meta = load_dataset_meta(cfg.data.dataset)
    # the checkpoint holds every weight: no pretrained file is read (it need not exist here)
    model = build_model(apply_overrides(cfg, ["model.pretrained=null"]), meta.num_classes)
    model.load_state_dict(model_state(ckpt))
    return model.to(device).eval(), cfg, meta


def scene_batcher(features: Sequence[str]) -> Callable[[Scene], dict]:
    """scene -> batch of that one scene (validation and prediction)."""
    features = tuple(features)

    def to_batch(scene: Scene) -> dict:
        return collate_scenes([scene], features)
    return to_batch


def scene_inference(cfg: DictConfig) -> tuple[Callable[[Scene], dict], Callable[..., np.ndarray]]:
    """(scene -> batch of that one scene, predictor `(logits_fn, scene, votes, max_points) ->
    probabilities [N, K]`) of the config's modality, for validation, evaluation and rounds."""
    if is_images(cfg):
        from pcseg.engine.build_images import image_inference
        return image_inference(cfg)
    return scene_batcher(cfg.data.features), predict_scene


def train_dataset(cfg: DictConfig, source: SceneSource) -> SceneDataset | ImageDataset:
    """The training scenes of `source` with the config's weak labels, unaugmented."""
    if is_images(cfg):
        from pcseg.engine.build_images import image_dataset
        return image_dataset(cfg, source)
    return SceneDataset(source, build_protocol(cfg, source), None, cfg.data.features, seed=cfg.train.seed)


class _MakeBatch:
    """Picklable (DataLoader workers) batch builder: load, weak labels, augment, collate."""

    def __init__(self, dataset: SceneDataset, augment: bool):
        self.dataset, self.augment = dataset, augment

    def __call__(self, indices: Sequence[int], rng: np.random.Generator) -> dict:
        scenes = []
        for i in indices:
            scene = self.dataset.load(i)
            if self.augment and self.dataset.transforms is not None:
                scene = self.dataset.transforms(scene, rng)
            scenes.append(scene)
        return collate_scenes(scenes, self.dataset.features)


def build_setup(cfg: DictConfig, train_source: Optional[SceneSource] = None,
                val_source: Optional[SceneSource] = None) -> TrainSetup:
    """All pieces of a training run (seeds torch with `train.seed` before building the network).

    train_source / val_source: scenes to use instead of building them from `cfg.data`
    (the demo shares one set of generated rooms between its runs).
    """
    if is_images(cfg):
        from pcseg.engine.build_images import build_image_setup
        return build_image_setup(cfg, train_source, val_source)
    meta = load_dataset_meta(cfg.data.dataset)
    train_source = train_source if train_source is not None else build_source(cfg, "train")
    protocol = build_protocol(cfg, train_source)
    transforms = train_transforms(cfg.data.max_points) if cfg.data.augment else None
    dataset = SceneDataset(train_source, protocol, transforms, cfg.data.features, seed=cfg.train.seed)
    counts = labelled_histogram(dataset, meta.num_classes)
    torch.manual_seed(cfg.train.seed)
    ctx = MethodContext(cfg=cfg, make_model=lambda: build_model(cfg, meta.num_classes),
                        num_classes=meta.num_classes, class_counts=counts)
    method = build_method(ctx)
    if getattr(method, "needs_propagated_labels", False):
        if protocol is None:
            raise ValueError(f"config key 'method.name': {cfg.method.name!r} spreads weak labels "
                             "(method.propagation), and data.protocol is null (every label); set data.protocol")
        propagated = PropagatedSource(train_source, protocol, build_propagator(cfg.method.propagation))
        dataset = SceneDataset(propagated, protocol, transforms, cfg.data.features, seed=cfg.train.seed)
    pairs = None
    if getattr(method, "needs_pairs", False):
        # positions 2k, 2k + 1 of every batch share a labelled class (DSP's cross-sample step)
        pairs = PairSampler(dataset.labelled_classes(), pairs_per_batch=max(1, cfg.data.batch_size // 2),
                            seed=cfg.train.seed, rank=dist.rank(), world_size=dist.world_size(), even=True)
    loader = EpochLoader(len(dataset), _MakeBatch(dataset, cfg.data.augment), cfg.data.batch_size,
                         cfg.train.seed, dist.rank(), dist.world_size(), cfg.data.num_workers, pairs)
    val_source = val_source if val_source is not None else build_source(cfg, "val")
    return TrainSetup(cfg=cfg, method=method, train_loader=loader, val_source=val_source,
                      to_batch=scene_batcher(cfg.data.features), class_names=list(meta.class_names),
                      class_counts=counts)
