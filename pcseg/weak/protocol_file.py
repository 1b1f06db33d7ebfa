"""The protocol file: one `.npz` that plain numpy reads, written byte-for-byte reproducibly.

    meta      0-d str array, JSON: {"format": "pcseg-weak-labels", "version": 1, "spec",
              "seed", "source", "dataset", "extra",
              "scenes": [{"name", "num_points", "num_labelled", "label_sha256"}, ...]}
    indices   int64 [L]   labelled point indices of all scenes, concatenated in `scenes` order
    labels    int64 [L]   ground-truth label at those points when the protocol was made
    offsets   int64 [S+1] scene s owns indices[offsets[s]:offsets[s+1]]

Read without pcseg:
    z = np.load(path); meta = json.loads(str(z["meta"]))
    idx = z["indices"][z["offsets"][s]:z["offsets"][s + 1]]   # scene meta["scenes"][s]["name"]

`label_sha256` is the sha256 of the scene's whole label array as little-endian int64.
Zip entries carry a fixed timestamp, so the same protocol always gives the same bytes.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from pcseg.weak.protocol import FORMAT_VERSION, Protocol, SceneEntry

FORMAT_NAME = "pcseg-weak-labels"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(value), allow_pickle=False)
    os.replace(tmp, path)


def save_protocol(protocol: Protocol, path: str | os.PathLike) -> Path:
    """Write `protocol` to `path` (atomically) and return the path."""
    path = Path(path)
    names = list(protocol.scenes)
    entries = [protocol.scenes[n] for n in names]
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "spec": protocol.spec,
        "seed": protocol.seed,
        "source": protocol.source,
        "dataset": protocol.dataset,
        "extra": protocol.extra,
        "scenes": [{"name": n, "num_points": e.num_points, "num_labelled": int(len(e.indices)),
                    "label_sha256": e.checksum} for n, e in zip(names, entries)],
    }
    counts = [len(e.indices) for e in entries]
    empty = np.zeros(0, dtype=np.int64)
    arrays = {
        "meta": np.array(json.dumps(meta, sort_keys=True)),
        "indices": np.concatenate([e.indices for e in entries]).astype(np.int64) if entries else empty,
        "labels": np.concatenate([e.labels for e in entries]).astype(np.int64) if entries else empty,
        "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_npz(path, arrays)
    return path


def load_protocol(path: str | os.PathLike) -> Protocol:
    """Read a protocol file; a file that is not one raises ValueError naming it and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"protocol file {path} does not exist (make one with `pcseg weak-labels make`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            indices, labels, offsets = z["indices"], z["labels"], z["offsets"]
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise ValueError(f"{path}: not a pcseg weak-label protocol file "
                         f"(expected an .npz with meta, indices, labels, offsets: {err})") from None
    if meta.get("format") != FORMAT_NAME or meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}; "
                         f"this pcseg reads {FORMAT_NAME!r} version {FORMAT_VERSION}")
    scenes_meta = meta["scenes"]
    if len(offsets) != len(scenes_meta) + 1 or offsets[-1] != len(indices) or len(labels) != len(indices):
        raise ValueError(f"{path}: offsets/indices/labels disagree with the {len(scenes_meta)} scenes in meta")
    scenes = {}
    for s, m in enumerate(scenes_meta):
        lo, hi = int(offsets[s]), int(offsets[s + 1])
        scenes[m["name"]] = SceneEntry(indices=indices[lo:hi].astype(np.int64), labels=labels[lo:hi].astype(np.int64),
                                       num_points=int(m["num_points"]), checksum=str(m["label_sha256"]))
    return Protocol(spec=meta["spec"], seed=meta["seed"], source=meta["source"], scenes=scenes,
                    dataset=meta.get("dataset"), extra=meta.get("extra") or {}, path=str(path))
