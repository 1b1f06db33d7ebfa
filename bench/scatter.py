"""Time pcseg.scatter against torch-scatter (when installed) on one large problem.

    python bench/scatter.py                       # 1M x 64 float32 into 50k groups, CPU
    python bench/scatter.py --points 200000 --device cuda --repeats 20
    python bench/scatter.py --threads 1           # steadier on a busy shared machine

Prints one row per op: median forward and forward+backward milliseconds for pcseg and for
torch-scatter, and pcseg / torch-scatter ratios (> 1 means pcseg is slower).
"""
from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from typing import Callable

import torch

from pcseg import scatter as ours

Op = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def _first(result: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
    return result[0] if isinstance(result, tuple) else result


def _ops(groups: int) -> dict[str, tuple[Op, Op | None]]:
    """name -> (pcseg op, torch-scatter op or None), each called as op(src, index, ptr)."""
    ts = None
    if importlib.util.find_spec("torch_scatter") is not None:
        import torch_scatter as ts
    table: dict[str, tuple[Op, Op | None]] = {
        "scatter_sum": (
            lambda s, i, p: ours.scatter_sum(s, i, 0, groups),
            ts and (lambda s, i, p: ts.scatter_sum(s, i, 0, dim_size=groups)),
        ),
        "scatter_mean": (
            lambda s, i, p: ours.scatter_mean(s, i, 0, groups),
            ts and (lambda s, i, p: ts.scatter_mean(s, i, 0, dim_size=groups)),
        ),
        "scatter_max": (
            lambda s, i, p: ours.scatter_max(s, i, 0, groups)[0],
            ts and (lambda s, i, p: ts.scatter_max(s, i, 0, dim_size=groups)[0]),
        ),
        "scatter_min": (
            lambda s, i, p: ours.scatter_min(s, i, 0, groups)[0],
            ts and (lambda s, i, p: ts.scatter_min(s, i, 0, dim_size=groups)[0]),
        ),
        "scatter_std": (
            lambda s, i, p: ours.scatter_std(s, i, 0, groups),
            ts and (lambda s, i, p: ts.scatter_std(s, i, 0, dim_size=groups)),
        ),
        "scatter_softmax": (
            lambda s, i, p: ours.scatter_softmax(s, i, 0, groups),
            ts and (lambda s, i, p: ts.composite.scatter_softmax(s, i, 0, dim_size=groups)),
        ),
        "scatter_log_softmax": (
            lambda s, i, p: ours.scatter_log_softmax(s, i, 0, groups),
            ts and (lambda s, i, p: ts.composite.scatter_log_softmax(s, i, 0, dim_size=groups)),
        ),
        "segment_sum_csr": (
            lambda s, i, p: ours.segment_sum_csr(s, p),
            ts and (lambda s, i, p: ts.segment_csr(s, p, reduce="sum")),
        ),
        "segment_max_csr": (
            lambda s, i, p: ours.segment_max_csr(s, p)[0],
            ts and (lambda s, i, p: ts.segment_csr(s, p, reduce="max")[0]),
        ),
    }
    return table


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up: allocator, lazy CUDA init
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _forward_backward(op: Op, src: torch.Tensor, index: torch.Tensor, ptr: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        leaf = src.detach().requires_grad_()
        _first(op(leaf, index, ptr)).sum().backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="rows of src")
    parser.add_argument("--channels", type=int, default=64, help="columns of src")
    parser.add_argument("--groups", type=int, default=50_000, help="number of groups / segments")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per op (median reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(args.seed)
    src = torch.randn(args.points, args.channels, generator=gen).to(device)
    # Sorted ids so the same groups serve the scatter (index) and segment (ptr) ops.
    index = torch.randint(0, args.groups, (args.points,), generator=gen).sort().values.to(device)
    ptr = torch.zeros(args.groups + 1, dtype=torch.int64, device=device)
    ptr[1:] = torch.bincount(index, minlength=args.groups).cumsum(0)

    print(
        f"src {args.points:,} x {args.channels} float32 -> {args.groups:,} groups on {device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads), median of {args.repeats}"
    )
    ops = _ops(args.groups)
    peer_installed = any(theirs is not None for _, theirs in ops.values())
    header = f"{'op':<20} {'pcseg fwd':>10} {'peer fwd':>10} {'ratio':>6}"
    header += f" {'pcseg f+b':>10} {'peer f+b':>10} {'ratio':>6}"
    print(header + "   (ms; peer = torch-scatter" + ("" if peer_installed else ": not installed") + ")")
    print("-" * len(header))
    for name, (mine, theirs) in ops.items():
        row = [_median_ms(lambda: mine(src, index, ptr), args.repeats, device)]
        row.append(_median_ms(lambda: theirs(src, index, ptr), args.repeats, device) if theirs else None)
        row.append(_median_ms(_forward_backward(mine, src, index, ptr), args.repeats, device))
        row.append(_median_ms(_forward_backward(theirs, src, index, ptr), args.repeats, device) if theirs else None)

        def cell(value: float | None) -> str:
            return f"{value:10.1f}" if value is not None else f"{'n/a':>10}"

        def ratio(a: float, b: float | None) -> str:
            return f"{a / b:6.2f}" if b else f"{'-':>6}"

        print(
            f"{name:<20} {cell(row[0])} {cell(row[1])} {ratio(row[0], row[1])} "
            f"{cell(row[2])} {cell(row[3])} {ratio(row[2], row[3])}"
        )


if __name__ == "__main__":
    main()
