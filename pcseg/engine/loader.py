"""Deterministic training batches: order and augmentation are functions of (seed, epoch, step).

Nothing depends on a sampler's or a worker's hidden state, so a resumed run replays an
epoch's plan, skips the batches already done, and sees the very batches an uninterrupted
run would (whatever `num_workers`). Each rank takes a disjoint, equally long share of the
epoch's permutation (DDP needs the same number of steps everywhere; the remainder of
`num_scenes / world_size` is left out of that epoch, a different remainder each epoch).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# (scene indices, generator for this batch's augmentation) -> collated batch
MakeBatch = Callable[[Sequence[int], np.random.Generator], dict]


@dataclass(frozen=True)
class BatchPlan:
    """One step of the plan: which scenes, and the seed of their augmentation."""

    indices: tuple[int, ...]
    seed: tuple[int, ...]


def epoch_plan(num_scenes: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
               world_size: int = 1) -> list[BatchPlan]:
    """This rank's batches of `epoch` (the last one may be smaller)."""
    if num_scenes < world_size:
        raise ValueError(f"{num_scenes} training scenes cannot feed {world_size} processes")
    order = np.random.default_rng([seed, epoch]).permutation(num_scenes)
    share = num_scenes // world_size
    mine = order[rank * share:(rank + 1) * share]
    return [BatchPlan(tuple(int(i) for i in mine[s:s + batch_size]), (seed, epoch, rank, s // batch_size))
            for s in range(0, share, batch_size)]


class BatchSampler(Protocol):
    """Deterministic batches of scene indices per epoch (e.g. `pcseg.data.sampler.PairSampler`)."""

    def set_epoch(self, epoch: int) -> None: ...

    def __iter__(self) -> Iterator[Sequence[int]]: ...


def sampler_plan(sampler: BatchSampler, seed: int, epoch: int, rank: int = 0) -> list[BatchPlan]:
    """The plan of `epoch` drawn from a batch sampler whose order depends on (seed, epoch) only."""
    sampler.set_epoch(epoch)
    batches: Iterable[Sequence[int]] = sampler
    return [BatchPlan(tuple(int(i) for i in b), (seed, epoch, rank, k)) for k, b in enumerate(batches)]


class _PlanDataset(Dataset):
    def __init__(self, plan: list[BatchPlan], make_batch: MakeBatch):
        self.plan, self.make_batch = plan, make_batch

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict:
        item = self.plan[i]
        return self.make_batch(item.indices, np.random.default_rng(list(item.seed)))


class EpochLoader:
    """Batches of one epoch from step `start` on, built by `make_batch` (in workers if asked).

    The plan is `epoch_plan` (shuffled scenes in groups of `batch_size`) unless a
    `batch_sampler` is given (DSP's scene pairs), whose batches must depend on (seed, epoch).
    """

    def __init__(self, num_scenes: int, make_batch: MakeBatch, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, num_workers: int = 0,
                 batch_sampler: Optional[BatchSampler] = None):
        self.num_scenes, self.make_batch, self.batch_size = num_scenes, make_batch, batch_size
        self.seed, self.rank, self.world_size, self.num_workers = seed, rank, world_size, num_workers
        self.batch_sampler = batch_sampler

    def plan(self, epoch: int) -> list[BatchPlan]:
        if self.batch_sampler is not None:
            return sampler_plan(self.batch_sampler, self.seed, epoch, self.rank)
        return epoch_plan(self.num_scenes, self.batch_size, self.seed, epoch, self.rank, self.world_size)

    def steps_per_epoch(self) -> int:
        return len(self.plan(0))

    def batches(self, epoch: int, start: int = 0) -> Iterator[dict]:
        plan = self.plan(epoch)[start:]
        if self.num_workers == 0:
            for item in plan:
                yield self.make_batch(item.indices, np.random.default_rng(list(item.seed)))
            return
        loader = DataLoader(_PlanDataset(plan, self.make_batch), batch_size=None, shuffle=False,
                            num_workers=self.num_workers, persistent_workers=False,
                            # a fixed worker seed: batches never use worker RNGs, this just keeps torch's own quiet.
                            generator=torch.Generator().manual_seed(self.seed))
        yield from loader
