"""`pcseg demo`: 1% labels against full labels on synthetic rooms, on one CPU budget.

Generates training and validation rooms once, trains the recipe `synthetic_demo` twice
with the same budget (protocol ratio:0.01, then every label), evaluates both on the
full-resolution validation rooms, renders a validation room with both predictions, and
ends with a table: method, labels used, mIoU, OA, time.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pcseg.config import ConfigError, apply_overrides, load_config
from pcseg.data.meta import load_dataset_meta
from pcseg.engine.build import CachedSource, build_setup, build_source, scene_batcher
from pcseg.engine.inference import predict_scene
from pcseg.engine.trainer import Trainer, make_logits_fn

RECIPE = "synthetic_demo"


def demo_config(args: argparse.Namespace, protocol: str | None):
    overrides = [f"train.seed={args.seed}", f"data.synthetic_seed={args.seed}"]
    for key, value in (("data.train_rooms", args.rooms), ("data.val_rooms", args.val_rooms),
                       ("train.epochs", args.epochs), ("data.room_points", args.points)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(RECIPE, overrides + list(args.overrides))
    if protocol is None:
        # the reference: every label, plain cross-entropy (nothing to propagate or pseudo-label)
        return apply_overrides(cfg, ["data.protocol=null", "method.name=supervised"])
    return apply_overrides(cfg, [f"data.protocol={protocol}"])


def render(run: Path, trainer: Trainer, scene: dict, out_png: Path, dataset: str) -> None:
    """Panels of one validation room (RGB, ground truth, prediction, errors, labelled points)."""
    from pcseg.viz.panels import render_panels
    meta = load_dataset_meta(dataset)
    trainer.method.eval()
    fn = make_logits_fn(trainer.method.predict, scene_batcher(trainer.cfg.data.features), trainer.device)
    pred = predict_scene(fn, scene).argmax(axis=1)
    render_panels(scene, pred, palette=meta.colors, class_names=meta.class_names, out_png=out_png)


def main(args: argparse.Namespace) -> int:
    try:
        base = demo_config(args, None)
    except ConfigError as err:
        print(f"pcseg demo: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"demo: {base.data.train_rooms} training + {base.data.val_rooms} validation rooms of "
          f"{base.data.room_points:,} points, {base.model.name}, {base.train.epochs} epochs per model -> {out}")
    t0 = time.perf_counter()
    train_source, val_source = build_source(base, "train"), build_source(base, "val")
    if isinstance(train_source, CachedSource):  # generate once, outside the runs' timings
        train_source.preload(workers=max(1, min(4, os.cpu_count() or 1)))
    val_scene = val_source.load(val_source.names()[0])
    print(f"generated rooms in {time.perf_counter() - t0:.1f} s")
    rows = []
    for label, protocol in (("1% labels", "ratio:0.01"), ("full labels", None)):
        cfg = demo_config(args, protocol)
        run = out / ("weak_1pct" if protocol else "full")
        start = time.perf_counter()
        trainer = Trainer(build_setup(cfg, train_source, val_source), run, torch.device("cpu"))
        metrics = trainer.fit()
        seconds = time.perf_counter() - start
        labelled = int(np.sum(trainer.setup.class_counts))
        rows.append((f"{cfg.method.name} ({label})", labelled, metrics["miou"], metrics["oa"], seconds))
        render(run, trainer, val_scene, out / f"{run.name}_val_room.png", cfg.data.dataset)
        from pcseg.viz.plots import plot_confusion, plot_training_curves
        plot_training_curves(run / "log.jsonl", run / "curves.png")
        plot_confusion(np.array(metrics["confusion"]), trainer.setup.class_names, run / "confusion.png")
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
