"""What `pcseg viz` reads: a scene (any file the readers accept, or `store.h5:scene`), a
prediction file and a weak-label protocol file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pcseg.data.contract import Scene

STORE_SUFFIXES = (".h5", ".hdf5")


def split_store_spec(spec: str) -> tuple[str, str | None]:
    """("store.h5", "scene") for "store.h5:scene"; (spec, None) for a plain file path."""
    head, sep, tail = spec.rpartition(":")
    if sep and head.lower().endswith(STORE_SUFFIXES):
        return head, tail
    return spec, None


def load_input(spec: str, dataset: str | None = None) -> tuple[Scene, str | None]:
    """(scene, dataset name it comes with or None) for `spec`.

    spec: "store.h5:scene_name" (an HDF5 scene store) or a scene file (.ply .npy .npz .las
    .txt ...; see `pcseg.data.readers.files.load_scene_file`). dataset: class YAML or shipped
    dataset name used to check (or map) a file's labels. The scene gets a `name`: the store's
    scene name, or the file's stem.
    """
    path, name = split_store_spec(spec)
    if name is not None:
        from pcseg.data.store import SceneStore

        store = SceneStore(path)
        if name not in store.names():
            shown = ", ".join(store.names()[:10]) + (" ..." if len(store) > 10 else "")
            raise ValueError(f"{path}: no scene {name!r}; scenes: {shown}")
        return store.load(name), (store.dataset or None)
    from pcseg.data.readers.files import load_scene_file

    scene = load_scene_file(path, classes=dataset)
    scene["name"] = Path(path).stem
    return scene, dataset


def load_prediction(path: str | Path, num_points: int) -> np.ndarray:
    """int64 [N] predicted classes from a .npy file (one integer per point, in point order)."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: predictions must be a .npy file of N integer labels")
    pred = np.load(path, allow_pickle=False)
    if pred.ndim != 1 or not np.issubdtype(pred.dtype, np.integer):
        raise ValueError(f"{path}: expected a 1-D integer array of labels, got {pred.dtype} {pred.shape}")
    if len(pred) != num_points:
        raise ValueError(f"{path}: {len(pred)} predictions for a scene of {num_points} points")
    return pred.astype(np.int64)


def attach_protocol(scene: Scene, protocol_path: str | Path) -> Scene:
    """A new scene with `weak_label` from a protocol file (`pcseg weak-labels make`).

    The scene is looked up by its `name`; a protocol of a single scene applies to any scene
    with that scene's point count (a file the protocol was made for under another name).
    """
    from pcseg.weak.protocol import apply_protocol
    from pcseg.weak.protocol_file import load_protocol

    protocol = load_protocol(protocol_path)
    name = str(scene.get("name"))
    if name not in protocol.scenes and len(protocol.scenes) == 1:
        name = next(iter(protocol.scenes))
    return apply_protocol(scene, protocol, name)
