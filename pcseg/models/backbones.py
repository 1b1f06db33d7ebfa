"""Backbone builders: plain typed functions (in_channels, out_channels) -> nn.Module.

The variant set and widths are exactly those of MinkowskiEngine's examples/minkunet.py
(which has no 18C; 14C and 34C differ in their decoder widths).
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from pcseg.models import minkunet as mu


def minkunet14a(in_channels: int, out_channels: int) -> mu.MinkUNet14A:
    return mu.MinkUNet14A(in_channels, out_channels)


def minkunet14b(in_channels: int, out_channels: int) -> mu.MinkUNet14B:
    return mu.MinkUNet14B(in_channels, out_channels)


def minkunet14c(in_channels: int, out_channels: int) -> mu.MinkUNet14C:
    return mu.MinkUNet14C(in_channels, out_channels)


def minkunet14d(in_channels: int, out_channels: int) -> mu.MinkUNet14D:
    return mu.MinkUNet14D(in_channels, out_channels)


def minkunet18a(in_channels: int, out_channels: int) -> mu.MinkUNet18A:
    return mu.MinkUNet18A(in_channels, out_channels)


def minkunet18b(in_channels: int, out_channels: int) -> mu.MinkUNet18B:
    return mu.MinkUNet18B(in_channels, out_channels)


def minkunet18d(in_channels: int, out_channels: int) -> mu.MinkUNet18D:
    return mu.MinkUNet18D(in_channels, out_channels)


def minkunet34a(in_channels: int, out_channels: int) -> mu.MinkUNet34A:
    return mu.MinkUNet34A(in_channels, out_channels)


def minkunet34b(in_channels: int, out_channels: int) -> mu.MinkUNet34B:
    return mu.MinkUNet34B(in_channels, out_channels)


def minkunet34c(in_channels: int, out_channels: int) -> mu.MinkUNet34C:
    return mu.MinkUNet34C(in_channels, out_channels)


BACKBONES: dict[str, Callable[[int, int], nn.Module]] = {
    "minkunet14a": minkunet14a,
    "minkunet14b": minkunet14b,
    "minkunet14c": minkunet14c,
    "minkunet14d": minkunet14d,
    "minkunet18a": minkunet18a,
    "minkunet18b": minkunet18b,
    "minkunet18d": minkunet18d,
    "minkunet34a": minkunet34a,
    "minkunet34b": minkunet34b,
    "minkunet34c": minkunet34c,
}


def build_backbone(name: str, in_channels: int, out_channels: int) -> nn.Module:
    """BACKBONES[name](in_channels, out_channels); an unknown name lists the valid ones."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    return BACKBONES[name](in_channels, out_channels)
