"""Dataset facts (class names, colours, raw ids) read from `datasets/<name>.yaml`.

This is the only place class lists come from: code never spells them out again.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pcseg.resources import datasets_dir


@dataclass(frozen=True)
class DatasetMeta:
    """One dataset's facts.

    class_names: K names in label order; colors: uint8 [K, 3]; raw_ids: the id of each class
    in the raw files (e.g. NYU40 ids for ScanNet), or None; extra: the rest of the YAML.
    """

    name: str
    class_names: tuple[str, ...]
    colors: np.ndarray
    ignore_index: int = -1
    raw_ids: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def raw_to_label(self, max_raw_id: int | None = None) -> np.ndarray:
        """int64 lookup table raw id -> class index (ignore_index for ids not in the benchmark)."""
        if self.raw_ids is None:
            raise ValueError(f"dataset {self.name!r} has no raw ids")
        size = max(max(self.raw_ids), max_raw_id or 0) + 1
        table = np.full(size, self.ignore_index, dtype=np.int64)
        table[list(self.raw_ids)] = np.arange(self.num_classes)
        return table


def available_datasets() -> list[str]:
    return sorted(p.stem for p in datasets_dir().glob("*.yaml"))


def _parse(data: dict[str, Any], source: str) -> DatasetMeta:
    try:
        classes = data["classes"]
        names = tuple(str(c["name"]) for c in classes)
        colors = np.array([c["color"] for c in classes], dtype=np.uint8)
        ids = [c.get("id") for c in classes]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{source}: each entry of 'classes' needs 'name' and 'color' ({err})") from None
    if any(i is not None for i in ids) and any(i is None for i in ids):
        raise ValueError(f"{source}: either every class has an 'id' or none does")
    extra = {k: v for k, v in data.items() if k not in ("name", "classes", "ignore_index")}
    return DatasetMeta(
        name=str(data.get("name", Path(source).stem)),
        class_names=names,
        colors=colors,
        ignore_index=int(data.get("ignore_index", -1)),
        raw_ids=tuple(int(i) for i in ids) if ids and ids[0] is not None else None,
        extra=extra,
    )


@lru_cache(maxsize=None)
def load_dataset_meta(name_or_path: str) -> DatasetMeta:
    """Facts of a shipped dataset (`"s3dis"`) or of a user's class YAML (a path).

    A user's YAML has the same form: `classes: [{name: ..., color: [r, g, b]}, ...]`.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = datasets_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"unknown dataset {name_or_path!r}: not a file, and not one of {', '.join(available_datasets())}"
        )
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping with 'classes'")
    return _parse(data, str(path))
