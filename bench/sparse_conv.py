"""Sparse convolution side by side: pcseg (torch twin, native) vs MinkowskiEngine vs spconv.

    python bench/sparse_conv.py                           # scene0000_00 @ 2 cm + 1M-point room
    python bench/sparse_conv.py --channels 64 128 --repeats 9 --no-synthetic
    python bench/sparse_conv.py --json results.json       # also write every number as JSON

Per scene it times, in one process and on the same voxels: kernel-map construction; a
bias-free submanifold 3^3 conv forward and backward at each channel width; strided down
(k=2, s=2) and transposed up convs; GFLOP/s against a dense `torch.mm` of the same FLOPs
(pairs x C_in x C_out x 2, twice that for backward); peak extra resident memory of one
forward+backward; and MinkUNet34C forward+backward time and peak memory (pcseg's model;
spconv's in bench/spconv_minkunet.py). Peers run only where they import ("not installed"
otherwise); bench/README.md has their install recipes.

Times are medians of `--repeats` rounds after one warm-up, through each library's autograd
(what a network sees); each round runs every library once in turn, so load changes on a shared
machine hit all of them alike. Compare ratios from one run.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import torch

from pcseg.sparse import native
from pcseg.sparse.conv_function import ENV_VAR, sparse_conv
from pcseg.sparse.manager import CoordinateManager
from pcseg.sparse.quantize import quantize

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("torch", "native", "ME", "spconv")


def _optional(name: str) -> ModuleType | None:
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # a broken peer install is "not installed" for this benchmark
        return None


def _spconv() -> ModuleType | None:
    spconv = _optional("spconv.pytorch")
    if spconv is not None and not torch.cuda.is_available():
        # spconv 2.3.8's CPU backward asks torch.cuda for a stream and dies on CPU-only torch;
        # stream 0 is what its CPU kernels ignore anyway (bench/README.md, "spconv").
        for module in ("ops", "hash"):
            sys.modules[f"spconv.pytorch.{module}"].get_current_stream = lambda: 0
    return spconv


ME = _optional("MinkowskiEngine")
SPCONV = _spconv()


# ---------------------------------------------------------------- measuring
def interleaved_ms(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each call over `repeats` rounds, after one warm-up each.

    Every round runs each call once in turn, so a change in the machine's load during the
    measurement hits all of them alike and their ratios stay meaningful."""
    for fn in calls.values():
        fn()  # warm-up: caches, allocator, lazy builds
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return interleaved_ms({"": fn}, repeats)[""]


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def peak_extra_mib(fn: Callable[[], object]) -> float | None:
    """Peak resident memory above the starting point while `fn` runs (MiB), None if unsupported.

    Freed heap is first handed back to the OS (malloc_trim), then the kernel's high-water mark
    is reset (clear_refs 5), so the peak counts only what `fn` itself touches.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        start = _rss_kib("VmRSS")
        fn()
        return (_rss_kib("VmHWM") - start) / 1024
    except OSError:
        return None


def _load() -> str:
    """The machine's load averages: timings of a shared machine are only comparable within one run."""
    return "loadavg " + " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---------------------------------------------------------------- data
def scannet_coords(path: Path, voxel: float) -> torch.Tensor:
    """int32 [M, 4] (batch 0, x, y, z) voxels of a ScanNet `*_vert_all.npy` (x, y, z, r, g, b)."""
    points = np.load(path)
    coords, _, _, _ = quantize(torch.from_numpy(np.ascontiguousarray(points[:, :3], dtype=np.float32)), voxel)
    return coords


def synthetic_coords(num_points: int, voxel: float) -> torch.Tensor:
    from pcseg.data.synthetic import generate_room

    coords, _, _, _ = quantize(torch.from_numpy(generate_room(seed=0, num_points=num_points)["coord"]), voxel)
    return coords


# ---------------------------------------------------------------- one backend = three callables
class Layers(Protocol):
    """One library on one voxel set."""

    def map_build(self) -> Callable[[], object]:
        """A call that builds the 3^3 submanifold kernel map from scratch."""

    def layer(self, kind: str, c_in: int, c_out: int,
              gen: torch.Generator) -> tuple[Callable[[], torch.Tensor], list[torch.Tensor]]:
        """(forward returning output feats, the tensors to differentiate) for kind subm3|down|up."""


class PcsegLayers:
    def __init__(self, coords: torch.Tensor, backend: str):
        self.coords = coords
        self.backend = backend
        self.manager = CoordinateManager()
        self.manager.insert(coords, stride=1)

    def use_backend(self) -> None:
        # conv_function reads the variable on every forward; backward reuses forward's choice.
        os.environ[ENV_VAR] = self.backend

    def map_build(self) -> Callable[[], object]:
        def build() -> object:
            self.use_backend()  # native: the hash-table builder (CPU); torch: the binary search
            manager = CoordinateManager()
            manager.insert(self.coords, stride=1)
            return manager.kernel_map(1, 1, 3)
        return build

    def kmap(self, kind: str):
        return {"subm3": (1, 1, 3), "down": (1, 2, 2), "up": (2, 1, 2)}[kind]

    def layer(self, kind, c_in, c_out, gen):
        kmap = self.manager.kernel_map(*self.kmap(kind))
        rows = len(self.manager.coordinates(2)) if kind == "up" else len(self.coords)
        feats = torch.randn(rows, c_in, generator=gen).requires_grad_()
        weight = (torch.randn(kmap.num_offsets, c_in, c_out, generator=gen) * 0.05).requires_grad_()

        def forward() -> torch.Tensor:
            self.use_backend()
            return sparse_conv(feats, weight, kmap)

        return forward, [feats, weight]


class SpconvLayers:
    def __init__(self, coords: torch.Tensor):
        from spconv_minkunet import spconv_indices  # shifted so strided levels match pcseg's

        self.indices, self.shape = spconv_indices(coords)

    def _tensor(self, feats: torch.Tensor):
        return SPCONV.SparseConvTensor(feats, self.indices, self.shape, 1)

    def map_build(self):
        from spconv.core import ConvAlgo  # the algorithm spconv's layers pick on CPU

        return lambda: SPCONV.ops.get_indice_pairs(self.indices, 1, self.shape, ConvAlgo.Native, [3] * 3,
                                                   [1] * 3, [1] * 3, [1] * 3, [0] * 3, subm=True)

    def layer(self, kind, c_in, c_out, gen):
        feats = torch.randn(len(self.indices), c_in, generator=gen).requires_grad_()
        x = self._tensor(feats)
        if kind == "subm3":
            conv = SPCONV.SubMConv3d(c_in, c_out, 3, bias=False, indice_key="subm3")
        else:
            down = SPCONV.SparseConv3d(c_in if kind == "down" else c_out, c_out if kind == "down" else c_in,
                                       2, stride=2, bias=False, indice_key="down")
            if kind == "down":
                conv = down
            else:
                coarse = down(self._tensor(torch.randn(len(self.indices), c_out, generator=gen)))
                feats = torch.randn(coarse.features.shape[0], c_in, generator=gen).requires_grad_()
                x = coarse.replace_feature(feats)
                conv = SPCONV.SparseInverseConv3d(c_in, c_out, 2, indice_key="down", bias=False)
        conv(x)  # builds and caches the pairs in x.indice_dict
        return (lambda: conv(x).features), [feats, conv.weight]


class MinkowskiLayers:
    def __init__(self, coords: torch.Tensor):
        self.coords = coords.int()

    def map_build(self):
        def build() -> object:
            x = ME.SparseTensor(torch.zeros(len(self.coords), 1), coordinates=self.coords)
            return x.coordinate_manager.kernel_map(x.coordinate_map_key, x.coordinate_map_key, kernel_size=3)
        return build

    def layer(self, kind, c_in, c_out, gen):
        feats = torch.randn(len(self.coords), c_in, generator=gen).requires_grad_()
        x = ME.SparseTensor(feats, coordinates=self.coords)
        if kind == "subm3":
            conv = ME.MinkowskiConvolution(c_in, c_out, kernel_size=3, dimension=3, bias=False)
        elif kind == "down":
            conv = ME.MinkowskiConvolution(c_in, c_out, kernel_size=2, stride=2, dimension=3, bias=False)
        else:
            down = ME.MinkowskiConvolution(c_out, c_out, kernel_size=2, stride=2, dimension=3, bias=False)
            coarse = down(ME.SparseTensor(torch.randn(len(self.coords), c_out, generator=gen), coordinates=self.coords))
            feats = torch.randn(coarse.F.shape[0], c_in, generator=gen).requires_grad_()
            x = ME.SparseTensor(feats, coordinate_map_key=coarse.coordinate_map_key,
                                coordinate_manager=coarse.coordinate_manager)
            conv = ME.MinkowskiConvolutionTranspose(c_in, c_out, kernel_size=2, stride=2, dimension=3, bias=False)
        conv(x)
        return (lambda: conv(x).F), [feats, conv.kernel]


def make_layers(name: str, coords: torch.Tensor) -> Layers | None:
    """Layer factory of backend `name` on `coords`, None when that library is not installed."""
    if name == "torch" or (name == "native" and native.available()):
        return PcsegLayers(coords, name)
    if name == "native":
        return None
    if name == "spconv":
        return SpconvLayers(coords) if SPCONV is not None else None
    return MinkowskiLayers(coords) if ME is not None else None


# ---------------------------------------------------------------- the benchmark
def time_layers(libs: dict[str, Layers | None], kind: str, c_in: int, c_out: int,
                repeats: int) -> dict[str, dict[str, float | None] | None]:
    """fwd_ms / bwd_ms (interleaved medians) and peak_mib of one layer per library (None where
    the library is not installed)."""
    setups = {}
    for name, lib in libs.items():
        if lib is not None:
            gen = torch.Generator().manual_seed(0)
            forward, inputs = lib.layer(kind, c_in, c_out, gen)
            out = forward()
            setups[name] = (forward, inputs, out, torch.randn(out.shape, generator=gen))
    fwd = interleaved_ms({name: forward for name, (forward, _, _, _) in setups.items()}, repeats)
    bwd = interleaved_ms({name: (lambda o=out, i=inputs, g=grad: torch.autograd.grad(o, i, g, retain_graph=True))
                          for name, (_, inputs, out, grad) in setups.items()}, repeats)
    peak = {name: peak_extra_mib(lambda f=forward, i=inputs, g=grad: torch.autograd.grad(f(), i, g))
            for name, (forward, inputs, _, grad) in setups.items()}
    return {name: ({"fwd_ms": fwd[name], "bwd_ms": bwd[name], "peak_mib": peak[name]} if name in setups else None)
            for name in libs}


def dense_mm_ms(rows: int, c_in: int, c_out: int, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(rows, c_in, generator=gen), torch.randn(c_in, c_out, generator=gen)
    return median_ms(lambda: torch.mm(a, b), repeats)


def bench_scene(title: str, coords: torch.Tensor, args: argparse.Namespace) -> dict:
    manager = CoordinateManager()
    manager.insert(coords, stride=1)
    pairs = {kind: int(manager.kernel_map(*k).in_rows.numel())
             for kind, k in (("subm3", (1, 1, 3)), ("down", (1, 2, 2)), ("up", (2, 1, 2)))}
    print(f"\n== {title}: {len(coords):,} voxels, {pairs['subm3']:,} submanifold pairs "
          f"({pairs['subm3'] / len(coords):.2f} per voxel), {torch.get_num_threads()} threads, {_load()}")
    libs = {name: make_layers(name, coords) for name in args.backends}
    result: dict = {"voxels": len(coords), "pairs": pairs, "rows": []}

    def row(op: str, numbers: dict[str, float | None], rate: bool = False) -> None:
        """Print one row; ratios compare costs, so for a rate (GFLOP/s) they use its inverse and
        below 1 still means pcseg is faster."""
        result["rows"].append({"op": op, **numbers})
        cost = {n: (1 / v if rate and v else v) for n, v in numbers.items()}
        ours = cost.get("native") or cost.get("torch")
        peers = [cost[p] for p in ("ME", "spconv") if cost.get(p) is not None]
        cells = "".join(f"{'-' if numbers.get(n) is None else f'{numbers[n]:.1f}':>10}" for n in args.backends)
        ratio = f"{ours / min(peers):>10.2f}x" if peers and ours else f"{'-':>11}"
        native_vs_torch = (f"{cost['native'] / cost['torch']:>9.2f}x"
                           if cost.get("native") and cost.get("torch") else f"{'-':>10}")
        print(f"{op:<28}{cells}{native_vs_torch}{ratio}")

    print(f"{'':<28}" + "".join(f"{n:>10}" for n in args.backends) + f"{'nat/torch':>10}{'pcseg/peer':>11}")
    print("  " + ", ".join(f"{n}: not installed" for n, lib in libs.items() if lib is None))

    builds = interleaved_ms({name: lib.map_build() for name, lib in libs.items() if lib}, args.repeats)
    row("kernel map 3^3 (ms)", {name: builds.get(name) for name in libs})

    layers = [("subm3", c, c) for c in args.channels] + [("down", 64, 64), ("up", 64, 64)]
    for kind, c_in, c_out in layers:
        timed = time_layers(libs, kind, c_in, c_out, args.repeats)
        for what, unit in (("fwd_ms", "ms"), ("bwd_ms", "ms"), ("peak_mib", "MiB")):
            row(f"{kind} C={c_in}->{c_out} {what[:-3] if unit == 'ms' else 'peak'} ({unit})",
                {n: (t[what] if t else None) for n, t in timed.items()})
        # Backward is two products of the forward's size (grad_feats, grad_weight).
        flops = 2.0 * pairs[kind] * c_in * c_out
        dense = f"dense mm {flops / dense_mm_ms(pairs[kind], c_in, c_out, args.repeats) / 1e6:.0f}"
        for what, scale in (("fwd", 1), ("bwd", 2)):
            row(f"  {what} GFLOP/s ({dense})",
                {n: (scale * flops / t[f"{what}_ms"] / 1e6 if t else None) for n, t in timed.items()}, rate=True)
    if not args.no_model:
        bench_model(coords, args, row)
    print(f"  done, {_load()}")
    return result


def model_steps(coords: torch.Tensor, voxel: float, backends: list[str]) -> dict[str, Callable[[], None] | None]:
    """One MinkUNet34C forward+backward call per backend (None where it cannot run).

    Input: one point per voxel centre of `coords` with 3 random features, 20 classes; loss
    = mean squared logit. pcseg runs its `Segmentor("minkunet34c")` (voxelization, kernel maps
    and slicing back to points included: a new coordinate manager every step, as for each
    training batch); spconv runs `bench/spconv_minkunet.py` on a new SparseConvTensor every
    step, so its rulebooks are rebuilt too. Raises when the two parameter counts differ.
    """
    from pcseg.models.segmentor import Segmentor

    gen = torch.Generator().manual_seed(0)
    n = len(coords)
    feats = torch.rand(n, 3, generator=gen)
    batch = {"coord": (coords[:, 1:].float() + 0.5) * voxel, "feat": feats,
             "batch": torch.zeros(n, dtype=torch.int64), "offset": torch.tensor([n])}
    steps: dict[str, Callable[[], None] | None] = {}
    params: dict[str, int] = {}
    for name in backends:
        torch.manual_seed(0)  # module initialisers draw from the global generator
        if name == "torch" or (name == "native" and native.available()):
            model = Segmentor("minkunet34c", in_channels=3, num_classes=20, voxel_size=voxel)

            def step(model: torch.nn.Module = model, backend: str = name) -> None:
                os.environ[ENV_VAR] = backend  # read by every conv's forward
                model(batch)["logits"].square().mean().backward()
        elif name == "spconv" and SPCONV is not None:
            import spconv_minkunet

            model = spconv_minkunet.build_minkunet34c(3, 20)

            def step(model: torch.nn.Module = model) -> None:
                model(spconv_minkunet.sparse_input(coords, feats)).square().mean().backward()
        else:
            steps[name] = None
            continue
        steps[name] = step
        params[name] = sum(p.numel() for p in model.parameters())
    print("  MinkUNet34C parameters: " + ", ".join(f"{name} {count:,}" for name, count in params.items()))
    if len(set(params.values())) > 1:
        raise RuntimeError(f"MinkUNet34C parameter counts differ between backends: {params}")
    return steps


def bench_model(coords: torch.Tensor, args: argparse.Namespace, row: Callable) -> None:
    """MinkUNet34C forward+backward time (median) and peak extra memory per backend."""
    steps = model_steps(coords, args.voxel, args.backends)
    ran = interleaved_ms({name: step for name, step in steps.items() if step}, max(3, args.repeats // 2))
    times = {name: ran.get(name) for name in steps}
    peaks = {name: (peak_extra_mib(step) if step else None) for name, step in steps.items()}
    row("MinkUNet34C fwd+bwd (ms)", times)
    row("MinkUNet34C peak (MiB)", peaks)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = Path(os.environ.get("PCSEG_SHARED_DATA", REPO.parent / "shared" / "data"))
    parser.add_argument("--scene", type=Path, default=data / "scannet" / "scene0000_00_vert_all.npy")
    parser.add_argument("--voxel", type=float, default=0.02, help="voxel size in metres")
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--synthetic-points", type=int, default=1_000_000)
    parser.add_argument("--no-synthetic", action="store_true")
    parser.add_argument("--no-model", action="store_true", help="skip MinkUNet34C")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--json", type=Path, help="also write all numbers here")
    args = parser.parse_args(argv)

    print(f"torch {torch.__version__}, native {'available' if native.available() else 'unavailable'}, "
          f"MinkowskiEngine {getattr(ME, '__version__', 'not installed')}, "
          f"spconv {getattr(sys.modules.get('spconv'), '__version__', 'not installed')}")
    results = {}
    if args.scene.is_file():
        results[args.scene.stem] = bench_scene(f"{args.scene.stem} @ {args.voxel * 100:g} cm",
                                               scannet_coords(args.scene, args.voxel), args)
    else:
        print(f"{args.scene} not found: skipping the ScanNet scene (set PCSEG_SHARED_DATA or --scene)")
    if not args.no_synthetic:
        coords = synthetic_coords(args.synthetic_points, args.voxel)
        results["synthetic"] = bench_scene(
            f"synthetic room, {args.synthetic_points:,} points @ {args.voxel * 100:g} cm", coords, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
