"""S3DIS reader: `Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/*.txt`.

Each annotation file `<class>_<k>.txt` is one object: lines `x y z r g b` (metres, 0-255).
A room is the concatenation of its annotation files in sorted name order; each file is one
instance (ids 0..F-1 in that order). Class names and aliases (stairs -> clutter) come from
`datasets/s3dis.yaml`.

Defects of the real release handled here:
- `Area_5/hallway_6/Annotations/ceiling_1.txt` has a NUL byte inside a line
  (`185\\x00187` = `185 187`): stray control / non-ASCII bytes are read as spaces.
- `Area_5/office_36/Annotations/wall_3 (1).txt` is a second copy of `wall_3.txt`: files
  named `<stem> (n).txt` are skipped after checking they hold the same points as `<stem>.txt`.
Any other malformed line raises MalformedFileError naming file, line number and content.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np

from pcseg.data.contract import Scene
from pcseg.data.meta import load_dataset_meta
from pcseg.data.readers.text import clean_stray_bytes, parse_numeric_text

_COPY = re.compile(r"^(?P<stem>.+) \((?P<n>\d+)\)$")
_OBJECT = re.compile(r"^(?P<cls>[A-Za-z]+)_(?P<k>\d+)$")


def class_lookup() -> dict[str, int]:
    """Annotation file prefix -> class index (the 13 classes plus the YAML's aliases)."""
    meta = load_dataset_meta("s3dis")
    lookup = {name: i for i, name in enumerate(meta.class_names)}
    for alias, target in meta.extra.get("aliases", {}).items():
        lookup[alias] = lookup[target]
    return lookup


def held_out_area() -> int:
    """The standard held-out area (Area 5), from the dataset YAML."""
    return int(load_dataset_meta("s3dis").extra["splits"]["test_area"])


def cross_validation_folds() -> list[tuple[list[str], str]]:
    """6-fold cross-validation: [(train areas, test area)], e.g. (["Area_2", ..., "Area_6"], "Area_1")."""
    areas = [f"Area_{a}" for a in load_dataset_meta("s3dis").extra["splits"]["areas"]]
    return [([a for a in areas if a != test], test) for test in areas]


def scene_name(room_dir: Path) -> str:
    """`Area_1/conferenceRoom_1` -> `Area_1_conferenceRoom_1` (flat names for the store)."""
    return f"{room_dir.parent.name}_{room_dir.name}"


def find_rooms(root: str | Path) -> list[Path]:
    """Room folders `root/Area_N/<room>` that have an `Annotations` folder, sorted."""
    root = Path(root)
    rooms = sorted(p.parent for p in root.glob("Area_*/*/Annotations") if p.is_dir())
    if not rooms:
        raise FileNotFoundError(f"{root}: no S3DIS rooms found (expected Area_N/<room>/Annotations/*.txt)")
    return rooms


def read_annotation_file(path: Path) -> np.ndarray:
    """float64 [L, 6] `x y z r g b` of one annotation file (stray bytes read as spaces)."""
    data, stray = clean_stray_bytes(path.read_bytes())
    if stray:
        warnings.warn(f"{path}: {stray} stray byte(s) (NUL/control/non-ASCII) read as spaces", stacklevel=2)
    return parse_numeric_text(data, 6, str(path))


def annotation_files(room_dir: Path) -> list[Path]:
    """The annotation files of a room that make up its points (duplicate copies left out).

    A `<stem> (n).txt` copy is verified against `<stem>.txt` (byte- or point-identical) and
    skipped with a warning; a copy that differs raises ValueError, since neither can be trusted.
    """
    files = sorted((room_dir / "Annotations").glob("*.txt"))
    by_stem = {f.stem: f for f in files}
    keep = []
    for f in files:
        copy = _COPY.match(f.stem)
        if copy is None or copy["stem"] not in by_stem:
            keep.append(f)
            continue
        original = by_stem[copy["stem"]]
        if f.read_bytes() == original.read_bytes():
            how = "byte-identical"
        elif np.array_equal(read_annotation_file(f), read_annotation_file(original)):
            how = "point-identical"
        else:
            raise ValueError(f"{f}: looks like a copy of {original.name} but holds different points; "
                             f"remove one of them")
        warnings.warn(f"{f}: skipped, a {how} duplicate of {original.name}", stacklevel=2)
    return keep


def load_room(room_dir: str | Path) -> Scene:
    """One S3DIS room as a scene: coord float32 [N,3] m, color float32 [N,3] 0..1,
    label int64 [N] (13 classes), instance int64 [N] (one id per annotation file)."""
    room_dir = Path(room_dir)
    lookup = class_lookup()
    files = annotation_files(room_dir)
    if not files:
        raise FileNotFoundError(f"{room_dir / 'Annotations'}: no annotation files")
    parts, labels, instances = [], [], []
    for index, f in enumerate(files):
        match = _OBJECT.match(f.stem)
        if match is None or match["cls"] not in lookup:
            raise ValueError(f"{f}: annotation file name must be <class>_<k>.txt with class one of "
                             f"{', '.join(sorted(lookup))}")
        points = read_annotation_file(f)
        parts.append(points)
        labels.append(np.full(len(points), lookup[match["cls"]], dtype=np.int64))
        instances.append(np.full(len(points), index, dtype=np.int64))
    points = np.concatenate(parts)
    return {
        "coord": points[:, :3].astype(np.float32),
        "color": (points[:, 3:6] / 255.0).astype(np.float32),
        "label": np.concatenate(labels),
        "instance": np.concatenate(instances),
        "name": scene_name(room_dir),
    }
