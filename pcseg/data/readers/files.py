"""Users' own scans: one function, `load_scene_file`, for PLY, NPY/NPZ, LAS/LAZ and TXT/CSV.

Every format is first reduced to named columns (PLY vertex properties, NPZ arrays, NPY
structured fields, a text header; positional files get names "0", "1", ...). The scene keys
are then taken from those columns, either as the caller maps them

    load_scene_file("scan.ply", fields={"label": "scalar_Classification", "color": ["r", "g", "b"]})

or by the usual names (x/y/z, red/green/blue or r/g/b, label/class/classification, ...).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import numpy as np

from pcseg.data.contract import IGNORE, Scene
from pcseg.data.meta import DatasetMeta, load_dataset_meta
from pcseg.data.readers.text import clean_stray_bytes, parse_numeric_text

FieldSpec = Union[str, int, list]  # one column/array name or index, or a list of them
SUFFIXES = (".ply", ".npy", ".npz", ".las", ".laz", ".txt", ".csv", ".xyz", ".pts")
SCENE_KEYS = ("coord", "color", "normal", "label", "instance")

# Names tried, in order, when the caller maps no column to a key (compared case-insensitively).
_CANDIDATES: dict[str, list[Any]] = {
    "coord": [["x", "y", "z"], "coord", "xyz", "points", "pos", "positions"],
    "color": [["red", "green", "blue"], ["r", "g", "b"], ["diffuse_red", "diffuse_green", "diffuse_blue"],
              "color", "colors", "rgb"],
    "normal": [["nx", "ny", "nz"], ["normal_x", "normal_y", "normal_z"], "normal", "normals"],
    "label": ["label", "labels", "class", "classification", "scalar_label", "scalar_classification",
              "semantic", "sem_label", "segment"],
    "instance": ["instance", "instances", "instance_id", "scalar_instance", "ins_label", "object_id"],
}

# Headerless text / plain [N, C] arrays: column layout by column count.
_POSITIONAL: dict[int, dict[str, list[int]]] = {
    3: {"coord": [0, 1, 2]},
    4: {"coord": [0, 1, 2], "label": [3]},
    6: {"coord": [0, 1, 2], "color": [3, 4, 5]},
    7: {"coord": [0, 1, 2], "color": [3, 4, 5], "label": [6]},
    8: {"coord": [0, 1, 2], "color": [3, 4, 5], "label": [6], "instance": [7]},
}


def _positional(matrix: np.ndarray, source: str) -> tuple[dict[str, np.ndarray], dict[str, FieldSpec]]:
    """Columns "0".."C-1" of a [N, C] matrix, and the default mapping for C columns."""
    if matrix.ndim != 2:
        raise ValueError(f"{source}: expected an [N, C] array, got shape {matrix.shape}")
    columns = {str(i): matrix[:, i] for i in range(matrix.shape[1])}
    layout = _POSITIONAL.get(matrix.shape[1], {})
    return columns, {key: [str(i) for i in idx] for key, idx in layout.items()}


def _read_ply(path: Path) -> dict[str, np.ndarray]:
    from plyfile import PlyData

    ply = PlyData.read(str(path))
    if "vertex" not in ply:
        raise ValueError(f"{path}: PLY has no 'vertex' element (elements: {[e.name for e in ply.elements]})")
    vertex = ply["vertex"]
    return {p.name: np.asarray(vertex[p.name]) for p in vertex.properties}


def _read_las(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray]:
    try:
        import laspy
    except ImportError:
        raise ImportError(f"{path}: reading LAS/LAZ needs laspy: pip install 'pcseg[las]'") from None
    las = laspy.read(str(path))
    xyz = np.stack([np.asarray(las.x), np.asarray(las.y), np.asarray(las.z)], axis=1)
    # georeferenced coordinates (UTM: ~1e6 m) lose millimetres in float32: keep them relative
    origin = np.floor(xyz.min(axis=0)) if len(xyz) else np.zeros(3)
    columns = {"x": xyz[:, 0] - origin[0], "y": xyz[:, 1] - origin[1], "z": xyz[:, 2] - origin[2],
               "classification": np.asarray(las.classification)}
    names = set(las.point_format.dimension_names)
    for dim in ("red", "green", "blue"):
        if dim in names:
            columns[dim] = np.asarray(las[dim])
    return columns, origin


def _sniff_delimiter(line: str) -> str | None:
    for delimiter in (",", ";", "\t"):
        if delimiter in line:
            return delimiter
    return None  # any whitespace


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _read_text(path: Path) -> tuple[dict[str, np.ndarray], dict[str, FieldSpec]]:
    data, _ = clean_stray_bytes(path.read_bytes())
    lines = data.split(b"\n")
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ValueError(f"{path}: empty file")
    head = lines[first].decode("ascii", errors="replace")
    delimiter = _sniff_delimiter(head)
    tokens = [t.strip() for t in (head.split(delimiter) if delimiter else head.split())]
    header = None
    if not all(_is_number(t) for t in tokens):
        header = [t.lstrip("/#").strip() for t in tokens]  # CloudCompare writes "//X,Y,Z"
        lines = lines[first + 1:]
    body = b"\n".join(lines)
    if delimiter:
        body = body.replace(delimiter.encode(), b" ")
    # parse errors report lines of the body: shift them back to file lines
    offset = first + 1 if header is not None else 0
    try:
        matrix = parse_numeric_text(body, len(tokens), str(path))
    except ValueError as err:
        raise ValueError(_shift_line(str(err), str(path), offset)) from None
    if header is None:
        return _positional(matrix, str(path))
    return {name: matrix[:, i] for i, name in enumerate(header)}, {}


def _shift_line(message: str, source: str, offset: int) -> str:
    prefix = source + ":"
    if offset and message.startswith(prefix):
        number, _, rest = message[len(prefix):].partition(":")
        if number.isdigit():
            return f"{prefix}{int(number) + offset}:{rest}"
    return message


def _read_numpy(path: Path) -> tuple[dict[str, np.ndarray], dict[str, FieldSpec]]:
    loaded = np.load(path, allow_pickle=False)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        with loaded:
            return {k: loaded[k] for k in loaded.files}, {}
    if loaded.dtype.names:
        return {name: loaded[name] for name in loaded.dtype.names}, {}
    return _positional(loaded, str(path))


def _column(columns: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    if name in columns:
        return columns[name]
    lower = {k.lower(): k for k in columns}
    key = lower.get(str(name).lower())
    return None if key is None else columns[key]


def _resolve(columns: dict[str, np.ndarray], spec: FieldSpec) -> np.ndarray | None:
    """The array a spec names: one column (1D or 2D), or several 1D columns stacked [N, k]."""
    if isinstance(spec, (list, tuple)):
        parts = [_column(columns, str(s)) for s in spec]
        if any(p is None for p in parts):
            return None
        return np.stack([np.asarray(p).reshape(-1) for p in parts], axis=1)
    return _column(columns, str(spec))


def _scale_color(color: np.ndarray) -> np.ndarray:
    """float32 [N, 3] in 0..1 from 0..1 floats, 0-255 or 0-65535 (16-bit LAS) values."""
    color = np.asarray(color)
    peak = float(color.max(initial=0))
    if peak > 255:
        return (color / 65535.0).astype(np.float32)
    if peak > 1 or np.issubdtype(color.dtype, np.integer):
        return (color / 255.0).astype(np.float32)
    return color.astype(np.float32)


def _as_ids(values: np.ndarray, key: str, source: str) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if np.issubdtype(values.dtype, np.floating):
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            raise ValueError(f"{source}: {key} value {values[np.flatnonzero(bad)[0]]} is not an integer")
    return values.astype(np.int64)


def _map_labels(label: np.ndarray, meta: DatasetMeta, source: str) -> np.ndarray:
    """Class indices of file labels: raw ids through the YAML's `id`s, else checked 0..K-1."""
    if meta.raw_ids is not None:
        ids = np.asarray(meta.raw_ids, dtype=np.int64)
        bad = ~np.isin(label, ids) & (label != IGNORE)
        if bad.any():
            raise ValueError(f"{source}: label {int(label[np.flatnonzero(bad)[0]])} is not a class id of "
                             f"{meta.name} (ids: {', '.join(map(str, meta.raw_ids))})")
        order = np.argsort(ids)
        mapped = order[np.searchsorted(ids, label, sorter=order).clip(0, len(ids) - 1)]
        return np.where(label == IGNORE, IGNORE, mapped).astype(np.int64)
    bad = (label != IGNORE) & ((label < 0) | (label >= meta.num_classes))
    if bad.any():
        raise ValueError(f"{source}: label {int(label[np.flatnonzero(bad)[0]])} is outside the "
                         f"{meta.num_classes} classes of {meta.name} (0..{meta.num_classes - 1}, or {IGNORE})")
    return label


def _read_columns(path: Path) -> tuple[dict[str, np.ndarray], dict[str, FieldSpec], dict[str, Any]]:
    """Named columns of a file, the default mapping of a positional layout, and extra
    per-scene metadata (LAS: `origin`)."""
    suffix = path.suffix.lower()
    if suffix == ".ply":
        return _read_ply(path), {}, {}
    if suffix in (".las", ".laz"):
        columns, origin = _read_las(path)
        return columns, {}, {"origin": origin}
    if suffix in (".npy", ".npz"):
        return (*_read_numpy(path), {})
    return (*_read_text(path), {})


def _pick_columns(columns: dict[str, np.ndarray], defaults: dict[str, FieldSpec],
                  fields: dict[str, FieldSpec], source: str) -> Scene:
    """Scene key -> raw array: the caller's mapping, else the positional layout, else names."""
    scene: Scene = {}
    for key in SCENE_KEYS:
        if key in fields:
            value = _resolve(columns, fields[key])
            if value is None:
                raise ValueError(f"{source}: fields[{key!r}] = {fields[key]!r} not found; "
                                 f"available: {', '.join(columns)}")
        else:
            candidates = [defaults[key]] if key in defaults else ([] if defaults else _CANDIDATES[key])
            value = next((v for v in (_resolve(columns, c) for c in candidates) if v is not None), None)
        if value is not None:
            scene[key] = value
    return scene


def load_scene_file(path: str | Path, *, classes: str | DatasetMeta | None = None,
                    fields: dict[str, FieldSpec] | None = None) -> Scene:
    """A scene from one of the user's files (.ply .npy .npz .las .laz .txt .csv .xyz .pts).

    path: the file. classes: a class YAML (path or shipped dataset name) or DatasetMeta;
    labels are checked against it (or mapped through its `id`s). fields: scene key -> column
    name/index or list of them (e.g. `{"label": "scalar_Classification"}`); unmapped keys
    are auto-detected by common names.
    Returns coord float32 [N,3], and where present color float32 [N,3] 0..1 (0-255 and
    16-bit scaled), normal float32 [N,3], label int64 [N], instance int64 [N]; LAS files
    also give `origin` float64 [3] (coord is relative to it). Raises ValueError naming the
    file and the key, column or value at fault.
    """
    path = Path(path)
    source = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{source}: unsupported file type {suffix!r}; expected one of {' '.join(SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file")
    fields = dict(fields or {})
    unknown = sorted(set(fields) - set(SCENE_KEYS))
    if unknown:
        raise ValueError(f"fields: unknown scene key(s) {unknown}; valid keys: {', '.join(SCENE_KEYS)}")
    columns, defaults, extra = _read_columns(path)
    scene = _pick_columns(columns, defaults, fields, source)
    if "coord" not in scene:
        raise ValueError(f"{source}: no coordinates found (columns: {', '.join(columns)}); "
                         f"pass fields={{'coord': [...]}}")
    n = len(scene["coord"])
    for key, value in scene.items():
        width = 1 if key in ("label", "instance") else 3
        if len(value) != n or np.size(value) != n * width:
            expected = f"[{n}, 3]" if width == 3 else f"[{n}]"
            raise ValueError(f"{source}: '{key}' has shape {np.shape(value)}, expected {expected}")
    scene["coord"] = np.asarray(scene["coord"], dtype=np.float32).reshape(n, 3)
    if "color" in scene:
        scene["color"] = _scale_color(np.asarray(scene["color"]).reshape(n, 3))
    if "normal" in scene:
        scene["normal"] = np.asarray(scene["normal"], dtype=np.float32).reshape(n, 3)
    if "instance" in scene:
        scene["instance"] = _as_ids(scene["instance"], "instance", source)
    if "label" in scene:
        label = _as_ids(scene["label"], "label", source)
        if classes is not None:
            meta = classes if isinstance(classes, DatasetMeta) else load_dataset_meta(str(classes))
            label = _map_labels(label, meta, source)
        scene["label"] = label
    scene["name"] = path.stem
    scene.update(extra)
    return scene
