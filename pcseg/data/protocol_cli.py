"""`pcseg weak-labels make | show | import`: protocol files from the command line.

DATA is an HDF5 store written by `pcseg prepare` (read through `SceneStore`, one split),
`synthetic[:<rooms>:<seed>[:<points>]]` for the generated demo rooms (defaults: the
training rooms of the default config), or an image recipe (`configs/voc_cps.yaml`, or a
shipped recipe's name) with dotted overrides: its training images (`data.train_split`),
with the image specs `images:<f>` and `tags` besides the pixel ones.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from pcseg.config import apply_overrides
from pcseg.weak.protocol import IGNORE, Protocol, SceneSource, iter_source, make_protocol
from pcseg.weak.protocol_file import load_protocol, save_protocol
from pcseg.weak.protocol_import import import_official


def open_source(data: str, split: str | None) -> tuple[SceneSource, str, str | None]:
    """(source, identity recorded in the protocol, dataset name) for a DATA argument."""
    if data == "synthetic" or data.startswith("synthetic:"):
        from pcseg.config import DataConfig
        from pcseg.data.synthetic import SyntheticRoomSource

        defaults = DataConfig()
        parts = data.split(":")[1:]
        if len(parts) not in (0, 2, 3) or not all(p.isdigit() for p in parts):
            raise ValueError(f"DATA {data!r}: expected 'synthetic' or 'synthetic:<rooms>:<seed>[:<points>]' "
                             "with whole numbers")
        values = [int(p) for p in parts] + [defaults.train_rooms, defaults.synthetic_seed,
                                            defaults.room_points][len(parts):]
        rooms, seed, points = values
        return SyntheticRoomSource(rooms, seed, points), f"synthetic:{rooms}:{seed}:{points}", "synthetic_rooms"
    from pcseg.data.store import SceneStore

    store = SceneStore(data, split)
    return store, f"{data}#{split}" if split else data, store.dataset or None


def _class_names(protocol: Protocol, dataset: str | None) -> list[str] | None:
    """Class names of `dataset` (errors propagate: the user named it), else of the dataset
    recorded in the file when pcseg knows it, else None (classes print as numbers)."""
    from pcseg.data.meta import load_dataset_meta

    if dataset:
        return list(load_dataset_meta(dataset).class_names)
    try:
        return list(load_dataset_meta(protocol.dataset).class_names) if protocol.dataset else None
    except (FileNotFoundError, ValueError):
        return None


def summary_table(protocol: Protocol, class_names: list[str] | None = None, limit: int = 20) -> str:
    """Per-scene and per-class counts of labelled points, as aligned text."""
    lines = [f"protocol {protocol.spec}  seed {protocol.seed}  source {protocol.source}  "
             f"scenes {len(protocol.scenes)}", ""]
    lines.append(f"{'scene':<28} {'points':>10} {'labelled':>9} {'ratio':>9} {'classes':>7}")
    total_points = total_labelled = 0
    per_class: Counter = Counter()
    for s, (name, entry) in enumerate(protocol.scenes.items()):
        labels = entry.labels[entry.labels != IGNORE]
        per_class.update(labels.tolist())
        total_points += entry.num_points
        total_labelled += len(entry.indices)
        if s < limit:
            ratio = len(entry.indices) / max(entry.num_points, 1)
            lines.append(f"{name:<28} {entry.num_points:>10} {len(entry.indices):>9} {ratio:>9.5f} "
                         f"{len(np.unique(labels)):>7}")
    if len(protocol.scenes) > limit:
        lines.append(f"... {len(protocol.scenes) - limit} more scenes (--limit)")
    lines.append(f"{'total':<28} {total_points:>10} {total_labelled:>9} "
                 f"{total_labelled / max(total_points, 1):>9.5f}")
    lines += ["", f"{'class':<28} {'labelled':>9} {'share':>7}"]
    for c in sorted(per_class):
        name = class_names[c] if class_names and 0 <= c < len(class_names) else f"class {c}"
        lines.append(f"{name:<28} {per_class[c]:>9} {per_class[c] / max(total_labelled, 1):>7.3f}")
    return "\n".join(lines)


def image_recipe(data: str, overrides: list[str]):
    """The config of DATA when it names an image recipe (a .yaml file or a shipped recipe), else None."""
    from pcseg.config import load_config
    from pcseg.resources import configs_dir
    path = Path(data)
    if path.suffix not in (".yaml", ".yml") and not (not path.suffix and (configs_dir() / f"{data}.yaml").is_file()):
        return None
    cfg = load_config(data, overrides)
    if cfg.data.modality != "images":
        raise ValueError(f"DATA {data!r}: a recipe of 3D scenes; pass the HDF5 store of its data instead")
    return cfg


def _make(args: argparse.Namespace) -> Protocol:
    recipe = image_recipe(args.data, list(args.overrides))
    if recipe is not None:
        # the recipe's training images, exactly as `pcseg train` samples the protocol
        from pcseg.data.images.from_config import build_image_protocol, build_image_source
        cfg = apply_overrides(recipe, [f"data.protocol_seed={args.seed}"])
        return build_image_protocol(cfg, build_image_source(cfg, "train"), spec=args.protocol)
    if args.overrides:
        raise ValueError(f"key=value overrides ({args.overrides[0]}, ...) apply to image recipes only")
    source, identity, dataset = open_source(args.data, args.split)
    return make_protocol(args.protocol, iter_source(source, progress=True), args.seed, identity, dataset)


def _import(args: argparse.Namespace) -> Protocol:
    source, identity, dataset = open_source(args.data, args.split)
    return import_official(args.source, iter_source(source, progress=True), identity, dataset or "scannet")


def main(args: argparse.Namespace) -> int:
    try:
        if args.action == "show":
            protocol = load_protocol(args.file)
            print(summary_table(protocol, _class_names(protocol, args.dataset), args.limit))
            return 0
        protocol = _make(args) if args.action == "make" else _import(args)
        path = save_protocol(protocol, args.out)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"pcseg weak-labels {args.action}: {err}", file=sys.stderr)
        return 2
    print(summary_table(protocol, _class_names(protocol, None), limit=10))
    print(f"\nwrote {Path(path)}")
    return 0
