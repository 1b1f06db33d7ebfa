import math

import pytest
import torch

from pcseg.config import load_config
from pcseg.engine.optim import build_optimizer, build_scheduler, lr_factor


def test_poly_cosine_constant_by_hand():
    poly = lr_factor("poly", 10, power=2.0)
    assert [poly(s) for s in (0, 5, 10)] == pytest.approx([1.0, 0.25, 0.0])
    cos = lr_factor("cosine", 4)
    assert [cos(s) for s in (0, 1, 2, 4)] == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, 0.0])
    assert lr_factor("constant", 3)(2) == 1.0


def test_warmup_is_linear():
    f = lr_factor("constant", 100, warmup_steps=4)
    assert [f(s) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


def test_onecycle_rises_then_falls():
    f = lr_factor("onecycle", 100)
    values = [f(s) for s in range(101)]
    assert values[0] == pytest.approx(1 / 25) and values[30] == pytest.approx(1.0)
    assert values[100] == pytest.approx(1 / 25e4)
    assert all(a <= b for a, b in zip(values[:30], values[1:31]))
    assert all(a >= b for a, b in zip(values[30:], values[31:]))


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="scheduler.name.*valid: poly"):
        lr_factor("linear", 10)
    cfg = load_config(None, ["optim.name=adam"])
    with pytest.raises(ValueError, match="optim.name.*sgd, adamw"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], cfg)


def test_scheduler_steps_the_optimizer_lr():
    cfg = load_config(None, ["optim.name=adamw", "optim.lr=0.2", "scheduler.name=poly", "scheduler.power=1.0"])
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([p], cfg)
    assert isinstance(opt, torch.optim.AdamW)
    sched = build_scheduler(opt, cfg, total_steps=4)
    lrs = []
    for _ in range(4):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([0.15, 0.1, 0.05, 0.0])
