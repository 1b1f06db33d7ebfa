"""The training loop: `train_one_epoch`, `validate`, and `fit` (epochs, checkpoints, logs).

It knows no method by name: a method returns `loss`, named terms and `logits`, and may
define `on_epoch_start(epoch)` / `after_step(step)`. Position, weights, optimizer,
scheduler, scaler and RNG states go into `last.pt` every `train.checkpoint_every` steps and
at every epoch end, so `resume=True` continues exactly where the previous process stopped
(the data plan of an epoch is a function of (seed, epoch), see `loader.py`).
"""
from __future__ import annotations

import json
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm import tqdm

from pcseg.config import save_config
from pcseg.data.contract import Scene
from pcseg.engine import distributed as dist
from pcseg.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state, versions
from pcseg.engine.evaluate import SceneSource, evaluate_source
from pcseg.engine.inference import ScenePredictor, predict_scene
from pcseg.engine.loader import EpochLoader
from pcseg.engine.optim import build_optimizer, build_scheduler
from pcseg.metrics import compute_metrics, format_table

FINAL_KEYS = ("miou", "oa", "macc", "iou", "acc")  # the scores metrics.json keeps of the last validation


@dataclass
class TrainSetup:
    """Everything `fit` needs, built from a config by `pcseg.engine.build` (or by a test).

    to_batch: one full scene -> a batch of one scene (for validation); class_counts: int64
    [K] labelled points per class in the training set; predict_scene: (logits_fn, scene,
    votes, max_points) -> probabilities [N, K] of the scene's points (images: pixels).
    """

    cfg: DictConfig
    method: nn.Module
    train_loader: EpochLoader
    val_source: Optional[SceneSource]
    to_batch: Callable[[Scene], dict]
    class_names: list[str]
    class_counts: np.ndarray
    predict_scene: ScenePredictor = predict_scene


def to_device(batch: dict, device: torch.device) -> dict:
    """A copy of `batch` with its tensors on `device` (lists such as `names` kept)."""
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def make_logits_fn(predict: Callable[[dict], torch.Tensor], to_batch: Callable[[Scene], dict],
                   device: torch.device, amp: bool = False) -> Callable[[Scene], torch.Tensor]:
    """scene -> logits [N, K]: `predict(batch)` on the batch of that one scene, on `device`
    (eval mode is the caller's job)."""
    def logits_fn(scene: Scene) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16) if amp else nullcontext():
            return predict(to_device(to_batch(scene), device))
    return logits_fn


class Trainer:
    """State of one training run; rank 0 alone writes files."""

    def __init__(self, setup: TrainSetup, run_dir: str | Path, device: torch.device):
        self.setup, self.cfg, self.device = setup, setup.cfg, device
        for key in ("epochs", "val_every", "save_every"):
            if int(self.cfg.train[key]) < 1:
                raise ValueError(f"config key 'train.{key}': expected >= 1, got {self.cfg.train[key]}")
        self.run_dir = Path(run_dir)
        self.method = setup.method.to(device)
        self.model: nn.Module = self.method
        if dist.world_size() > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.method, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=self.cfg.train.find_unused_parameters)
        self.steps_per_epoch = setup.train_loader.steps_per_epoch()
        self.total_steps = self.steps_per_epoch * self.cfg.train.epochs
        self.optimizer = build_optimizer([p for p in self.method.parameters() if p.requires_grad], self.cfg)
        self.scheduler = build_scheduler(self.optimizer, self.cfg, self.total_steps)
        self.amp = bool(self.cfg.train.amp) and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epoch, self.step_in_epoch, self.step = 0, 0, 0
        self.best_miou = -1.0
        self.best_metrics: Optional[dict] = None
        # training throughput over the whole run (validation excluded), kept across resumes
        self.seen = {"time": 0.0, "scenes": 0, "points": 0}
        self.writer = None
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.writer = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # tensorboard is optional; log.jsonl has everything
                self.writer = None

    # --- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "step": self.step,
            "best_miou": self.best_miou,
            "best_metrics": self.best_metrics,
            "seen": dict(self.seen),
            "class_names": list(self.setup.class_names),
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "versions": versions(),
        }

    def save(self, name: str) -> None:
        # RNG states are rank 0's: the data plan never draws from global generators, so
        # other ranks lose nothing that decides their batches.
        if dist.is_main():
            save_checkpoint(self.state(), self.run_dir / name)

    def resume(self, path: str | Path) -> None:
        """Restore everything `state()` saved; later batches replay the saved position."""
        ckpt = load_checkpoint(path)
        self.method.load_state_dict(ckpt["method"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.epoch, self.step_in_epoch, self.step = ckpt["epoch"], ckpt["step_in_epoch"], ckpt["step"]
        self.best_miou, self.best_metrics = ckpt["best_miou"], ckpt["best_metrics"]
        self.seen = dict(ckpt["seen"])
        if dist.is_main():
            self._truncate_log(self.step)

    # --- logging -----------------------------------------------------------------------
    def _truncate_log(self, step: int) -> None:
        """Drop log lines written after the checkpoint we resume from (they will be redone)."""
        path = self.run_dir / "log.jsonl"
        if path.is_file():
            lines = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step]
            path.write_text("".join(ln + "\n" for ln in lines))

    def log(self, record: dict[str, Any]) -> None:
        if not dist.is_main():
            return
        with open(self.run_dir / "log.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                    self.writer.add_scalar(f"{record['split']}/{key}", value, record["step"])

    # --- loop --------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict[str, float]:
        batch = to_device(batch, self.device)
        with torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext():
            out = self.model(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.step} (epoch {self.epoch}); "
                                     "try a lower optim.lr or train.clip_grad")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.clip_grad:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.method.parameters(), self.cfg.train.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: float(v.detach()) for k, v in out.items() if k != "logits" and torch.is_tensor(v) and v.numel() == 1}

    def train_one_epoch(self) -> None:
        hook = getattr(self.method, "on_epoch_start", None)
        if hook is not None:
            hook(self.epoch)
        self.method.train()
        sums: dict[str, float] = defaultdict(float)
        count, scenes, start = 0, 0, time.perf_counter()
        seen_before = self.seen["time"]
        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, desc=f"epoch {self.epoch}",
                   unit="step", disable=not dist.is_main() or not self.cfg.train.progress, leave=False)
        for batch in self.setup.train_loader.batches(self.epoch, self.step_in_epoch):
            terms = self.train_step(batch)
            self.step += 1
            self.step_in_epoch += 1
            after = getattr(self.method, "after_step", None)
            if after is not None:
                after(self.step)
            for k, v in terms.items():
                sums[k] += v
            count += 1
            scenes += len(batch["offset"])
            elapsed = max(time.perf_counter() - start, 1e-9)
            self.seen["time"] = seen_before + elapsed
            self.seen["scenes"] += len(batch["offset"])
            self.seen["points"] += len(batch["weak_label"])
            lr = self.optimizer.param_groups[0]["lr"]
            bar.set_postfix({**{k: f"{v:.3f}" for k, v in terms.items()}, "lr": f"{lr:.2e}",
                             "scenes/s": f"{scenes / elapsed:.2f}"})
            bar.update()
            if self.step % self.cfg.train.log_every == 0 or self.step_in_epoch == self.steps_per_epoch:
                # `time`: training seconds so far (throughput = seen scenes / time, see metrics.json)
                self.log({"split": "train", "epoch": self.epoch, "step": self.step, "lr": lr,
                          **{k: v / count for k, v in sums.items()}, "time": self.seen["time"]})
                sums.clear()
                count = 0
            every = self.cfg.train.checkpoint_every
            if every and self.step % every == 0 and self.step_in_epoch < self.steps_per_epoch:
                self.save("last.pt")
        bar.close()

    def validate(self) -> dict[str, Any]:
        """Metrics on the validation scenes' original points (all processes take part)."""
        self.method.eval()
        fn = make_logits_fn(self.method.predict, self.setup.to_batch, self.device, self.amp)
        matrix = evaluate_source(fn, self.setup.val_source, len(self.setup.class_names),
                                 votes=self.cfg.train.val_votes, max_points=self.cfg.train.eval_max_points,
                                 progress=dist.is_main() and self.cfg.train.progress, predict=self.setup.predict_scene)
        self.method.train()
        metrics = compute_metrics(matrix.matrix, list(self.setup.class_names))
        metrics["confusion"] = matrix.matrix.tolist()
        return metrics

    def fit(self) -> Optional[dict[str, Any]]:
        """Train to `train.epochs`; returns the best validation metrics (None without validation)."""
        if dist.is_main():
            save_config(self.cfg, self.run_dir / "config.yaml")
        epochs = self.cfg.train.epochs
        final: Optional[dict[str, Any]] = None  # the last validation: the final model's, as trained
        while self.epoch < epochs:
            self.train_one_epoch()
            self.epoch += 1
            self.step_in_epoch = 0
            last = self.epoch == epochs
            if self.setup.val_source is not None and (self.epoch % self.cfg.train.val_every == 0 or last):
                metrics = final = self.validate()
                self.log({"split": "val", "epoch": self.epoch - 1, "step": self.step,
                          **{k: metrics[k] for k in ("miou", "oa", "macc")}})
                if metrics["miou"] > self.best_miou:
                    self.best_miou, self.best_metrics = metrics["miou"], metrics
                    self.save("best.pt")
            if self.epoch % self.cfg.train.save_every == 0 or last:
                self.save("last.pt")
        dist.barrier()
        if self.best_metrics is not None and dist.is_main():
            self.write_metrics(self.best_metrics, final)
        if self.writer is not None:
            self.writer.close()
        return self.best_metrics

    def write_metrics(self, metrics: dict[str, Any], final: Optional[dict[str, Any]] = None) -> None:
        """metrics.json of the run (the best validation; `final`: the last validation's scores,
        i.e. of the weights training ended with, the number a results table reports) and the
        best validation's table on stdout. `final` is None when the run had already ended."""
        cfg = self.cfg
        t = max(self.seen["time"], 1e-9)
        last = {} if final is None else {"final": {"step": self.step, **{k: final[k] for k in FINAL_KEYS}}}
        record = {**metrics, **last, "num_labelled_points": int(np.sum(self.setup.class_counts)),
                  "method": cfg.method.name, "protocol": cfg.data.protocol, "seed": cfg.train.seed,
                  "model": cfg.model.name, "epochs": cfg.train.epochs, "train_time_s": self.seen["time"],
                  "scenes_per_s": self.seen["scenes"] / t, "points_per_s": self.seen["points"] / t}
        (self.run_dir / "metrics.json").write_text(json.dumps(record, indent=1))
        if cfg.train.progress:
            print(format_table(metrics))
            print(f"training: {self.step} steps in {t:.1f} s, {record['scenes_per_s']:.2f} scenes/s, "
                  f"{record['points_per_s']:,.0f} points/s")
