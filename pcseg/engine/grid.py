"""`pcseg grid GRID.yaml --out DIR`: every (setting, protocol, seed) training run of a results
table, each one `pcseg train` process, then the table itself (mean ± std over seeds).

A grid file names a recipe, the seeds, the label protocols (columns) and the settings (rows):

    recipe: synthetic_results            # a shipped recipe name or a path
    seeds: [0, 1, 2]
    seed_keys: [train.seed, data.protocol_seed]   # each run sets all of them to its seed
    protocols:                           # column label -> protocol spec (null = every label)
      "1%": "ratio:0.01"
      "0.1%": {protocol: "ratio:0.001", overrides: [train.epochs=20]}   # a column's own overrides
      full: null
    settings:
      - name: baseline
        overrides: [method.name=supervised]
      - name: fully supervised
        protocols: [full]                # a subset of the columns (default: every column but `full`)
        overrides: [method.name=supervised]
      - name: CPS
        recipe: my_cps_recipe.yaml       # this row's own recipe (default: the grid's `recipe`)

A run's config is the setting's recipe <- the column's overrides <- the setting's overrides <-
`data.protocol` <- the seed keys. Run folders are `DIR/<setting>/<protocol>/seed<k>`; a folder
with `metrics.json` is done and skipped, one with only `last.pt` is resumed, so an interrupted
grid continues where it stopped.
Runs go `--jobs` at a time with `--threads` torch threads each. Each cell reports the weights
a run ended with (metrics.json `final`), not its best validation. The summary goes to
`DIR/results.md` (markdown table), `DIR/results.json` (every run's numbers) and
`DIR/results.png` (bar chart with ±std).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml
from tqdm import tqdm

from pcseg.config import ConfigError, load_config
from pcseg.resources import find_grid

GRID_KEYS = ("recipe", "seeds", "seed_keys", "protocols", "settings")
SETTING_KEYS = ("name", "recipe", "overrides", "protocols")
COLUMN_KEYS = ("protocol", "overrides")


@dataclass(frozen=True)
class GridRun:
    """One training run of the grid: its row, column, seed, full override list and folder."""

    setting: str
    protocol: str  # column label, e.g. "1%"
    seed: int
    recipe: str  # shipped recipe name or path the run starts from
    overrides: tuple[str, ...]
    folder: Path


@dataclass(frozen=True)
class GridColumn:
    """One protocol column: its protocol spec (None = every label) and its own overrides."""

    protocol: Optional[str]
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class GridSetting:
    """One row of the grid: its name, recipe, overrides and protocol columns."""

    name: str
    recipe: str
    overrides: tuple[str, ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class GridSpec:
    """A parsed grid file (see the module docstring)."""

    path: Path
    recipe: str  # the settings' default recipe
    seeds: tuple[int, ...]
    seed_keys: tuple[str, ...]
    columns: dict[str, GridColumn]  # column label -> protocol and overrides (applied before the setting's)
    settings: tuple[GridSetting, ...]


def _fail(path: Path, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}")


def _check_keys(path: Path, where: str, data: dict, valid: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise _fail(path, f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid: {', '.join(valid)}")


def _check_overrides(path: Path, where: str, overrides: Any) -> tuple[str, ...]:
    """`overrides` as a tuple of key=value strings (None = none); ConfigError naming `where` otherwise."""
    overrides = overrides or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) and "=" in o for o in overrides):
        raise _fail(path, f"{where}: 'overrides' must be a list of key=value strings")
    return tuple(overrides)


def _parse_column(path: Path, label: str, value: Any) -> GridColumn:
    """A `protocols` entry: a spec / null, or {protocol: spec | null, overrides: [...]}."""
    if not isinstance(value, dict):
        return GridColumn(None if value is None else str(value), ())
    where = f"protocols[{label!r}]"
    _check_keys(path, where, value, COLUMN_KEYS)
    if "protocol" not in value:
        raise _fail(path, f"{where}: missing key 'protocol' (null = every label)")
    protocol = value["protocol"]
    overrides = _check_overrides(path, where, value.get("overrides"))
    return GridColumn(None if protocol is None else str(protocol), overrides)


def _resolve_recipe(path: Path, recipe: str) -> str:
    """A recipe as written in the grid file; a path relative to the grid file's folder is made absolute."""
    if not Path(recipe).is_file() and (path.parent / recipe).is_file():
        return str(path.parent / recipe)
    return recipe


def load_grid(path: str | Path) -> GridSpec:
    """Parse and check a grid file; ConfigError naming the file and the offending key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the grid file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise _fail(path, "a grid file must be a mapping with keys " + ", ".join(GRID_KEYS))
    _check_keys(path, "top level", data, GRID_KEYS)
    for key in ("recipe", "seeds", "protocols", "settings"):
        if key not in data:
            raise _fail(path, f"missing key '{key}'")
    recipe = _resolve_recipe(path, str(data["recipe"]))
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise _fail(path, f"'seeds' must be a non-empty list of integers, got {seeds!r}")
    seed_keys = data.get("seed_keys", ["train.seed"])
    if not isinstance(seed_keys, list) or not all(isinstance(k, str) for k in seed_keys):
        raise _fail(path, f"'seed_keys' must be a list of dotted config keys, got {seed_keys!r}")
    protocols = data["protocols"]
    if not isinstance(protocols, dict) or not protocols:
        raise _fail(path, "'protocols' must map column labels to protocol specs (null = every label)")
    grid_columns = {str(k): _parse_column(path, str(k), v) for k, v in protocols.items()}
    default_columns = tuple(k for k, c in grid_columns.items() if c.protocol is not None)
    settings = []
    if not isinstance(data["settings"], list) or not data["settings"]:
        raise _fail(path, "'settings' must be a non-empty list of {name, overrides, protocols}")
    for i, item in enumerate(data["settings"]):
        where = f"settings[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise _fail(path, f"{where}: expected a mapping with a 'name'")
        _check_keys(path, where, item, SETTING_KEYS)
        overrides = _check_overrides(path, f"{where} ({item['name']})", item.get("overrides"))
        columns = item.get("protocols", list(default_columns))
        missing = [c for c in columns if c not in grid_columns]
        if missing:
            raise _fail(path, f"{where} ({item['name']}): protocol column(s) {', '.join(map(repr, missing))} "
                        f"not in 'protocols' ({', '.join(grid_columns)})")
        own_recipe = item.get("recipe", recipe)
        if not isinstance(own_recipe, str):
            raise _fail(path, f"{where} ({item['name']}): 'recipe' must be a recipe name or path, got {own_recipe!r}")
        settings.append(GridSetting(str(item["name"]), _resolve_recipe(path, own_recipe), overrides,
                                    tuple(columns)))
    names = [s.name for s in settings]
    if len(set(names)) != len(names):
        raise _fail(path, f"setting names must be unique, got {names}")
    return GridSpec(path, recipe, tuple(seeds), tuple(seed_keys), grid_columns, tuple(settings))


def slug(text: str) -> str:
    """A folder name for a row or column label ("0.1%" -> "0.1pct", "DSP staged" -> "dsp_staged")."""
    text = text.strip().lower().replace("%", "pct")
    return re.sub(r"[^a-z0-9.]+", "_", text).strip("_") or "x"


def expand_grid(spec: GridSpec, out: str | Path, seeds: Optional[Sequence[int]] = None,
                only: Optional[Sequence[str]] = None) -> list[GridRun]:
    """Every run of the grid: seeds, then rows in file order, then columns."""
    out = Path(out)
    seeds = tuple(spec.seeds if seeds is None else seeds)
    known = [s.name for s in spec.settings]
    if only:
        unknown = [o for o in only if o not in known]
        if unknown:
            raise ConfigError(f"--only: unknown setting(s) {', '.join(map(repr, unknown))}; valid: {', '.join(known)}")
    runs = []
    # seed-major: an interrupted grid has every setting at the first seeds rather than some at all
    for seed in seeds:
        for setting in spec.settings:
            if only and setting.name not in only:
                continue
            for column in setting.columns:
                protocol = spec.columns[column].protocol
                all_overrides = (*spec.columns[column].overrides, *setting.overrides,
                                 f"data.protocol={'null' if protocol is None else protocol}",
                                 *(f"{key}={seed}" for key in spec.seed_keys))
                folder = out / slug(setting.name) / slug(column) / f"seed{seed}"
                runs.append(GridRun(setting.name, column, seed, setting.recipe, all_overrides, folder))
    return runs


def check_runs(spec: GridSpec, runs: Sequence[GridRun]) -> None:
    """Load every run's config once before anything trains: a typo fails now, not after an hour."""
    for run in runs:
        try:
            load_config(run.recipe, list(run.overrides))
        except ConfigError as err:
            raise ConfigError(f"{spec.path}: setting {run.setting!r}: {err}") from None


def train_command(run: GridRun) -> list[str]:
    """The `pcseg train` command line of one run (resumes a run that has `last.pt`)."""
    command = [sys.executable, "-m", "pcseg", "train", run.recipe, *run.overrides,
               "train.progress=false", "--out", str(run.folder)]
    if (run.folder / "last.pt").is_file():
        command.append("--resume")
    return command


def is_done(run: GridRun) -> bool:
    return (run.folder / "metrics.json").is_file()


def claim(run: GridRun) -> bool:
    """Mark `run` as taken by this process (`<folder>/RUNNING` holds its pid); False when another
    live process holds it, so several `pcseg grid` processes can share one grid folder."""
    marker = run.folder / "RUNNING"
    run.folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            pid = int(marker.read_text() or "0")
            os.kill(pid, 0)
            return False  # a live process trains it
        except (ValueError, ProcessLookupError, PermissionError, FileNotFoundError):
            marker.unlink(missing_ok=True)  # left behind by a process that died
            return claim(run)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def run_all(runs: Sequence[GridRun], jobs: int, threads: int,
            progress: bool = True) -> list[GridRun]:
    """Train every run without `metrics.json`, `jobs` processes at a time; returns the failed runs.

    Each process writes its output to `<folder>/train.log`; a failure does not stop the others.
    """
    todo = [r for r in runs if not is_done(r)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    running: list[tuple[GridRun, subprocess.Popen, Any]] = []
    failed: list[GridRun] = []
    bar = tqdm(total=len(runs), initial=len(runs) - len(todo), desc="grid", unit="run", disable=not progress)
    pending = list(todo)
    while pending or running:
        while pending and len(running) < jobs:
            run = pending.pop(0)
            if is_done(run) or not claim(run):
                bar.update(is_done(run))
                continue
            log = open(run.folder / "train.log", "a", encoding="utf-8")
            running.append((run, subprocess.Popen(train_command(run), stdout=log, stderr=subprocess.STDOUT,
                                                  env=env, stdin=subprocess.DEVNULL), log))
            bar.set_postfix_str(f"{run.setting} {run.protocol} seed {run.seed}")
        time.sleep(0.5)
        for item in list(running):
            run, process, log = item
            if process.poll() is None:
                continue
            log.close()
            (run.folder / "RUNNING").unlink(missing_ok=True)
            running.remove(item)
            if process.returncode != 0 or not is_done(run):
                failed.append(run)
                tqdm.write(f"grid: FAILED {run.setting} / {run.protocol} / seed {run.seed} "
                           f"(exit {process.returncode}); see {run.folder / 'train.log'}")
            bar.update()
    bar.close()
    return failed


def read_metrics(run: GridRun) -> Optional[dict[str, Any]]:
    """A finished run's metrics.json with the final model's scores (its `final` entry) in place
    of the best validation's: a table must not pick, per run, the best of several validations
    on the very scenes it reports."""
    if not is_done(run):
        return None
    with open(run.folder / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    return {**metrics, **metrics.get("final", {})}


def summarise(spec: GridSpec, runs: Sequence[GridRun]) -> dict[str, Any]:
    """Per (setting, column): mIoU / OA mean and sample std (ddof=1) over the finished seeds.

    Returns {"columns": [...], "rows": [{"setting", "cells": {column: {...} | None}}], "runs": [...]}.
    """
    columns = [c for c in spec.columns if any(r.protocol == c for r in runs)]
    rows, records = [], []
    for name in (s.name for s in spec.settings):
        mine = [r for r in runs if r.setting == name]
        if not mine:
            continue
        cells: dict[str, Optional[dict[str, Any]]] = {}
        for column in columns:
            finished = [(r, m) for r in mine if r.protocol == column and (m := read_metrics(r)) is not None]
            if not finished:
                cells[column] = None
                continue
            miou = np.array([m["miou"] for _, m in finished], dtype=np.float64)
            oa = np.array([m["oa"] for _, m in finished], dtype=np.float64)
            seconds = np.array([m.get("train_time_s", np.nan) for _, m in finished], dtype=np.float64)
            cells[column] = {"miou": float(miou.mean()), "miou_std": float(miou.std(ddof=1)) if len(miou) > 1 else 0.0,
                             "oa": float(oa.mean()), "oa_std": float(oa.std(ddof=1)) if len(oa) > 1 else 0.0,
                             "seeds": [r.seed for r, _ in finished], "train_time_s": float(np.median(seconds))}
            for r, m in finished:
                records.append({"setting": name, "protocol": column, "seed": r.seed, "recipe": r.recipe,
                                "folder": str(r.folder), "miou": m["miou"], "oa": m["oa"], "macc": m.get("macc"),
                                "iou": m.get("iou"), "train_time_s": m.get("train_time_s"),
                                "num_labelled_points": m.get("num_labelled_points")})
        rows.append({"setting": name, "cells": cells})
    return {"grid": str(spec.path), "recipe": spec.recipe, "columns": columns, "rows": rows, "runs": records}


def format_markdown(summary: dict[str, Any]) -> str:
    """The table: one row per setting, `mIoU ± std (OA)` in percent per protocol column."""
    columns = summary["columns"]
    head = "| setting | " + " | ".join(f"{c} mIoU ± std | {c} OA" for c in columns) + " | seeds | train s/run |"
    rule = "|---|" + "---:|---:|" * len(columns) + "---:|---:|"
    lines = [head, rule]
    for row in summary["rows"]:
        cells, seeds, seconds = [], set(), []
        for column in columns:
            cell = row["cells"].get(column)
            if cell is None:
                cells += ["–", "–"]
                continue
            spread = f" ± {100 * cell['miou_std']:.1f}" if len(cell["seeds"]) > 1 else ""  # no std of one seed
            cells += [f"{100 * cell['miou']:.1f}{spread}", f"{100 * cell['oa']:.1f}"]
            seeds.add(len(cell["seeds"]))
            seconds.append(cell["train_time_s"])
        n = "/".join(str(s) for s in sorted(seeds)) or "0"
        t = f"{np.median(seconds):.0f}" if seconds else "–"
        lines.append(f"| {row['setting']} | " + " | ".join(cells) + f" | {n} | {t} |")
    return "\n".join(lines)


def plot_summary(summary: dict[str, Any], out_png: str | Path) -> Path:
    """Grouped bars: mIoU per setting, one bar per protocol column, ±std whiskers (none for one seed)."""
    from pcseg.viz.plots import plot_grouped_bars
    labels = [row["setting"] for row in summary["rows"]]
    groups = {}
    for column in summary["columns"]:
        groups[column] = [(100 * c["miou"], 100 * c["miou_std"] if len(c["seeds"]) > 1 else None)
                          if (c := row["cells"].get(column)) else None for row in summary["rows"]]
    return plot_grouped_bars(labels, groups, out_png, ylabel="mIoU (%)", title=Path(summary["grid"]).stem)


def write_summary(summary: dict[str, Any], out: Path) -> str:
    table = format_markdown(summary)
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    plot_summary(summary, out / "results.png")
    return table


def main(args: argparse.Namespace) -> int:
    try:
        grid_path = find_grid(args.grid)
        spec = load_grid(grid_path)
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        only = [s.strip() for s in args.only.split(",")] if args.only else None
        runs = expand_grid(spec, args.out, seeds, only)
        check_runs(spec, runs)
    except (ConfigError, FileNotFoundError, ValueError) as err:
        print(f"pcseg grid: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = sum(is_done(r) for r in runs)
    print(f"grid {spec.path.name}: {len(runs)} runs ({done} done) of recipe {spec.recipe}, "
          f"{args.jobs} at a time x {args.threads} threads -> {out}")
    if args.dry_run:
        for run in runs:
            print(("done  " if is_done(run) else "todo  ") + " ".join(train_command(run)[2:]))
        return 0
    failed = [] if args.summary_only else run_all(runs, args.jobs, args.threads)
    table = write_summary(summarise(spec, runs), out)
    print(table)
    print(f"wrote {out / 'results.md'}, {out / 'results.json'}, {out / 'results.png'}")
    if failed:
        print(f"pcseg grid: {len(failed)} run(s) failed; their train.log says why", file=sys.stderr)
        return 1
    return 0
