"""Pure-PyTorch sparse conv on a real scan: the shipped twin vs scatter/GEMM alternatives.

    python bench/sparse_conv_torch.py [--data ../shared/data] [--channels 64] [--repeats 5]

Times building the 3^3 kernel map once, then a 3^3 submanifold conv (C_in = C_out = channels) at 2 cm on ScanNet scene0000_00,
forward and backward, median of `repeats` runs, for:
  twin        pcseg.sparse.conv_torch (centre offset as plain mm, per-offset index_add_)
  no_centre   the twin with the centre offset gathered and scattered like the others
  index_put   per-offset out.index_put_(accumulate=True)
  one_scatter all offsets' products concatenated, one index_add_
  im2col      gather a [M, K*C] neighbour matrix (zero row for misses), one GEMM
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pcseg.sparse import SparseTensor, conv_torch, quantize


def no_centre(feats, weight, kmap):
    return conv_torch.conv_forward(feats, weight, dataclasses.replace(kmap, identity_offset=None))


def index_put(feats, weight, kmap):
    out = feats @ weight[kmap.identity_offset]
    for k, (s, e) in enumerate(kmap.bounds()):
        if k != kmap.identity_offset:
            out.index_put_((kmap.out_rows[s:e],), feats[kmap.in_rows[s:e]] @ weight[k], accumulate=True)
    return out


def one_scatter(feats, weight, kmap):
    prods = [feats[kmap.in_rows[s:e]] @ weight[k] for k, (s, e) in enumerate(kmap.bounds())]
    return feats.new_zeros((kmap.num_out, weight.shape[2])).index_add_(0, kmap.out_rows, torch.cat(prods))


def im2col(feats, weight, kmap):
    k_count = kmap.num_offsets
    nbr = torch.full((kmap.num_out, k_count), feats.shape[0], dtype=torch.int64, device=feats.device)
    for k, (s, e) in enumerate(kmap.bounds()):
        nbr[kmap.out_rows[s:e], k] = kmap.in_rows[s:e]
    padded = torch.cat([feats, feats.new_zeros((1, feats.shape[1]))])
    return padded[nbr].reshape(kmap.num_out, -1) @ weight.reshape(-1, weight.shape[2])


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    scan = np.load(args.data / "scannet" / "scene0000_00_vert_all.npy")
    coords, _, _, _ = quantize(scan[:, :3], 0.02)
    gen = torch.Generator().manual_seed(0)
    c = args.channels
    x = SparseTensor(torch.randn(len(coords), c, generator=gen), coords)
    start = time.perf_counter()
    kmap = x.manager.kernel_map(1, 1, 3, 1)
    print(f"kernel map 3^3 build  {1e3 * (time.perf_counter() - start):8.1f} ms")
    weight = torch.randn(27, c, c, generator=gen) / (27 * c) ** 0.5
    grad = torch.randn(len(coords), c, generator=gen)
    print(f"voxels {len(coords)}, pairs {kmap.in_rows.numel()}, C={c}, threads {torch.get_num_threads()}")
    reference = conv_torch.conv_forward(x.feats, weight, kmap)
    for name, fn in [("twin", conv_torch.conv_forward), ("no_centre", no_centre), ("index_put", index_put),
                     ("one_scatter", one_scatter), ("im2col", im2col)]:
        torch.testing.assert_close(fn(x.feats, weight, kmap), reference, atol=1e-4, rtol=1e-4)
        print(f"forward  {name:12s} {1e3 * median_time(lambda: fn(x.feats, weight, kmap), args.repeats):8.1f} ms")
    backward = median_time(lambda: conv_torch.conv_backward(grad, x.feats, weight, kmap), args.repeats)
    print(f"backward twin         {1e3 * backward:8.1f} ms")


if __name__ == "__main__":
    main()
