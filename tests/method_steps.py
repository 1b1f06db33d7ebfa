"""Two optimisation steps of a training method, as the trainer takes them (shared by the 3D
and the 2D every-method tests; each test keeps its own assertions on the outputs)."""
from __future__ import annotations

from typing import Callable

import torch


def two_steps(method: torch.nn.Module, batch: dict, lr: float, check: Callable[[dict], None]) -> dict:
    """Epoch hook, forward, `check(out)`, backward, SGD step, step hook - twice; returns the
    last output. Asserts that more than half of `method.model`'s parameters moved."""
    method.train()
    before = [p.detach().clone() for p in method.model.parameters()]
    optimizer = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=lr)
    for epoch in range(2):
        if hasattr(method, "on_epoch_start"):
            method.on_epoch_start(epoch)
        out = method(batch)
        check(out)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        if hasattr(method, "after_step"):
            method.after_step(epoch + 1)
    moved = [not torch.equal(b, p.detach()) for b, p in zip(before, method.model.parameters())]
    assert sum(moved) > len(moved) // 2
    return out
