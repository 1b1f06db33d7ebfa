"""`pcseg viz INPUT [--pred FILE] [--protocol FILE] [--png OUT] [--dataset NAME]`: open the
viewer on a scene, or render its panels headless to a PNG."""
from __future__ import annotations

import argparse
import sys
import time

from pcseg.viz.colors import dataset_palette
from pcseg.viz.inputs import attach_protocol, load_input, load_prediction

# Class colours when neither --dataset nor the scene's store names a dataset.
DEFAULT_DATASET = "synthetic_rooms"


def main(args: argparse.Namespace) -> int:
    try:
        scene, dataset = load_input(args.input, args.dataset)
        palette, class_names = dataset_palette(args.dataset or dataset or DEFAULT_DATASET)
        pred = None if args.pred is None else load_prediction(args.pred, len(scene["coord"]))
        if args.protocol is not None:
            scene = attach_protocol(scene, args.protocol)
    except (ValueError, KeyError, FileNotFoundError) as err:
        print(f"pcseg viz: {err}", file=sys.stderr)
        return 2
    try:
        if args.png:
            from pcseg.viz.panels import render_panels

            start = time.perf_counter()
            backend = render_panels(scene, pred, palette=palette, class_names=class_names, out_png=args.png)
            print(f"wrote {args.png} ({len(scene['coord'])} points, {backend}, "
                  f"{time.perf_counter() - start:.1f} s)")
        else:
            from pcseg.viz.viewer import show

            show(scene, palette, class_names, pred, title=f"pcseg viz {args.input}")
    except (ImportError, RuntimeError) as err:  # Open3D missing (with install hint), no display
        print(f"pcseg viz: {err}", file=sys.stderr)
        return 2
    except ValueError as err:  # e.g. labels outside the dataset's classes
        print(f"pcseg viz: {err} (choose the classes with --dataset)", file=sys.stderr)
        return 2
    return 0
