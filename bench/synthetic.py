"""Speed of the synthetic room generator, and how far colour alone gets on its rooms.

    python bench/synthetic.py                       # 100 rooms x 60k points, one 300k room
    python bench/synthetic.py --rooms 20 --points 20000 --baseline

Prints rooms/s and points/s (wall clock, and CPU time of this process, which is the fairer
figure on a shared machine), the time of one large room split into layout / scan / shading,
and with --baseline the mIoU of colour-only classifiers (nearest class-mean colour, and
k-nearest-neighbours in RGB when scikit-learn is installed) trained on half the rooms.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from pcseg.data.meta import load_dataset_meta
from pcseg.data.synthetic import SyntheticRoomSource, generate_room, room_layout
from pcseg.data.synthetic._sampling import scan


def _miou(target: np.ndarray, pred: np.ndarray, k: int) -> float:
    cm = np.bincount(target * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def _colour_baselines(rooms: list[dict], num_classes: int) -> dict[str, float]:
    half = len(rooms) // 2
    color = np.concatenate([r["color"] for r in rooms[:half]])
    label = np.concatenate([r["label"] for r in rooms[:half]])
    test_color = np.concatenate([r["color"] for r in rooms[half:]])
    test_label = np.concatenate([r["label"] for r in rooms[half:]])
    centroids = np.stack([color[label == k].mean(0) for k in range(num_classes)])
    nearest = np.argmin(((test_color[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    out = {"nearest class-mean colour": _miou(test_label, nearest, num_classes)}
    try:
        from sklearn.neighbors import KNeighborsClassifier
    except ImportError:
        return out
    rng = np.random.default_rng(0)
    fit = rng.choice(len(color), min(len(color), 200_000), replace=False)
    knn = KNeighborsClassifier(n_neighbors=25).fit(color[fit], label[fit])
    out["25-NN in RGB"] = _miou(test_label, knn.predict(test_color), num_classes)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--points", type=int, default=60000)
    parser.add_argument("--big", type=int, default=300000, help="points of the single large room (0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also score colour-only classifiers")
    args = parser.parse_args()

    source = SyntheticRoomSource(args.rooms, args.seed, args.points)
    start, cpu_start = time.perf_counter(), time.process_time()
    rooms = [source.load(name) for name in source.names()]
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    for what, seconds in (("wall", elapsed), ("cpu", cpu)):
        print(f"{args.rooms} rooms x {args.points} points ({what}): {seconds:.2f} s  "
              f"{args.rooms / seconds:.2f} rooms/s  {args.rooms * args.points / seconds / 1e6:.2f} M points/s")

    if args.big:
        start, cpu_start = time.perf_counter(), time.process_time()
        generate_room(args.seed, args.big)
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        # the same room again, stage by stage (shading is the small rest)
        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        layout = room_layout(rng)
        t1 = time.perf_counter()
        scan(layout, args.big, rng)
        t2 = time.perf_counter()
        print(f"one room x {args.big} points: {total:.2f} s wall, {cpu:.2f} s cpu "
              f"(layout {t1 - t0:.3f} s, scan {t2 - t1:.2f} s; {len(layout.boxes)} boxes, "
              f"{len(layout.scanners)} scanner positions)")

    if args.baseline:
        meta = load_dataset_meta("synthetic_rooms")
        for name, miou in _colour_baselines(rooms, meta.num_classes).items():
            print(f"colour-only {name}: mIoU {100 * miou:.1f}% (train {len(rooms) // 2} rooms, test {len(rooms) - len(rooms) // 2})")


if __name__ == "__main__":
    main()
