"""Autograd for sparse convolution, dispatching to the native or the pure-PyTorch backend.

Native (`pcseg.sparse.native`) is used when it imports, reports `available()`, and the inputs
are CPU float32; otherwise the torch twin. Kernel maps on CPU are built natively under the same
conditions (`native_map_builder`). `PCSEG_SPARSE_BACKEND=torch|native` forces one
(forcing native where it cannot run is an error, not a silent fallback).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

import torch

from pcseg.sparse import conv_torch
from pcseg.sparse.kernel_map import KernelMap

ENV_VAR = "PCSEG_SPARSE_BACKEND"


def _native() -> ModuleType | None:
    """The native backend module if it imports and is available, else None."""
    try:
        module = importlib.import_module("pcseg.sparse.native")
    except ImportError:
        return None
    return module if module.available() else None


def forced_backend() -> str:
    """`PCSEG_SPARSE_BACKEND`: "torch", "native", or "" (choose by inputs)."""
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced not in ("", "torch", "native"):
        raise ValueError(f"{ENV_VAR}={forced!r}: expected 'torch' or 'native'")
    return forced


def native_map_builder(device: torch.device) -> ModuleType | None:
    """The native module when kernel maps on `device` are built by it (CPU, kernels available,
    not forced to torch), else None: the PyTorch search in `pcseg.sparse.manager` builds them."""
    forced = forced_backend()
    if forced == "torch" or device.type != "cpu":
        return None
    native = _native()
    if native is None and forced == "native":
        raise RuntimeError(f"{ENV_VAR}=native but pcseg.sparse.native is missing or not available()")
    return native


def select_backend(feats: torch.Tensor, weight: torch.Tensor) -> ModuleType:
    """The module (with conv_forward / conv_backward) that will run these inputs."""
    forced = forced_backend()
    if forced == "torch":
        return conv_torch
    native_fits = feats.device.type == "cpu" and feats.dtype == torch.float32 and weight.dtype == torch.float32
    if not native_fits:
        if forced == "native":
            raise RuntimeError(f"{ENV_VAR}=native needs CPU float32 inputs, got {feats.device} {feats.dtype}")
        return conv_torch
    # Only now: the first native import may compile the extension.
    native = _native()
    if native is None and forced == "native":
        raise RuntimeError(f"{ENV_VAR}=native but pcseg.sparse.native is missing or not available()")
    return conv_torch if native is None else native


class SparseConvFunction(torch.autograd.Function):
    """out [num_out, C_out] = sparse conv of feats [N_in, C_in] with weight [K, C_in, C_out]."""

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        backend = select_backend(feats, weight)
        ctx.save_for_backward(feats, weight)
        ctx.kmap = kmap
        ctx.backend = backend
        return backend.conv_forward(feats, weight, kmap)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        feats, weight = ctx.saved_tensors
        grad_feats, grad_weight = ctx.backend.conv_backward(grad_out.contiguous(), feats, weight, ctx.kmap)
        return grad_feats, grad_weight, None


def sparse_conv(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Differentiable sparse conv; see `SparseConvFunction`.

    Under autocast both operands are cast to the autocast dtype first: the backends
    accumulate into a buffer of the inputs' dtype, which autocast's per-matmul casts would
    otherwise mismatch.
    """
    device_type = feats.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return SparseConvFunction.apply(feats.to(dtype), weight.to(dtype), kmap)
    return SparseConvFunction.apply(feats, weight, kmap)
