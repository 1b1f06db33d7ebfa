"""`pcseg eval RUN_OR_CHECKPOINT [--data STORE] [--split S] [--votes K] [--out DIR]`.

Evaluates on every original point (also under torchrun: disjoint shares, one summed
matrix) and writes `metrics.json`, `confusion.csv` and `confusion.png`. Image runs evaluate
every pixel of the validation images (`--data ROOT` another copy of the dataset folder,
`--votes 2` adds the mirrored image)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pcseg.engine import distributed as dist
from pcseg.engine.build import build_source, is_images, load_trained, scene_inference
from pcseg.engine.checkpoint import resolve_checkpoint
from pcseg.engine.evaluate import evaluate_source
from pcseg.engine.trainer import make_logits_fn
from pcseg.metrics import compute_metrics, format_table


def write_confusion_csv(matrix: np.ndarray, class_names: list[str], path: Path) -> None:
    """Rows = ground truth, columns = prediction, first row/column the class names."""
    lines = ["gt\\pred," + ",".join(class_names)]
    lines += [f"{name}," + ",".join(str(int(v)) for v in row) for name, row in zip(class_names, matrix)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(args: argparse.Namespace) -> int:
    try:
        ckpt = resolve_checkpoint(args.checkpoint)
    except FileNotFoundError as err:
        print(f"pcseg eval: {err}", file=sys.stderr)
        return 2
    if args.votes < 1:
        print(f"pcseg eval: --votes must be >= 1, got {args.votes}", file=sys.stderr)
        return 2
    device = dist.resolve_device(args.device)
    dist.init_distributed(device)
    main_process = dist.is_main()
    finished = False
    try:
        model, cfg, meta = load_trained(ckpt, device)
        if args.data is not None and not is_images(cfg):
            from pcseg.data.store import SceneStore
            source = SceneStore(args.data, split=args.split)
        else:
            if args.data is not None:  # images: another copy of the dataset folder
                cfg.data.images.root = args.data
            if args.split is not None:
                cfg.data.val_split = args.split
            source = build_source(cfg, "val")
        to_batch, predictor = scene_inference(cfg)
        fn = make_logits_fn(lambda batch: model(batch)["logits"], to_batch, device)
        matrix = evaluate_source(fn, source, meta.num_classes, votes=args.votes, max_points=cfg.train.eval_max_points,
                                 progress=main_process, predict=predictor).matrix.cpu().numpy()
        finished = True
    finally:
        dist.shutdown_distributed(clean=finished)
    if not main_process:
        return 0
    names = list(meta.class_names)
    metrics = compute_metrics(matrix, names)
    split = args.split or ("all" if args.data else cfg.data.val_split)
    out = Path(args.out) if args.out else ckpt.parent / f"eval_{split}_votes{args.votes}"
    out.mkdir(parents=True, exist_ok=True)
    record = {**metrics, "checkpoint": str(ckpt), "data": args.data or cfg.data.source, "split": split,
              "votes": args.votes, "confusion": matrix.tolist()}
    (out / "metrics.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    write_confusion_csv(matrix, names, out / "confusion.csv")
    from pcseg.viz.plots import plot_confusion
    plot_confusion(matrix, names, out / "confusion.png")
    print(format_table(metrics))
    print(f"written: {out}/metrics.json, confusion.csv, confusion.png")
    return 0
