"""`pcseg bench NAME [ARGS]`: run `bench/NAME.py` of a source checkout.

The benchmarks compare pcseg with peer libraries side by side; they live in the repository
(not in the wheel) next to their README, so this looks for `bench/` beside the package and
in the working directory.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import pcseg


def bench_dirs() -> list[Path]:
    candidates = [Path(pcseg.__file__).resolve().parents[1] / "bench", Path.cwd() / "bench"]
    return [d for d in dict.fromkeys(candidates) if d.is_dir()]


def main(args: argparse.Namespace) -> int:
    dirs = bench_dirs()
    if not dirs:
        print("pcseg bench: no bench/ folder found; benchmarks ship with the source checkout "
              "(run from the repository root).", file=sys.stderr)
        return 2
    for folder in dirs:
        script = folder / f"{args.name}.py"
        if script.is_file():
            sys.argv = [str(script), *args.bench_args]
            runpy.run_path(str(script), run_name="__main__")
            return 0
    names = sorted({p.stem for d in dirs for p in d.glob("*.py") if not p.stem.startswith("_")})
    print(f"pcseg bench: unknown benchmark {args.name!r}; available: {', '.join(names) or 'none'}", file=sys.stderr)
    return 2
