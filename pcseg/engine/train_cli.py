"""`pcseg train CONFIG [key=value ...] [--resume] [--out DIR]` (also under torchrun)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from omegaconf import DictConfig

from pcseg.config import ConfigError, apply_overrides, config_from_dict, load_config
from pcseg.engine import distributed as dist
from pcseg.engine.build import build_setup
from pcseg.engine.checkpoint import load_checkpoint
from pcseg.engine.trainer import Trainer


def run_dir_of(cfg: DictConfig, out: str | None) -> Path:
    return Path(out) if out else Path(cfg.out_dir) / cfg.name


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as err:
        print(f"pcseg train: {err}", file=sys.stderr)
        return 2
    run_dir = run_dir_of(cfg, args.out)
    last = run_dir / "last.pt"
    if args.resume:
        if not last.is_file():
            print(f"pcseg train: --resume needs {last}, which does not exist", file=sys.stderr)
            return 2
        # a resumed run keeps the recipe it was started with; overrides (e.g. more epochs) apply on top
        cfg = apply_overrides(config_from_dict(load_checkpoint(last)["config"]), list(args.overrides))
    elif last.is_file():
        print(f"pcseg train: {run_dir} already holds a run (last.pt); pass --resume to continue it, "
              "or --out for a new folder", file=sys.stderr)
        return 2
    device = dist.resolve_device(cfg.train.device)
    dist.init_distributed(device)
    main_process = dist.is_main()
    finished = False
    try:
        try:
            trainer = Trainer(build_setup(cfg), run_dir, device)
        except (ConfigError, ValueError, FileNotFoundError) as err:
            print(f"pcseg train: {err}", file=sys.stderr)
            return 2
        if args.resume:
            trainer.resume(last)
        trainer.fit()
        del trainer  # its DDP wrapper holds the process group, which shutdown releases
        finished = True
    finally:
        dist.shutdown_distributed(clean=finished)
    if main_process:
        print(f"run folder: {run_dir}")
    return 0

