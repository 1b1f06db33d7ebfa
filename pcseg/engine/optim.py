"""Optimizer and per-step learning-rate schedule from the `optim` / `scheduler` config."""
from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from omegaconf import DictConfig

SCHEDULES = ("poly", "cosine", "onecycle", "constant")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: DictConfig) -> torch.optim.Optimizer:
    """SGD (momentum, nesterov) or AdamW from `cfg.optim`."""
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay,
                               nesterov=o.nesterov and o.momentum > 0)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    raise ValueError(f"config key 'optim.name': unknown optimizer {o.name!r}; valid: sgd, adamw")


def lr_factor(name: str, total_steps: int, warmup_steps: int = 0, power: float = 0.9) -> Callable[[int], float]:
    """step -> multiplier of the base lr, for `total_steps` optimizer steps.

    poly: (1 - t)^power; cosine: (1 + cos(pi t)) / 2; onecycle: cosine up from 1/25 over the
    first 30% then cosine down to 1/25e4 (OneCycleLR's defaults); constant: 1. A linear warmup
    over `warmup_steps` multiplies the first steps (except onecycle, which has its own).
    """
    if name not in SCHEDULES:
        raise ValueError(f"config key 'scheduler.name': unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    total = max(int(total_steps), 1)

    def cos_between(start: float, end: float, t: float) -> float:
        return end + (start - end) * (1 + math.cos(math.pi * t)) / 2

    def factor(step: int) -> float:
        t = min(step / total, 1.0)
        if name == "onecycle":
            up = max(int(0.3 * total), 1)
            if step < up:
                return cos_between(1 / 25, 1.0, step / up)
            return cos_between(1.0, 1 / 25e4, min((step - up) / max(total - up, 1), 1.0))
        base = {"poly": (1 - t) ** power, "cosine": (1 + math.cos(math.pi * t)) / 2, "constant": 1.0}[name]
        if warmup_steps > 0 and step < warmup_steps:
            base *= (step + 1) / warmup_steps
        return base

    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: DictConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepped once per optimizer step (its state is just the step count)."""
    s = cfg.scheduler
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(s.name, total_steps, s.warmup_steps, s.power))
