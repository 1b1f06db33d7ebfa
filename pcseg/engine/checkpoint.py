"""One-file checkpoints, written atomically (`tmp` + `os.replace`): a crash mid-write
leaves the previous checkpoint intact, never a truncated one.

Contents: `method` (state_dict of the whole method: network, teachers, heads), `optimizer`,
`scheduler`, `scaler`, `rng` (python, numpy, torch, cuda), `epoch` / `step_in_epoch`
(position: batches of `epoch` already done) and `step` (global), `best_miou`, `config`
(resolved, plain dict) and `versions`.
"""
from __future__ import annotations

import os
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

import pcseg

MODEL_PREFIX = "model."


def versions() -> dict[str, str]:
    return {"pcseg": pcseg.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """torch.save to `path` atomically (same-folder temporary, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint` (CPU tensors); clear error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    # weights_only=False: the file holds RNG states and the config dict, written by pcseg itself.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "method" not in state or "config" not in state:
        raise ValueError(f"{path}: not a pcseg checkpoint (expected keys 'method' and 'config')")
    return state


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The inference network's weights (`method.model.*`) out of a checkpoint's method state."""
    out = {k[len(MODEL_PREFIX):]: v for k, v in checkpoint["method"].items() if k.startswith(MODEL_PREFIX)}
    if not out:
        raise ValueError("checkpoint's method state holds no 'model.*' weights")
    return out


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or a run folder (its best.pt, else last.pt)."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"run folder {path} holds neither best.pt nor last.pt")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    return path
