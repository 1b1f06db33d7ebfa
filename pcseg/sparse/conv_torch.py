"""Sparse convolution in pure PyTorch: per offset gather -> GEMM -> scatter-add.

This is the reference twin of the native backend (`pcseg.sparse.native`); both implement

    conv_forward(feats [N_in, C_in], weight [K, C_in, C_out], kmap) -> [num_out, C_out]
    conv_backward(grad_out [num_out, C_out], feats, weight, kmap)
        -> (grad_feats [N_in, C_in], grad_weight [K, C_in, C_out])

with out[o] = sum over pairs (i, o) of offset k of feats[i] @ weight[k]. Runs unchanged on CUDA.
"""
from __future__ import annotations

import torch

from pcseg.sparse.kernel_map import KernelMap


def _check(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> None:
    if weight.dim() != 3 or weight.shape[0] != kmap.num_offsets:
        raise ValueError(f"weight must be [K={kmap.num_offsets}, C_in, C_out], got {tuple(weight.shape)}")
    if feats.dim() != 2 or feats.shape[1] != weight.shape[1]:
        raise ValueError(f"feats must be [N, C_in={weight.shape[1]}], got {tuple(feats.shape)}")


def conv_forward(feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
    """Sparse conv forward. feats: [N_in, C_in]; weight: [K, C_in, C_out] -> [num_out, C_out]."""
    _check(feats, weight, kmap)
    k_id = kmap.identity_offset
    if k_id is not None:
        # The centre offset maps every row to itself: a plain mm, no gather or scatter.
        out = feats @ weight[k_id]
    else:
        out = feats.new_zeros((kmap.num_out, weight.shape[2]))
    for k, (start, end) in enumerate(kmap.bounds()):
        if k == k_id or start == end:
            continue
        rows_in = kmap.in_rows[start:end]
        # Out rows are unique within one offset, so index_add_ never sums duplicates here;
        # it is still the fastest scatter measured (see conv_torch benchmark in the report).
        out.index_add_(0, kmap.out_rows[start:end], feats.index_select(0, rows_in) @ weight[k])
    return out


def conv_backward(
    grad_out: torch.Tensor, feats: torch.Tensor, weight: torch.Tensor, kmap: KernelMap
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `conv_forward` through the same kernel map.

    grad_feats [N_in, C_in]: each offset's pairs transposed, grad_out[o] @ weight[k].T into i.
    grad_weight [K, C_in, C_out]: feats[in rows].T @ grad_out[out rows] per offset.
    """
    _check(feats, weight, kmap)
    k_id = kmap.identity_offset
    grad_weight = torch.zeros_like(weight)
    if k_id is not None:
        grad_feats = grad_out @ weight[k_id].t()
        grad_weight[k_id] = feats.t() @ grad_out
    else:
        grad_feats = torch.zeros_like(feats)
    for k, (start, end) in enumerate(kmap.bounds()):
        if k == k_id or start == end:
            continue
        rows_in = kmap.in_rows[start:end]
        g = grad_out.index_select(0, kmap.out_rows[start:end])
        grad_feats.index_add_(0, rows_in, g @ weight[k].t())
        grad_weight[k] = feats.index_select(0, rows_in).t() @ g
    return grad_feats, grad_weight
