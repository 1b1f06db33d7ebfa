"""`pcseg rounds CONFIG [key=value ...] [--rounds N] [--teacher RUN] [--out DIR]`: offline
self-training rounds (`pcseg/engine/rounds.py`) in one process."""
from __future__ import annotations

import argparse
import sys

from pcseg.config import ConfigError, load_config
from pcseg.engine import distributed as dist
from pcseg.engine.rounds import RoundSetupError, format_rounds, load_teacher, run_rounds
from pcseg.engine.train_cli import run_dir_of


def main(args: argparse.Namespace) -> int:
    if dist.launched_by_torchrun():
        print("pcseg rounds: runs in one process (its pseudo-labelling pass is not sharded); "
              "start it without torchrun", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"pcseg rounds: {err}", file=sys.stderr)
        return 2
    rounds = cfg.method.self_training.rounds if args.rounds is None else args.rounds
    if rounds < 1:
        key = "method.self_training.rounds" if args.rounds is None else "--rounds"
        print(f"pcseg rounds: {key} must be >= 1, got {rounds}", file=sys.stderr)
        return 2
    run_dir = run_dir_of(cfg, args.out)
    taken = sorted(p.parent.name for p in run_dir.glob("round*/last.pt")) if run_dir.is_dir() else []
    if taken or (run_dir / "rounds.json").is_file():
        print(f"pcseg rounds: {run_dir} already holds rounds ({', '.join(taken) or 'rounds.json'}); "
              "pass --out for a new folder", file=sys.stderr)
        return 2
    device = dist.resolve_device(cfg.train.device)
    try:
        teacher = None if args.teacher is None else load_teacher(args.teacher, cfg, device)
    except (ValueError, FileNotFoundError) as err:
        print(f"pcseg rounds: {err}", file=sys.stderr)
        return 2
    try:
        summary = run_rounds(cfg, run_dir, device, rounds, teacher)
    except RoundSetupError as err:  # errors while training are not caught: their traceback is kept
        print(f"pcseg rounds: {err}", file=sys.stderr)
        return 2
    print(format_rounds(summary))
    print(f"rounds folder: {run_dir} (rounds.json, round<r>/)")
    return 0
