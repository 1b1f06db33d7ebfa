"""The image branch of `pcseg.engine.build` (`data.modality: images`): sources, weak-label
protocol, batches, network and method - the same `TrainSetup`, `Trainer` and method classes
as 3D.

Batches follow the flat contract (`collate_flat`): `weak_label` [M] over the real pixels of
all images, `batch` / `offset` as for scenes, and the network is an `ImageSegmentor` whose
`logits` are [M, K]. The modality's views go to the methods through the `MethodContext`:
mean teacher's `augment_images`, CPS's `cutmix_images`.
"""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

from pcseg.data.batch_samplers import LabelledMixSampler
from pcseg.data.images.dataset import ImageDataset
from pcseg.data.images.flat_batch import collate_flat
from pcseg.data.images.from_config import build_image_protocol, build_image_source
from pcseg.data.images.source import ImageSample
from pcseg.data.images.transforms import TrainTransforms
from pcseg.data.meta import load_dataset_meta
from pcseg.engine import distributed as dist
from pcseg.engine.build import CachedSource, SubsetSource, labelled_histogram
from pcseg.engine.evaluate import SceneSource
from pcseg.engine.image_inference import ImagePredictor
from pcseg.engine.loader import EpochLoader
from pcseg.engine.trainer import TrainSetup
from pcseg.methods import MethodContext, build_method
from pcseg.methods.image_views import augment_images, cutmix_images
from pcseg.models.image import IMAGE_MODELS, load_pretrained
from pcseg.models.image.segmentor import ImageSegmentor

# 3D-only methods (they act on MinkUNet encoder levels)
POINTS_ONLY_METHODS = ("dsp",)


def image_source(cfg: DictConfig, split: str) -> SceneSource:
    """The images of `split` as the config describes them (generated ones cached in memory,
    `data.train_scenes` / `data.val_scenes` selecting by name)."""
    source = build_image_source(cfg, split)
    if cfg.data.source == "synthetic":
        source = CachedSource(source)
    key = "data.train_scenes" if split == "train" else "data.val_scenes"
    names = cfg.data.train_scenes if split == "train" else cfg.data.val_scenes
    return SubsetSource(source, list(names), key) if names else source


def image_model(cfg: DictConfig, num_classes: int) -> ImageSegmentor:
    """The `ImageSegmentor` of `model.name` (a key of IMAGE_MODELS), its ResNet loaded from
    `model.pretrained` when set (the heads keep their random initialisation)."""
    if cfg.model.name not in IMAGE_MODELS:
        raise ValueError(f"config key 'model.name': {cfg.model.name!r} is not an image network; valid with "
                         f"data.modality=images: {', '.join(IMAGE_MODELS)}")
    model = ImageSegmentor(cfg.model.name, num_classes)
    if cfg.model.pretrained:
        try:
            load_pretrained(model.net.backbone, cfg.model.pretrained)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"config key 'model.pretrained': {err}") from None
    return model


def image_inference(cfg: DictConfig) -> tuple[Callable[[ImageSample], dict], ImagePredictor]:
    """(sample -> batch of that one image, predictor tiling by data.images.patch / stride)."""
    def to_batch(sample: ImageSample) -> dict:
        return collate_flat([sample])
    return to_batch, ImagePredictor(cfg.data.images.patch, cfg.data.images.stride)


def image_dataset(cfg: DictConfig, source: SceneSource, augment: bool = False) -> ImageDataset:
    """The training images of `source` with the config's protocol (and its augmentation)."""
    im = cfg.data.images
    protocol = build_image_protocol(cfg, source)
    if protocol is not None and "tags" in protocol.extra:
        raise ValueError(f"config key 'data.protocol': {protocol.path or protocol.spec} holds image-level tags, "
                         "which label no pixel, and no training method reads tags")
    transforms = TrainTransforms(im.crop_size, tuple(im.scale), im.flip, im.color_jitter,
                                 im.channel_shuffle) if augment else None
    return ImageDataset(source, protocol, transforms)


class _MakeImageBatch:
    """Picklable (DataLoader workers) batch builder: load, weak labels, augment, collate_flat."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __call__(self, indices: Sequence[int], rng: np.random.Generator) -> dict:
        samples = []
        for i in indices:
            sample = self.dataset.load(i)
            if self.dataset.transforms is not None:
                sample = self.dataset.transforms(sample, rng)
            samples.append(sample)
        return collate_flat(samples)


def build_image_setup(cfg: DictConfig, train_source: Optional[SceneSource] = None,
                      val_source: Optional[SceneSource] = None) -> TrainSetup:
    """All pieces of an image training run (seeds torch with `train.seed` before the networks)."""
    if cfg.method.name in POINTS_ONLY_METHODS:
        raise ValueError(f"config key 'method.name': {cfg.method.name} works on 3D scenes only "
                         "(MinkUNet encoder levels), not with data.modality=images")
    meta = load_dataset_meta(cfg.data.dataset)
    train_source = train_source if train_source is not None else image_source(cfg, "train")
    dataset = image_dataset(cfg, train_source, cfg.data.augment)
    counts = labelled_histogram(dataset, meta.num_classes)
    torch.manual_seed(cfg.train.seed)
    mt = cfg.method.mean_teacher
    ctx = MethodContext(cfg=cfg, make_model=lambda: image_model(cfg, meta.num_classes),
                        num_classes=meta.num_classes, class_counts=counts,
                        augment=partial(augment_images, flip=mt.flip, color_jitter=mt.color_jitter),
                        mix=cutmix_images)
    method = build_method(ctx)
    if getattr(method, "needs_propagated_labels", False):
        raise ValueError(f"config key 'method.name': {cfg.method.name} needs labels propagated through 3D "
                         "scenes (pcseg.data.propagated), which the image branch does not make")
    mix = None
    if cfg.data.images.labelled_per_batch is not None:
        mix = LabelledMixSampler(dataset.has_labels(), cfg.data.batch_size, cfg.data.images.labelled_per_batch,
                                 cfg.train.seed, dist.rank(), dist.world_size())
    loader = EpochLoader(len(dataset), _MakeImageBatch(dataset), cfg.data.batch_size, cfg.train.seed,
                         dist.rank(), dist.world_size(), cfg.data.num_workers, mix)
    val_source = val_source if val_source is not None else image_source(cfg, "val")
    to_batch, predictor = image_inference(cfg)
    return TrainSetup(cfg=cfg, method=method, train_loader=loader, val_source=val_source, to_batch=to_batch,
                      class_names=list(meta.class_names), class_counts=counts, predict_scene=predictor)
