"""`pcseg report curve RUNS... --out curve.png`: mIoU (mean ± std over seeds) against label
ratio, one line per method, read from run folders (`config.yaml` + `metrics.json`)."""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pcseg.viz.plots import plot_label_curve


@dataclass(frozen=True)
class RunResult:
    """One finished run: its method, label ratio (1.0 = full labels), seed and final mIoU (0..1)."""

    folder: str
    method: str
    ratio: float
    seed: int
    miou: float


def _get(config: dict, dotted: str, source: Path):
    node = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"{source}: missing key '{dotted}'")
        node = node[key]
    return node


def parse_ratio(protocol: str | None, source: str = "protocol") -> float | None:
    """Label ratio of a protocol string: "ratio:0.01" -> 0.01, None (full labels) -> 1.0;
    protocols without a ratio ("count:20", "clicks:1") -> None."""
    if protocol is None:
        return 1.0
    kind, _, value = str(protocol).partition(":")
    if kind != "ratio":
        return None
    try:
        ratio = float(value)
    except ValueError:
        raise ValueError(f"{source}: protocol {protocol!r} has no number after 'ratio:'") from None
    if not 0 < ratio <= 1:
        raise ValueError(f"{source}: protocol {protocol!r}: the ratio must be in (0, 1]")
    return ratio


def protocol_spec(value: str | None, config_path: Path) -> str | None:
    """The protocol spec of a run's `data.protocol`: the value itself ("ratio:0.01", None), or,
    when it names a protocol file (.npz, relative to the working directory or the run folder),
    the spec stored in that file."""
    if value is None or not str(value).lower().endswith(".npz"):
        return value
    candidates = [Path(value), config_path.parent / value]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ValueError(f"{config_path}: data.protocol file {value!r} not found "
                         f"(looked in {', '.join(str(c.parent) for c in candidates)})")
    from pcseg.weak.protocol_file import load_protocol

    return load_protocol(path).spec


def read_run(folder: str | Path) -> RunResult | None:
    """The result of a run folder; None when its protocol has no label ratio (count/clicks).

    Reads `config.yaml` keys `data.protocol` (a spec or a protocol file), `method.name`,
    `train.seed` and `metrics.json`
    key `miou`; ValueError naming the file and key when one is missing.
    """
    folder = Path(folder)
    config_path, metrics_path = folder / "config.yaml", folder / "metrics.json"
    for path in (config_path, metrics_path):
        if not path.is_file():
            raise ValueError(f"{folder}: not a finished run folder ({path.name} is missing)")
    with open(config_path, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    with open(metrics_path, encoding="utf-8") as f:
        metrics = json.load(f)
    ratio = parse_ratio(protocol_spec(_get(config, "data.protocol", config_path), config_path), str(config_path))
    if ratio is None:
        return None
    miou = metrics.get("miou")
    if not isinstance(miou, (int, float)):
        raise ValueError(f"{metrics_path}: 'miou' must be a number, got {miou!r}")
    return RunResult(str(folder), str(_get(config, "method.name", config_path)), ratio,
                     int(_get(config, "train.seed", config_path)), float(miou))


def aggregate(results: list[RunResult]) -> dict[str, list[tuple[float, float, float, int]]]:
    """method -> [(ratio, mean mIoU, std mIoU, number of seeds)] sorted by ratio.

    std is the sample standard deviation over seeds (ddof=1), 0 for a single seed. A repeated
    (method, ratio, seed) is an error: the same experiment would be counted twice.
    """
    groups: dict[tuple[str, float], dict[int, RunResult]] = defaultdict(dict)
    for r in results:
        seen = groups[(r.method, r.ratio)]
        if r.seed in seen:
            raise ValueError(f"{seen[r.seed].folder} and {r.folder} are the same experiment "
                             f"(method {r.method}, ratio {r.ratio}, seed {r.seed})")
        seen[r.seed] = r
    curves: dict[str, list[tuple[float, float, float, int]]] = defaultdict(list)
    for (method, ratio), by_seed in sorted(groups.items()):
        values = np.array([r.miou for r in by_seed.values()], dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        curves[method].append((ratio, float(values.mean()), std, len(values)))
    return dict(curves)


def format_table(curves: dict[str, list[tuple[float, float, float, int]]]) -> str:
    """The plotted numbers as a text table, mIoU in percent."""
    lines = [f"{'method':<20s} {'ratio':>8s} {'mIoU %':>8s} {'± std':>7s} {'seeds':>5s}"]
    for method, points in sorted(curves.items()):
        for ratio, mean, std, n in points:
            lines.append(f"{method:<20s} {ratio:>8g} {100 * mean:>8.2f} {100 * std:>7.2f} {n:>5d}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    if args.action != "curve":
        raise ValueError(f"unknown report {args.action!r}")
    results = []
    for folder in args.runs:
        try:
            result = read_run(folder)
        except ValueError as err:
            print(f"pcseg report: {err}", file=sys.stderr)
            return 2
        if result is None:
            print(f"pcseg report: skipping {folder}: its protocol has no label ratio", file=sys.stderr)
        else:
            results.append(result)
    if not results:
        print("pcseg report: no run with a label ratio to plot", file=sys.stderr)
        return 2
    try:
        curves = aggregate(results)
    except ValueError as err:
        print(f"pcseg report: {err}", file=sys.stderr)
        return 2
    print(format_table(curves))
    out = plot_label_curve(curves, args.out)
    print(f"wrote {out}")
    return 0
