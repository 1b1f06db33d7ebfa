"""ScanNet v2 reader: the raw release (`scans/<scene>/...`) and mmdetection3d's npy export.

Raw files of a scene (`<scene>/` folder):
    <scene>_vh_clean_2.ply                 binary PLY, vertex x y z red green blue alpha
    <scene>_vh_clean_2.labels.ply          vertex `label` = NYU40 id (not in test scenes)
    <scene>.aggregation.json               segGroups[] {objectId, label, segments}
    <scene>_vh_clean_2.0.010000.segs.json  segIndices [N]: over-segment of each vertex
    <scene>.txt                            `axisAlignment = <16 numbers>` (row-major 4x4)
Semantic labels are the 20 benchmark classes of `datasets/scannet.yaml`; every other NYU40
id (and 0, unannotated) is IGNORE. Test scenes carry no labels: all IGNORE.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from plyfile import PlyData

from pcseg.data.contract import IGNORE, Scene
from pcseg.data.meta import load_dataset_meta
from pcseg.resources import datasets_dir

TSV_NAME = "scannetv2-labels.combined.tsv"
SPLITS = ("train", "val", "test")


def official_split(split: str) -> list[str]:
    """Scene names of the official ScanNet v2 `train`, `val` or `test` list (shipped)."""
    if split not in SPLITS:
        raise ValueError(f"unknown ScanNet split {split!r}; expected one of {', '.join(SPLITS)}")
    path = datasets_dir() / "splits" / f"scannetv2_{split}.txt"
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_of_scenes() -> dict[str, str]:
    """scene name -> official split, over all three lists."""
    return {scene: split for split in SPLITS for scene in official_split(split)}


def nyu40_to_label(nyu40: np.ndarray) -> np.ndarray:
    """int64 [N] benchmark class index (IGNORE for non-benchmark ids) of NYU40 ids [N]."""
    nyu40 = np.asarray(nyu40).astype(np.int64)
    table = load_dataset_meta("scannet").raw_to_label(int(nyu40.max(initial=0)))
    if nyu40.size and nyu40.min() < 0:
        raise ValueError(f"negative NYU40 id {int(nyu40.min())}")
    return table[nyu40]


def read_label_map(tsv: str | Path) -> dict[str, int]:
    """`scannetv2-labels.combined.tsv`: raw category -> NYU40 id (LF or CRLF line endings)."""
    tsv = Path(tsv)
    with open(tsv, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows or "raw_category" not in rows[0] or "nyu40id" not in rows[0]:
        raise ValueError(f"{tsv}: expected a tab-separated header with raw_category and nyu40id")
    mapping = {}
    for line, row in enumerate(rows, start=2):
        try:
            mapping[row["raw_category"]] = int(row["nyu40id"])
        except (TypeError, ValueError):
            raise ValueError(f"{tsv}:{line}: nyu40id {row['nyu40id']!r} is not an integer") from None
    return mapping


def read_axis_alignment(path: Path) -> np.ndarray:
    """float64 [4, 4] from `axisAlignment = ...` in `<scene>.txt`; identity if absent."""
    if not path.is_file():
        return np.eye(4)
    for line in path.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            numbers = value.split()
            if len(numbers) != 16:
                raise ValueError(f"{path}: axisAlignment needs 16 numbers, got {len(numbers)}")
            return np.array([float(v) for v in numbers]).reshape(4, 4)
    return np.eye(4)


def scene_files(scene_dir: Path) -> dict[str, Path]:
    """The raw files of one scene folder that exist, by role (mesh, labels, aggregation, segs, meta)."""
    name = scene_dir.name
    roles = {
        "mesh": f"{name}_vh_clean_2.ply",
        "labels": f"{name}_vh_clean_2.labels.ply",
        "aggregation": f"{name}.aggregation.json",
        "segs": f"{name}_vh_clean_2.0.010000.segs.json",
        "meta": f"{name}.txt",
    }
    return {role: scene_dir / file for role, file in roles.items() if (scene_dir / file).is_file()}


def _instances(aggregation: Path, segs: Path, num_vertices: int) -> tuple[np.ndarray, list[str]]:
    """Instance id per vertex (objectId, -1 where none) and the raw label of each objectId."""
    seg_indices = np.asarray(json.loads(segs.read_text(encoding="utf-8"))["segIndices"], dtype=np.int64)
    if len(seg_indices) != num_vertices:
        raise ValueError(f"{segs}: {len(seg_indices)} segIndices for a mesh of {num_vertices} vertices")
    groups = json.loads(aggregation.read_text(encoding="utf-8"))["segGroups"]
    segment_to_object = {}
    raw_labels: dict[int, str] = {}
    for group in groups:
        object_id = int(group.get("objectId", group.get("id")))
        raw_labels[object_id] = str(group["label"])
        for segment in group["segments"]:
            segment_to_object[int(segment)] = object_id
    unique, inverse = np.unique(seg_indices, return_inverse=True)
    per_segment = np.array([segment_to_object.get(int(s), -1) for s in unique], dtype=np.int64)
    instance = per_segment[inverse]
    names = [raw_labels.get(i, "") for i in range(max(raw_labels, default=-1) + 1)]
    return instance, names


def load_scannet_scene(scene_dir: str | Path, tsv: str | Path | None = None) -> Scene:
    """One raw ScanNet v2 scene folder as a scene.

    coord float32 [N,3] m (axis-aligned), color float32 [N,3] 0..1, label int64 [N]
    (20 classes, IGNORE elsewhere), instance int64 [N] (objectId, -1 where none).
    Labels come from `_vh_clean_2.labels.ply`; without it, from the aggregation's raw
    categories through `tsv`; without either (test scenes), all IGNORE.
    """
    scene_dir = Path(scene_dir)
    files = scene_files(scene_dir)
    if "mesh" not in files:
        raise FileNotFoundError(f"{scene_dir}: missing {scene_dir.name}_vh_clean_2.ply")
    vertex = PlyData.read(str(files["mesh"]))["vertex"]
    xyz = np.stack([vertex[k] for k in ("x", "y", "z")], axis=1).astype(np.float64)
    align = read_axis_alignment(files.get("meta", scene_dir / f"{scene_dir.name}.txt"))
    coord = xyz @ align[:3, :3].T + align[:3, 3]
    color = np.stack([vertex[k] for k in ("red", "green", "blue")], axis=1).astype(np.float32) / 255.0
    n = len(coord)
    instance = np.full(n, -1, dtype=np.int64)
    raw_names: list[str] = []
    if "aggregation" in files and "segs" in files:
        instance, raw_names = _instances(files["aggregation"], files["segs"], n)
    if "labels" in files:
        nyu40 = np.asarray(PlyData.read(str(files["labels"]))["vertex"]["label"])
        if len(nyu40) != n:
            raise ValueError(f"{files['labels']}: {len(nyu40)} labels for a mesh of {n} vertices")
        label = nyu40_to_label(nyu40)
    elif raw_names:
        if tsv is None:
            raise ValueError(f"{scene_dir}: no labels PLY; labels from the aggregation need {TSV_NAME}")
        label_map = read_label_map(tsv)
        object_nyu40 = np.array([label_map.get(name, 0) for name in raw_names] + [0], dtype=np.int64)
        label = nyu40_to_label(object_nyu40[instance])  # instance -1 picks the trailing 0
    else:
        label = np.full(n, IGNORE, dtype=np.int64)
    return {
        "coord": coord.astype(np.float32),
        "color": color,
        "label": label,
        "instance": instance,
        "name": scene_dir.name,
    }


def npy_scene_files(folder: Path, scene: str) -> dict[str, Path]:
    """mmdetection3d export files of `scene`: vert (required), sem and ins (optional)."""
    roles = {"vert": "_vert_all.npy", "sem": "_sem_label_all.npy", "ins": "_ins_label_all.npy"}
    return {role: folder / f"{scene}{suffix}" for role, suffix in roles.items() if (folder / f"{scene}{suffix}").is_file()}


def load_scannet_npy(folder: str | Path, scene: str) -> Scene:
    """A scene from mmdetection3d's ScanNet export (already axis-aligned):
    `<scene>_vert_all.npy` float [N,6] x y z r g b (0-255), `<scene>_sem_label_all.npy`
    NYU40 ids [N] (0 = unannotated), `<scene>_ins_label_all.npy` [N] (0 = none)."""
    folder = Path(folder)
    files = npy_scene_files(folder, scene)
    if "vert" not in files:
        raise FileNotFoundError(f"{folder / (scene + '_vert_all.npy')}: not found")
    vert = np.load(files["vert"])
    if vert.ndim != 2 or vert.shape[1] < 6:
        raise ValueError(f"{files['vert']}: expected an [N, 6] array x y z r g b, got shape {vert.shape}")
    n = len(vert)
    label = np.full(n, IGNORE, dtype=np.int64)
    instance = np.full(n, -1, dtype=np.int64)
    for role in ("sem", "ins"):
        if role in files:
            values = np.load(files[role]).astype(np.int64)
            if values.shape != (n,):
                raise ValueError(f"{files[role]}: expected shape ({n},), got {values.shape}")
            if role == "sem":
                label = nyu40_to_label(values)
            else:
                instance = values - 1
    return {
        "coord": vert[:, :3].astype(np.float32),
        "color": (vert[:, 3:6] / 255.0).astype(np.float32),
        "label": label,
        "instance": instance,
        "name": scene,
    }
