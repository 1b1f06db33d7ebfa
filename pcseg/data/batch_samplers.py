"""`LabelledMixSampler`: batches of k items with labels + (batch_size - k) without.

Semi-supervised recipes with a labelled-image fraction (1/16 of the images fully labelled,
the rest not at all) batch like the CPS / mean-teacher papers: every step takes k labelled
and u = batch_size - k unlabelled items, so a supervised baseline and a semi-supervised
method see the same labelled batches, and the unlabelled terms always have data.

An epoch is one pass over the labelled items (ceil(L / k) steps, rounded up to a multiple of
the world size). Both kinds are drawn from endless streams of shuffled passes - pass j of a
stream is a permutation seeded by (seed, stream, j) - that continue from epoch to epoch, so a
plan depends on (seed, epoch) alone and a resumed run replays it. Global step g of the run
takes labelled stream positions [g k, (g + 1) k) and unlabelled [g u, (g + 1) u); rank r
takes the global steps r, r + W, ... of the epoch. Without unlabelled items every batch is
`batch_size` labelled items.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

_LABELLED, _UNLABELLED = 0, 1


class LabelledMixSampler:
    """has_labels: per item, whether it has labels (`ImageDataset.has_labels()`)."""

    def __init__(self, has_labels: Sequence[bool], batch_size: int, labelled_per_batch: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.labelled = np.flatnonzero(np.asarray(has_labels, dtype=bool)).astype(np.int64)
        self.unlabelled = np.flatnonzero(~np.asarray(has_labels, dtype=bool)).astype(np.int64)
        if len(self.labelled) == 0:
            raise ValueError("LabelledMixSampler: no item has a label (check data.protocol)")
        if not 1 <= labelled_per_batch <= batch_size:
            raise ValueError(f"config key 'data.images.labelled_per_batch': {labelled_per_batch} must lie in "
                             f"1..data.batch_size ({batch_size})")
        self.k = batch_size if len(self.unlabelled) == 0 else int(labelled_per_batch)
        self.u = int(batch_size) - self.k
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        per_rank = -(-len(self.labelled) // (self.k * self.world_size))
        self.global_steps = max(1, per_rank) * self.world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _take(self, items: np.ndarray, stream: int, start: int, count: int) -> list[int]:
        """Items at positions start..start+count-1 of stream `stream`'s shuffled passes."""
        out: list[int] = []
        n = len(items)
        position = start
        while len(out) < count:
            passes, offset = divmod(position, n)
            order = np.random.default_rng([self.seed, stream, passes]).permutation(n)
            chunk = order[offset:offset + count - len(out)]
            out += items[chunk].tolist()
            position += len(chunk)
        return out

    def __iter__(self) -> Iterator[list[int]]:
        first = self.epoch * self.global_steps
        for g in range(first + self.rank, first + self.global_steps, self.world_size):
            batch = self._take(self.labelled, _LABELLED, g * self.k, self.k)
            if self.u:
                batch += self._take(self.unlabelled, _UNLABELLED, g * self.u, self.u)
            yield batch

    def __len__(self) -> int:
        return self.global_steps // self.world_size
