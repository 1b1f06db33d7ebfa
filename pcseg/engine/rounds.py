"""Offline self-training rounds: train -> pseudo-label the training scenes -> retrain.

    results = run_rounds(cfg, "runs/st", torch.device("cpu"))

Round 0 trains on the weak labels alone. After each round the trained network predicts every
training scene (full scene, no augmentation); unlabelled points get pseudo labels, chosen by
DARS (`method.pseudo.dars: true`: per-class thresholds from a confidence histogram streamed
over all scenes, so the pseudo labels follow the labelled class prior) or by a plain threshold.
They go into each scene's `pseudo_label` (labels are never overwritten) and the next round
trains a fresh network on them with `self_training` in offline mode:
    loss = CE(weak labels) + weight * CE(pseudo labels).
Each round writes its own run folder `round<r>/`; `rounds.json` sums them up, including the
pseudo labels' accuracy against the hidden dense labels (evaluation only, never trained on).
Single process: the pseudo-labelling pass is not sharded.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from pcseg.config import apply_overrides
from pcseg.data.contract import IGNORE, Scene
from pcseg.data.dataset import SceneDataset
from pcseg.data.images.dataset import ImageDataset
from pcseg.engine.build import build_setup, build_source, scene_inference, train_dataset
from pcseg.engine.evaluate import SceneSource
from pcseg.engine.trainer import Trainer, make_logits_fn
from pcseg.methods.self_training import select_pseudo_labels
from pcseg.weak.dars import ConfidenceHistogram, dars_thresholds
from pcseg.weak.pseudo import class_prior


class PseudoLabelledSource:
    """`source`'s scenes with `pseudo_label` added from `pseudo` (name -> int64 [N] labels; images:
    [H*W] row-major, served as [H, W])."""

    def __init__(self, source: SceneSource, pseudo: dict[str, np.ndarray]):
        self.source, self.pseudo = source, pseudo

    def names(self) -> list[str]:
        return self.source.names()

    def load(self, name: str) -> Scene:
        scene = dict(self.source.load(name))
        labels = self.pseudo[name]
        shape = np.shape(scene["label"])  # [N] points, or [H, W] pixels (labels are row-major)
        if labels.size != int(np.prod(shape)):
            raise ValueError(f"scene {name!r}: {labels.size} pseudo labels for {int(np.prod(shape))} points")
        scene["pseudo_label"] = labels.reshape(shape)
        return scene


def _flat_weak(scene: Scene) -> torch.Tensor:
    """int64 [N] weak labels in the rows of the logits (images: row-major pixels)."""
    return torch.from_numpy(np.asarray(scene["weak_label"], dtype=np.int64).reshape(-1))


def make_pseudo_labels(logits_fn: Callable[[Scene], torch.Tensor], dataset: SceneDataset | ImageDataset,
                       cfg: DictConfig, class_counts: np.ndarray, progress: bool = True) -> dict[str, np.ndarray]:
    """name -> int64 [N] pseudo labels (IGNORE on labelled and unselected points) for every scene.

    logits_fn: scene -> logits [N, K] (eval mode, no grad). With DARS, a first pass streams the
    confidences of unlabelled points into the histogram; the second predicts again and selects
    (predicting twice keeps memory at one scene).
    """
    pl = cfg.method.pseudo
    thresholds = None
    if pl.dars:
        hist = ConfidenceHistogram(len(class_counts), pl.bins)
        for i in tqdm(range(len(dataset)), desc="pseudo labels: histogram", disable=not progress, leave=False):
            scene = dataset.load(i)
            hist.update(logits_fn(scene).cpu(), _flat_weak(scene) == IGNORE)
        thresholds = dars_thresholds(hist, class_prior(class_counts), pl.ratio, pl.threshold)
    generator = torch.Generator().manual_seed(int(cfg.train.seed))
    out = {}
    for i in tqdm(range(len(dataset)), desc="pseudo labels", disable=not progress, leave=False):
        scene = dataset.load(i)
        labels = select_pseudo_labels(logits_fn(scene).cpu(), _flat_weak(scene), thresholds, pl.threshold, generator)
        out[dataset.names[i]] = labels.numpy().astype(np.int64)
    return out


def pseudo_label_stats(pseudo: dict[str, np.ndarray], source: SceneSource) -> dict[str, float]:
    """How many points got pseudo labels and how many of those match the dense labels."""
    total = chosen = correct = 0
    for name, labels in pseudo.items():
        dense = np.asarray(source.load(name)["label"]).reshape(-1)
        picked = labels != IGNORE
        total += len(labels)
        chosen += int(picked.sum())
        correct += int((labels[picked] == dense[picked]).sum())
    return {"pseudo_fraction": chosen / max(total, 1), "pseudo_accuracy": correct / max(chosen, 1)}


def run_rounds(cfg: DictConfig, run_dir: str | Path, device: torch.device,
               rounds: Optional[int] = None) -> list[dict[str, Any]]:
    """Round 0 + `rounds` (default `method.self_training.rounds`) pseudo-label rounds; returns
    one summary per round (validation mIoU, pseudo-label fraction and accuracy)."""
    cfg = apply_overrides(cfg, ["method.name=self_training", "method.self_training.online=false"])
    rounds = cfg.method.self_training.rounds if rounds is None else rounds
    run_dir = Path(run_dir)
    base = build_source(cfg, "train")
    val = build_source(cfg, "val")
    dataset = train_dataset(cfg, base)
    to_batch, _ = scene_inference(cfg)
    source: SceneSource = base
    summary: list[dict[str, Any]] = []
    stats: dict[str, float] = {}
    for r in range(rounds + 1):
        setup = build_setup(cfg, train_source=source, val_source=val)
        trainer = Trainer(setup, run_dir / f"round{r}", device)
        metrics = trainer.fit()
        summary.append({"round": r, "miou": None if metrics is None else metrics["miou"], **stats})
        if r == rounds:
            break
        trainer.method.eval()
        logits_fn = make_logits_fn(trainer.method.predict, to_batch, device)
        pseudo = make_pseudo_labels(logits_fn, dataset, cfg, setup.class_counts, cfg.train.progress)
        stats = pseudo_label_stats(pseudo, base)
        source = PseudoLabelledSource(base, pseudo)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "rounds.json").write_text(json.dumps(summary, indent=1))
    if cfg.train.progress:
        for row in summary:
            extra = "" if "pseudo_fraction" not in row else \
                f"  pseudo {row['pseudo_fraction']:.1%} of points, {row['pseudo_accuracy']:.1%} correct"
            miou = "n/a" if row["miou"] is None else f"{row['miou']:.4f}"
            print(f"round {row['round']}: mIoU {miou}{extra}")
    return summary
