"""Offline self-training rounds: train -> pseudo-label the training scenes -> retrain.

    results = run_rounds(cfg, "runs/st", torch.device("cpu"))
    pcseg rounds synthetic_demo --rounds 1 --teacher runs/prop_seed0 --out runs/st   (rounds_cli.py)

Round 0 trains the recipe's method as configured (`supervised`, `propagation`, `dsp`, ...), or
is a trained network given as `teacher` (a `pcseg train` run on the same classes; it is not
retrained). After each round the trained network predicts every training scene (full scene,
no augmentation); unlabelled points get pseudo labels, chosen by DARS (`method.pseudo.dars:
true`: per-class thresholds from a confidence histogram streamed over all scenes, so the pseudo
labels follow the labelled class prior) or by a plain threshold. They go into each scene's
`pseudo_label` (labels are never overwritten) and the next round trains a fresh network on them
with `self_training` in offline mode:
    loss = CE(weak labels) + weight * CE(pseudo labels)      (both with `method.class_weights`)
Each round writes its own run folder `round<r>/`; `rounds.json` sums them up, including the
pseudo labels' accuracy against the hidden dense labels (evaluation only, never trained on).
Single process: the pseudo-labelling pass is not sharded.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from tqdm import tqdm

from pcseg.config import ConfigError, apply_overrides
from pcseg.data.contract import IGNORE, Scene
from pcseg.data.dataset import SceneDataset
from pcseg.data.images.dataset import ImageDataset
from pcseg.data.meta import load_dataset_meta
from pcseg.engine.build import (build_setup, build_source, labelled_histogram, load_trained, scene_inference,
                                train_dataset)
from pcseg.engine.checkpoint import resolve_checkpoint
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


class RoundSetupError(ValueError):
    """A round's training could not be set up from the config (a user error, reported in one line)."""


@dataclass
class Teacher:
    """A trained network standing in for round 0: eval-mode `model`, its run's `cfg` (its input
    features), the checkpoint `path` and its validation mIoU (None when its run has no metrics.json)."""
    model: nn.Module
    cfg: DictConfig
    path: Path
    miou: Optional[float]


def load_teacher(path: str | Path, cfg: DictConfig, device: torch.device) -> Teacher:
    """The network of a run folder (best.pt, else last.pt) or checkpoint, checked to predict the
    classes of `cfg`'s dataset (ValueError naming both datasets otherwise)."""
    ckpt = resolve_checkpoint(path)
    model, teacher_cfg, meta = load_trained(ckpt, device)
    wanted = load_dataset_meta(cfg.data.dataset)
    if list(meta.class_names) != list(wanted.class_names):
        raise ValueError(f"teacher {ckpt}: trained on dataset {teacher_cfg.data.dataset!r} with classes "
                         f"{list(meta.class_names)}, but the recipe's dataset {cfg.data.dataset!r} has "
                         f"{list(wanted.class_names)}")
    miou = None
    metrics_file = ckpt.parent / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
        # best.pt holds the best validation's weights; last.pt the final ones
        miou = metrics.get("miou") if ckpt.name == "best.pt" else metrics.get("final", {}).get("miou")
    return Teacher(model, teacher_cfg, ckpt, miou)


def run_rounds(cfg: DictConfig, run_dir: str | Path, device: torch.device,
               rounds: Optional[int] = None, teacher: Optional[Teacher] = None) -> list[dict[str, Any]]:
    """Round 0 (the recipe's method, or `teacher`) + `rounds` (default `method.self_training.rounds`)
    pseudo-label rounds; returns one summary per round (validation mIoU, pseudo-label fraction and
    accuracy of the labels it trained on)."""
    student_cfg = apply_overrides(cfg, ["method.name=self_training", "method.self_training.online=false"])
    rounds = cfg.method.self_training.rounds if rounds is None else rounds
    run_dir = Path(run_dir)
    base = build_source(cfg, "train")
    val = build_source(cfg, "val")
    dataset = train_dataset(cfg, base)
    class_counts = labelled_histogram(dataset, load_dataset_meta(cfg.data.dataset).num_classes)
    summary: list[dict[str, Any]] = []
    stats: dict[str, float] = {}
    source: SceneSource = base
    for r in range(rounds + 1):
        if r == 0 and teacher is not None:
            summary.append({"round": 0, "miou": teacher.miou, "teacher": str(teacher.path)})
            predict, network_cfg = (lambda batch: teacher.model(batch)["logits"]), teacher.cfg
        else:
            round_cfg = cfg if r == 0 else student_cfg
            try:
                trainer = Trainer(build_setup(round_cfg, train_source=source, val_source=val),
                                  run_dir / f"round{r}", device)
            except (ConfigError, ValueError, FileNotFoundError) as err:
                raise RoundSetupError(f"round {r}: {err}") from err
            metrics = trainer.fit()
            summary.append({"round": r, "miou": None if metrics is None else metrics["miou"], **stats})
            trainer.method.eval()
            predict, network_cfg = trainer.method.predict, round_cfg
        if r == rounds:
            break
        to_batch, _ = scene_inference(network_cfg)
        logits_fn = make_logits_fn(predict, to_batch, device)
        pseudo = make_pseudo_labels(logits_fn, dataset, cfg, class_counts, cfg.train.progress)
        stats = pseudo_label_stats(pseudo, base)
        source = PseudoLabelledSource(base, pseudo)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "rounds.json").write_text(json.dumps(summary, indent=1))
    return summary


def format_rounds(summary: list[dict[str, Any]]) -> str:
    """A markdown table of `run_rounds`'s summary: round, validation mIoU, pseudo labels it trained on."""
    lines = ["| round | trained on | val mIoU | pseudo-labelled points | pseudo labels correct |",
             "|---:|---|---:|---:|---:|"]
    for row in summary:
        source = f"teacher {row['teacher']}" if "teacher" in row else \
            ("weak labels (recipe's method)" if row["round"] == 0 else "weak + pseudo labels")
        miou = "n/a" if row["miou"] is None else f"{100 * row['miou']:.1f}"
        fraction = f"{row['pseudo_fraction']:.1%}" if "pseudo_fraction" in row else "–"
        accuracy = f"{row['pseudo_accuracy']:.1%}" if "pseudo_accuracy" in row else "–"
        lines.append(f"| {row['round']} | {source} | {miou} | {fraction} | {accuracy} |")
    return "\n".join(lines)
