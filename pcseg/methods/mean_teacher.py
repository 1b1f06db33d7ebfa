"""`mean_teacher`: an EMA teacher whose predictions the student matches under augmentation.

    loss = CE(student(aug(batch)), weak_label) + w(step) * mean (softmax(student) - softmax(teacher(batch)))^2
    teacher <- ema * teacher + (1 - ema) * student      (after every optimiser step)
    w(step) = weight * exp(-5 (1 - min(step / rampup_steps, 1))^2)

The class sees only flat logits and a pluggable `augment(batch, generator) -> batch` that must
keep the rows in order (so row r of both views is the same point); the builder takes the
engine's `MethodContext.augment` (images: `pcseg.methods.image_views.augment_images`, colour
jitter and flips undone on the logits), else `augment_points` (3D: rotation about z, flips,
jitter of `coord`). The generator of step s is seeded from (seed, s), so a resumed run draws
the same augmentations.
"""
from __future__ import annotations

import copy
import math
from typing import Optional

import torch
from torch import nn

from pcseg.methods.base import Augment, Method, MethodContext, network_ce
from pcseg.weak.losses import sigmoid_rampup, softmax_mse


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher.params <- decay * teacher.params + (1 - decay) * student.params; buffers copied.

    Buffers (BatchNorm running statistics, counters) are copied rather than averaged: the
    teacher sees the same input distribution as the student.
    """
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)


def make_teacher(model: nn.Module) -> nn.Module:
    """A frozen copy of `model` (no gradients, so the optimiser and DDP leave it alone)."""
    teacher = copy.deepcopy(model)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator of training step `step` (a function of (seed, step) alone)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(step))


def augment_points(batch: dict, generator: torch.Generator, rotate: bool = True, flip: bool = True,
                   jitter: float = 0.01) -> dict:
    """A copy of a 3D batch with `coord` float32 [N, 3] rotated about z, flipped in x / y and
    jittered (one rotation/flip per scene, from `generator`); all other keys shared."""
    coord = batch["coord"]
    num_scenes = len(batch["offset"])
    angle = torch.rand(num_scenes, generator=generator, dtype=torch.float64) * 2 * math.pi if rotate \
        else torch.zeros(num_scenes, dtype=torch.float64)
    signs = torch.where(torch.rand(num_scenes, 2, generator=generator) < 0.5, -1.0, 1.0) if flip \
        else torch.ones(num_scenes, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # per-scene 3x3: rotation about z, then flips of x / y
    mat = torch.zeros(num_scenes, 3, 3, dtype=torch.float64)
    mat[:, 0, 0], mat[:, 0, 1], mat[:, 1, 0], mat[:, 1, 1], mat[:, 2, 2] = cos, -sin, sin, cos, 1.0
    mat[:, :2, :] *= signs.double().unsqueeze(2)
    per_point = mat.to(torch.float32)[batch["batch"].cpu()].to(coord.device)
    out = torch.bmm(per_point, coord.unsqueeze(2)).squeeze(2)
    if jitter > 0:
        noise = torch.randn(coord.shape, generator=generator) * jitter
        out = out + noise.to(coord.device, coord.dtype)
    return {**batch, "coord": out}


class MeanTeacher(Method):
    """model: the student (evaluated and saved as the network); teacher: its EMA; class_weights:
    float32 [K] or None, weighting the CE on labelled points."""

    def __init__(self, model: nn.Module, augment: Augment, ema: float = 0.99, weight: float = 1.0,
                 rampup_steps: int = 200, seed: int = 0, class_weights: Optional[torch.Tensor] = None):
        super().__init__()
        if not 0.0 <= ema < 1.0:
            raise ValueError(f"config key 'method.mean_teacher.ema': expected 0 <= ema < 1, got {ema}")
        self.model = model
        self.teacher = make_teacher(model)
        self.augment, self.ema, self.weight, self.rampup_steps, self.seed = augment, ema, weight, rampup_steps, seed
        # the step count lives in a buffer so the ramp-up and augmentations resume exactly
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("class_weights", class_weights, persistent=class_weights is not None)

    def train(self, mode: bool = True) -> "MeanTeacher":
        super().train(mode)
        self.teacher.eval()  # the teacher is a target, never in training mode
        return self

    def consistency_weight(self) -> float:
        return self.weight * sigmoid_rampup(int(self.step), self.rampup_steps)

    def forward(self, batch: dict) -> dict:
        out = self.model(self.augment(batch, step_generator(self.seed, int(self.step))))
        student = out["logits"]
        with torch.no_grad():
            teacher = self.teacher(batch)["logits"]
        ce = network_ce(out, batch["weak_label"], self.class_weights)
        consistency = softmax_mse(student, teacher)
        loss = ce + self.consistency_weight() * consistency
        return {"loss": loss, "ce": ce.detach(), "consistency": consistency.detach(), "logits": student}

    def after_step(self, step: int) -> None:
        ema_update(self.teacher, self.model, self.ema)
        self.step.fill_(step)


def build_mean_teacher(ctx: MethodContext) -> MeanTeacher:
    mt = ctx.cfg.method.mean_teacher

    def augment(batch: dict, generator: torch.Generator) -> dict:
        return augment_points(batch, generator, mt.rotate, mt.flip, mt.jitter)
    weights = ctx.class_weights()
    return MeanTeacher(ctx.make_model(), ctx.augment or augment, mt.ema, mt.weight, mt.rampup_steps,
                       ctx.cfg.train.seed, weights)
