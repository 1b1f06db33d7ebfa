"""Import ScanNet's official Data-Efficient benchmark files as protocols.

Two official forms (http://kaldir.vc.in.tum.de/scannet_benchmark/data_efficient/):
  points20 / points50 / points100 / points200   a torch-saved dict scene name -> point
        indices (torch tensor, numpy array or list of ints) into the scene's vertices
  scenes/1.txt, 5.txt, 10.txt, 20.txt           one scene name per line: those scenes keep
        every labelled point, every other scene gets none

The points file is read with `torch.load(weights_only=True)`; files that hold numpy arrays
are retried with only numpy's array-rebuilding functions allowed (still no arbitrary code).
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from pcseg.weak.protocol import IGNORE, Protocol, make_entry


def _numpy_safe_globals() -> list[Any]:
    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype]
    allowed += [type(np.dtype(t)) for t in (np.int8, np.int16, np.int32, np.int64,
                                            np.uint8, np.uint16, np.uint32, np.uint64)]
    return allowed


def read_official_points(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """scene name -> int64 [L] indices from an official `pointsN` file."""
    path = Path(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        try:
            with torch.serialization.safe_globals(_numpy_safe_globals()):
                data = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(f"{path}: not a dict of scene name -> point indices that can be read "
                             f"safely ({str(err).splitlines()[0]})") from None
    except (RuntimeError, EOFError) as err:
        raise ValueError(f"{path}: not a torch-saved file ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict scene name -> point indices, got {type(data).__name__}")
    out = {}
    for name, idx in data.items():
        arr = idx.numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
            raise ValueError(f"{path}: scene {name!r} holds {arr.dtype} {list(arr.shape)}; "
                             "expected a 1-D array of integer point indices")
        out[str(name)] = arr.astype(np.int64)
    return out


def read_scene_list(path: str | os.PathLike) -> list[str]:
    """Scene names of an official `scenes/N.txt` list (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]


def _points_entries(path: Path, indices: dict[str, np.ndarray],
                    scenes: Iterable[tuple[str, dict[str, Any]]]) -> dict:
    entries = {}
    for name, scene in scenes:
        if name not in indices:
            raise ValueError(f"{path}: has no indices for scene {name!r} of the data "
                             f"(it lists {len(indices)} scenes); is this the right split?")
        idx = np.unique(indices[name])
        n = len(scene["label"])
        if idx.size and (idx[0] < 0 or idx[-1] >= n):
            bad = int(idx[-1] if idx[-1] >= n else idx[0])
            raise ValueError(f"{path}: scene {name!r} index {bad} is outside its {n} points; "
                             "the data is not the official ScanNet v2 vertex order")
        entries[name] = make_entry(idx, scene["label"])
    return entries


def _list_entries(path: Path, listed: list[str],
                  scenes: Iterable[tuple[str, dict[str, Any]]]) -> dict:
    wanted = set(listed)
    entries = {}
    for name, scene in scenes:
        label = np.asarray(scene["label"])
        idx = np.flatnonzero(label != IGNORE) if name in wanted else np.zeros(0, dtype=np.int64)
        entries[name] = make_entry(idx, label)
    missing = sorted(wanted - set(entries))
    if missing:
        raise ValueError(f"{path}: lists {len(missing)} scene(s) absent from the data, "
                         f"e.g. {', '.join(missing[:3])}")
    return entries


def import_official(path: str | os.PathLike, scenes: Iterable[tuple[str, dict[str, Any]]],
                    source: str, dataset: str | None = "scannet") -> Protocol:
    """A protocol from an official file (`.txt` = scene list, else a points file) applied to
    the (name, scene) pairs of the data it refers to; checksums come from those scenes."""
    path = Path(path)
    if path.suffix == ".txt":
        entries = _list_entries(path, read_scene_list(path), scenes)
        spec = f"import:scenes/{path.stem}"
    else:
        entries = _points_entries(path, read_official_points(path), scenes)
        spec = f"import:{path.stem}"
    return Protocol(spec=spec, seed=None, source=source, scenes=entries, dataset=dataset,
                    extra={"imported_from": path.name})
