"""Training methods: each an nn.Module whose forward(batch) returns a dict with `loss`.

`METHODS` maps the config's `method.name` to a builder `(MethodContext) -> Method`.
"""
from __future__ import annotations

from typing import Callable

from pcseg.methods.base import Method, MethodContext
from pcseg.methods.cps import build_cps
from pcseg.methods.dsp import build_dsp
from pcseg.methods.mean_teacher import build_mean_teacher
from pcseg.methods.propagation import build_propagation
from pcseg.methods.s4l import build_s4l
from pcseg.methods.self_training import build_self_training
from pcseg.methods.supervised import build_supervised

METHODS: dict[str, Callable[[MethodContext], Method]] = {
    "supervised": build_supervised,
    "dsp": build_dsp,
    "self_training": build_self_training,
    "cps": build_cps,
    "mean_teacher": build_mean_teacher,
    "propagation": build_propagation,
    "s4l": build_s4l,
}


def build_method(ctx: MethodContext) -> Method:
    """The method named by `ctx.cfg.method.name`; an unknown name lists the valid ones."""
    name = ctx.cfg.method.name
    if name not in METHODS:
        raise ValueError(f"config key 'method.name': unknown method {name!r}; valid: {', '.join(sorted(METHODS))}")
    return METHODS[name](ctx)
