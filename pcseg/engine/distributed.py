"""Process-group helpers for `torchrun`: one process per device, rank 0 writes.

Without torchrun's environment (RANK/WORLD_SIZE) everything degrades to one process.
"""
from __future__ import annotations

import gc
import os

import torch
import torch.distributed as dist


def launched_by_torchrun() -> bool:
    """True in a process that torchrun started with more than one process (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device) -> None:
    """Join the process group torchrun describes (NCCL on CUDA, gloo on CPU); no-op alone."""
    if not launched_by_torchrun() or dist.is_initialized():
        return
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def shutdown_distributed(clean: bool = True) -> None:
    """Leave the process group; no-op alone.

    `clean` (the run ended normally on every process): first wait until every process got here,
    so that none tears its connections down while another still writes or talks through them,
    and drop the objects that still hold the group (a DDP wrapper in a reference cycle) while
    the interpreter is fully alive. Pass False on an error path, where another process may never
    arrive at the barrier.
    """
    if not dist.is_initialized():
        return
    if clean:
        dist.barrier()
        gc.collect()
    dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum of `tensor` over processes (a new tensor; the input is left as it was)."""
    out = tensor.clone()
    if dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def resolve_device(name: str) -> torch.device:
    """`auto` -> this process's CUDA device when there is one, else CPU; else `name` as given."""
    if name == "auto":
        name = f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"config key 'train.device': {name!r} requested but CUDA is not available")
        torch.cuda.set_device(device)
    return device
