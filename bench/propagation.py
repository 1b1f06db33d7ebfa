"""Label propagation side by side: `radius` against `segments` (`method.propagation.mode`).

For weak labels of a protocol, each propagator's pseudo labels are scored against the hidden
dense labels: coverage (share of the annotated points that get a pseudo label), accuracy
(share of those that are right), correct pseudo labels per weak label, and the median time
per scene. Scenes: synthetic rooms (`--rooms` x `--points`, normals given, and the same
rooms with normals estimated), and ScanNet scene0000_00 from `../shared/data` when present.

    .venv/bin/python bench/propagation.py
    .venv/bin/python bench/propagation.py --rooms 10 --points 20000 --protocol ratio:0.01
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

from pcseg.data.propagated import Propagator, radius_propagator, segment_propagator, weak_labels_of
from pcseg.data.readers.scannet import load_scannet_npy
from pcseg.data.synthetic import SyntheticRoomSource
from pcseg.weak.protocol import iter_source, make_protocol

SHARED = Path(os.environ.get("PCSEG_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def score(propagate: Propagator, scenes: list[tuple[str, dict]], protocol) -> dict[str, float]:
    covered = correct = annotated = weak = 0
    seconds = []
    for name, scene in scenes:
        labels = weak_labels_of(protocol, name, len(scene["coord"]))
        start = time.perf_counter()
        pseudo = propagate(scene, labels)
        seconds.append(time.perf_counter() - start)
        truth = np.asarray(scene["label"])
        hit = (pseudo >= 0) & (truth >= 0)
        covered += int(hit.sum())
        correct += int((pseudo[hit] == truth[hit]).sum())
        annotated += int((truth >= 0).sum())
        weak += int((labels >= 0).sum())
    return {"coverage": covered / annotated, "accuracy": correct / max(covered, 1),
            "per_weak": correct / max(weak, 1), "seconds": statistics.median(seconds)}


def propagators() -> dict[str, Propagator]:
    return {
        "radius 0.2 m": radius_propagator(0.2, 1.0),
        "radius 0.3 m": radius_propagator(0.3, 1.0),
        "radius 0.5 m": radius_propagator(0.5, 1.0),
        "segments (defaults)": segment_propagator(8, 0.2, 0.1, 0.8),
        "segments, 0.1 m edges": segment_propagator(8, 0.1, 0.1, 0.8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--protocol", default="ratio:0.01")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rooms = list(iter_source(SyntheticRoomSource(args.rooms, seed=0, num_points=args.points)))
    datasets = {f"synthetic {args.rooms} x {args.points}": rooms,
                "synthetic, normals estimated": [(n, {k: v for k, v in s.items() if k != "normal"}) for n, s in rooms]}
    if (SHARED / "scannet" / "scene0000_00_vert_all.npy").is_file():
        datasets["ScanNet scene0000_00"] = [("scene0000_00", load_scannet_npy(SHARED / "scannet", "scene0000_00"))]
    print(f"protocol {args.protocol}, seed {args.seed}; coverage / accuracy against the dense labels")
    print(f"| scenes | propagator | coverage | accuracy | right per weak label | s / scene (median) |")
    print("|---|---|---:|---:|---:|---:|")
    for title, scenes in datasets.items():
        protocol = make_protocol(args.protocol, scenes, seed=args.seed, source=title)
        results = {name: score(p, scenes, protocol) for name, p in propagators().items()}
        base = results["radius 0.3 m"]
        for name, r in results.items():
            print(f"| {title} | {name} | {100 * r['coverage']:.1f}% | {100 * r['accuracy']:.1f}% | "
                  f"{r['per_weak']:.1f} ({r['per_weak'] / max(base['per_weak'], 1e-9):.2f}x of radius 0.3) | "
                  f"{r['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
