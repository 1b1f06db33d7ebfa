"""The `pcseg` command. Each subcommand's arguments are declared here; its work is done by
a `main(args) -> int` function in the module named in `HANDLERS`, imported only when run."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Optional

from pcseg import __version__

# subcommand -> "module:function" doing its work.
HANDLERS: dict[str, str] = {
    "demo": "pcseg.engine.demo:main",
    "train": "pcseg.engine.train_cli:main",
    "rounds": "pcseg.engine.rounds_cli:main",
    "eval": "pcseg.engine.eval_cli:main",
    "predict": "pcseg.engine.predict_cli:main",
    "prepare": "pcseg.data.prepare:main",
    "weak-labels": "pcseg.data.protocol_cli:main",
    "viz": "pcseg.viz.cli:main",
    "report": "pcseg.viz.report:main",
    "grid": "pcseg.engine.grid:main",
    "bench": "pcseg.bench_cli:main",
}


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train on 1%% labels of synthetic rooms vs full labels, evaluate, render",
                       description="The main job on the embedded default dataset (synthetic rooms, generated on the fly).")
    p.add_argument("--rooms", type=int, default=None, help="training rooms to generate")
    p.add_argument("--val-rooms", type=int, default=None, help="validation rooms to generate")
    p.add_argument("--epochs", type=int, default=None, help="training epochs per model")
    p.add_argument("--points", type=int, default=None, help="points per room")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=None,
                   help="2: train the two models side by side (default with 2+ cores), 1: one after the other")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("overrides", nargs="*", help="dotted overrides of the synthetic_demo recipe, e.g. optim.lr=0.05")


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train from a config recipe",
                       description="Train from a recipe: `pcseg train configs/x.yaml train.epochs=3 model.name=minkunet18a`.")
    p.add_argument("config", help="recipe YAML path, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides key=value")
    p.add_argument("--resume", action="store_true", help="continue the run in the output folder from last.pt")
    p.add_argument("--out", default=None, help="run folder (default: <out_dir>/<name>)")


def _add_rounds(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rounds", help="offline self-training: train, pseudo-label the training scenes, retrain",
                       description="Round 0 trains the recipe's method (or takes --teacher); each further round "
                                   "pseudo-labels the training scenes with the previous network (method.pseudo: "
                                   "DARS or a threshold) and trains a fresh one on weak + pseudo labels.")
    p.add_argument("config", help="recipe YAML path, or the name of a shipped recipe")
    p.add_argument("overrides", nargs="*", help="dotted overrides key=value")
    p.add_argument("--rounds", type=int, default=None,
                   help="pseudo-label rounds after round 0 (default: method.self_training.rounds)")
    p.add_argument("--teacher", default=None,
                   help="a trained run folder or checkpoint that stands in for round 0 (same classes)")
    p.add_argument("--out", default=None, help="folder of the rounds (default: <out_dir>/<name>)")


def _add_eval(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a run or checkpoint on full-resolution points")
    p.add_argument("checkpoint", help="run folder (uses best.pt) or checkpoint file")
    p.add_argument("--data", default=None,
                   help="HDF5 store (default: the run's validation data); image runs: the dataset folder")
    p.add_argument("--split", default=None, help="split of the store to evaluate")
    p.add_argument("--votes", type=int, default=1, help="test-time votes over rotations/flips")
    p.add_argument("--out", default=None, help="folder for metrics.json, confusion.csv, confusion.png")
    p.add_argument("--device", default="auto")


def _add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="label files (PLY/NPY/LAS/TXT, or images) with a trained checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("inputs", nargs="+", help="scene files any reader accepts (image runs: image files)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", default=None,
                   help="comma list of ply, npy, scannet (default ply,npy); image runs: png, overlay, npy "
                        "(default png,overlay)")
    p.add_argument("--votes", type=int, default=1, help="test-time votes (images: 1, or 2 with the mirrored image)")
    p.add_argument("--device", default="auto")


def _add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="convert a raw dataset or scan files to one HDF5 store")
    p.add_argument("kind", choices=["s3dis", "scannet", "files"])
    p.add_argument("raw", help="raw dataset root (or a folder/glob of files for `files`)")
    p.add_argument("out", help="output .h5 store")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--classes", default=None, help="class YAML for `files`")
    p.add_argument("--split", default=None, help="only this split (ScanNet: train/val/test)")


def _add_weak_labels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weak-labels", help="make, show or import weak-label protocol files")
    wsub = p.add_subparsers(dest="action", required=True)
    m = wsub.add_parser("make", help="sample labelled points under a protocol")
    m.add_argument("data", help="HDF5 store, 'synthetic[:<rooms>:<seed>[:<points>]]' for the demo rooms, or an "
                                "image recipe (its training images)")
    m.add_argument("protocol", help="ratio:0.01 | ratio:0.001 | count:20 | per-class:1 | clicks:1; images also "
                                    "images:1/16 (labelled-image fraction) and tags")
    m.add_argument("overrides", nargs="*", help="image recipes: dotted overrides, e.g. data.images.root=/data/VOC2012")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--split", default="train")
    m.add_argument("--out", required=True, help="protocol file to write")
    s = wsub.add_parser("show", help="print labelled points per class of a protocol file")
    s.add_argument("file")
    s.add_argument("--dataset", default=None, help="dataset whose class names to print (default: the file's)")
    s.add_argument("--limit", type=int, default=20, help="scenes listed one per line")
    i = wsub.add_parser("import", help="import ScanNet's official data-efficient files")
    i.add_argument("source", help="points20..200 file (torch-saved dict scene -> indices) or scenes/N.txt")
    i.add_argument("data", help="the HDF5 store the indices refer to")
    i.add_argument("--split", default="train")
    i.add_argument("--out", required=True)


def _add_viz(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("viz", help="view a scene (Open3D window) or render it headless to PNG")
    p.add_argument("input", help="scene file, or store.h5:scene")
    p.add_argument("--pred", default=None, help="predictions (.npy labels)")
    p.add_argument("--protocol", default=None, help="protocol file: enlarge the labelled points")
    p.add_argument("--png", default=None, help="render headless to this PNG instead of opening a window")
    p.add_argument("--dataset", default=None, help="dataset whose class colours to use")


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="plots over runs (label-efficiency curve)")
    rsub = p.add_subparsers(dest="action", required=True)
    c = rsub.add_parser("curve", help="mIoU (mean ± std over seeds) against label ratio, one line per method")
    c.add_argument("runs", nargs="+", help="run folders")
    c.add_argument("--out", default="curve.png")


def _add_grid(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grid", help="train every (setting, protocol, seed) of a results grid, then tabulate",
                       description="Run a results grid (configs/grids/*.yaml): one `pcseg train` per setting x "
                                   "protocol x seed, resumable, then results.md / results.json / results.png.")
    p.add_argument("grid", help="grid YAML path, or the name of a shipped grid (configs/grids/)")
    p.add_argument("--out", required=True, help="folder of the grid's run folders and summary")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at the same time")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--seeds", default=None, help="comma list of seeds instead of the grid's")
    p.add_argument("--only", default=None, help="comma list of setting names to run")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their commands, train nothing")
    p.add_argument("--summary-only", action="store_true", help="tabulate the finished runs, train nothing")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run a benchmark script from bench/ (source checkout)")
    p.add_argument("name", help="benchmark name, e.g. scatter or sparse_conv")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pcseg", description="Semantic segmentation from weak labels.")
    parser.add_argument("--version", action="version", version=f"pcseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_demo, _add_train, _add_rounds, _add_eval, _add_predict, _add_prepare, _add_weak_labels,
                _add_viz, _add_report, _add_grid, _add_bench):
        add(sub)
    return parser


def _handler(command: str) -> Callable[[argparse.Namespace], int]:
    module, _, func = HANDLERS[command].partition(":")
    return getattr(importlib.import_module(module), func)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(_handler(args.command)(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
