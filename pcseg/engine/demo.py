"""`pcseg demo`: 1% labels against full labels on synthetic rooms, on one CPU budget.

Generates training and validation rooms once, trains the recipe `synthetic_demo` twice
with the same budget (protocol ratio:0.01, and every label), evaluates both on the
full-resolution validation rooms, renders a validation room with both predictions, and
ends with a table: method, labels used, mIoU, OA, time. With two or more cores (`--jobs`)
the two models train side by side, one worker process and half the cores each: on 2 cores
that is about 1.4x faster than one after the other with 2 threads, because a single
training step does not keep two threads busy (measured: 1.26 s a step alone with 2 threads,
1.8 s a step each side by side with 1 thread).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm

from pcseg.config import ConfigError, apply_overrides, load_config
from pcseg.data.meta import load_dataset_meta
from pcseg.engine.build import CachedSource, build_setup, build_source, scene_batcher
from pcseg.engine.evaluate import SceneSource
from pcseg.engine.inference import predict_scene
from pcseg.engine.trainer import Trainer, make_logits_fn
from pcseg.metrics import format_table

RECIPE = "synthetic_demo"


def demo_config(args: argparse.Namespace, protocol: str | None):
    overrides = [f"train.seed={args.seed}", f"data.synthetic_seed={args.seed}"]
    for key, value in (("data.train_rooms", args.rooms), ("data.val_rooms", args.val_rooms),
                       ("train.epochs", args.epochs), ("data.room_points", args.points)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(RECIPE, overrides + list(args.overrides))
    if not any(o.startswith("train.val_every=") for o in args.overrides):
        # one validation, of the last model: the best of several on the same rooms would flatter it
        cfg = apply_overrides(cfg, [f"train.val_every={cfg.train.epochs}"])
    if protocol is None:
        # the reference: every label, plain cross-entropy (nothing to propagate or pseudo-label)
        return apply_overrides(cfg, ["data.protocol=null", "method.name=supervised"])
    return apply_overrides(cfg, [f"data.protocol={protocol}"])


def render(trainer: Trainer, scene: dict, out_png: Path, dataset: str) -> None:
    """Panels of one validation room (RGB, ground truth, prediction, errors, labelled points)."""
    from pcseg.viz.panels import render_panels
    meta = load_dataset_meta(dataset)
    trainer.method.eval()
    fn = make_logits_fn(trainer.method.predict, scene_batcher(trainer.cfg.data.features), trainer.device)
    pred = predict_scene(fn, scene).argmax(axis=1)
    render_panels(scene, pred, palette=meta.colors, class_names=meta.class_names, out_png=out_png)


def train_model(cfg: DictConfig, train_source: SceneSource, val_source: SceneSource, run: Path,
                threads: int) -> dict[str, Any]:
    """Train one of the demo's models into `run`, render a validation room, plot its curves and
    confusion matrix; returns its table row and metrics. Runs in a worker process when the
    demo trains its models side by side, so it takes everything it needs as arguments."""
    from pcseg.viz.plots import plot_confusion, plot_training_curves
    torch.set_num_threads(threads)
    start = time.perf_counter()
    trainer = Trainer(build_setup(cfg, train_source, val_source), run, torch.device("cpu"))
    metrics = trainer.fit()
    seconds = time.perf_counter() - start
    render(trainer, val_source.load(val_source.names()[0]), run.parent / f"{run.name}_val_room.png", cfg.data.dataset)
    plot_training_curves(run / "log.jsonl", run / "curves.png")
    plot_confusion(np.array(metrics["confusion"]), trainer.setup.class_names, run / "confusion.png")
    return {"labelled": int(np.sum(trainer.setup.class_counts)), "metrics": metrics, "seconds": seconds}


def logged_step(run: Path) -> int:
    """The last training step `run/log.jsonl` records (0 before the first record)."""
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    step = 0
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            step = max(step, int(json.loads(line).get("step", 0)))
        except (ValueError, AttributeError):
            continue  # a line being written right now
    return step


def train_side_by_side(jobs: list[tuple[DictConfig, Path]], train_source: SceneSource, val_source: SceneSource,
                       threads: int) -> list[dict[str, Any]]:
    """`train_model` of every (config, run) at once, one worker process each, with a progress
    bar per model read from its log.jsonl (the workers show none)."""
    context = multiprocessing.get_context("spawn")  # a clean torch in each worker
    bars = [tqdm(total=steps_of(cfg), desc=run.name, unit="step", position=i, leave=True)
            for i, (cfg, run) in enumerate(jobs)]
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=context) as pool:
        quiet = [apply_overrides(cfg, ["train.progress=false"]) for cfg, _ in jobs]
        futures = [pool.submit(train_model, cfg, train_source, val_source, run, threads)
                   for cfg, (_, run) in zip(quiet, jobs)]
        while not all(f.done() for f in futures):
            time.sleep(1.0)
            for bar, (_, run) in zip(bars, jobs):
                bar.update(min(logged_step(run), bar.total) - bar.n)
        for bar in bars:
            bar.update(bar.total - bar.n)
            bar.close()
        return [f.result() for f in futures]


def steps_of(cfg: DictConfig) -> int:
    """Training steps of a demo run: epochs x batches per epoch."""
    return cfg.train.epochs * math.ceil(cfg.data.train_rooms / cfg.data.batch_size)


def main(args: argparse.Namespace) -> int:
    try:
        base = demo_config(args, None)
    except ConfigError as err:
        print(f"pcseg demo: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpus = os.cpu_count() or 1
    parallel = min(args.jobs if args.jobs is not None else cpus, 2) >= 2
    epochs = f"{base.train.epochs} epoch{'s' if base.train.epochs != 1 else ''}"
    print(f"demo: {base.data.train_rooms} training + {base.data.val_rooms} validation rooms of "
          f"{base.data.room_points:,} points, {base.model.name}, {epochs} per model, "
          f"{'both models side by side' if parallel else 'one model after the other'} -> {out}")
    t0 = time.perf_counter()
    train_source, val_source = build_source(base, "train"), build_source(base, "val")
    for source in (train_source, val_source):  # generate once, outside the runs' timings
        if isinstance(source, CachedSource):
            source.preload(workers=max(1, min(4, cpus)))
    print(f"generated rooms in {time.perf_counter() - t0:.1f} s")
    variants = (("1% labels", "ratio:0.01", "weak_1pct"), ("full labels", None, "full"))
    jobs = [(demo_config(args, protocol), out / name) for _, protocol, name in variants]
    for _, run in jobs:  # a demo starts afresh: an earlier demo's log would join this one's curves
        (run / "log.jsonl").unlink(missing_ok=True)
    if parallel:
        results = train_side_by_side(jobs, train_source, val_source, threads=max(1, cpus // 2))
    else:
        results = [train_model(cfg, train_source, val_source, run, threads=torch.get_num_threads())
                   for cfg, run in jobs]
    rows = [(f"{cfg.method.name} ({label})", r["labelled"], r["metrics"]["miou"], r["metrics"]["oa"], r["seconds"])
            for (label, _, _), (cfg, _), r in zip(variants, jobs, results)]
    for (label, _, _), r in zip(variants, results):
        print(f"\n{label}:\n{format_table(r['metrics'])}")
    total_points = base.data.train_rooms * base.data.room_points
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'method':<{width}}{'labels used':>22}{'mIoU':>8}{'OA':>8}{'time':>9}"]
    for label, labelled, miou, oa, seconds in rows:
        lines.append(f"{label:<{width}}{labelled:>12,} ({labelled / total_points:6.2%}){miou * 100:>8.1f}"
                     f"{oa * 100:>8.1f}{seconds:>8.0f}s")
    ratio = rows[0][2] / rows[1][2] if rows[1][2] else float("nan")
    lines.append(f"1% labels reach {ratio:.0%} of the fully supervised mIoU; total {time.perf_counter() - t0:.0f} s")
    table = "\n".join(lines)
    print(table)
    (out / "summary.txt").write_text(table + "\n", encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(
        [{"method": r[0], "labels_used": r[1], "miou": r[2], "oa": r[3], "time_s": r[4]} for r in rows]
        + [{"ratio_of_full_miou": ratio}], indent=1), encoding="utf-8")
    print(f"pictures: {out}/*_val_room.png, {out}/*/curves.png, {out}/*/confusion.png")
    return 0
