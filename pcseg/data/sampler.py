"""Samplers: a distributed-aware shuffling sampler and DSP's pair sampler.

Both shard by rank without padding: rank r takes positions r, r + W, r + 2W, ... of the
epoch's order, so ranks get disjoint items whose union is every item (no scene evaluated
twice, unlike a padded DistributedSampler). Ranks may then differ by one item; training
that needs equal step counts passes `even=True`, which drops the < W items of the tail
(a different tail each epoch when shuffled). Orders depend only on (seed, epoch).
"""
from __future__ import annotations

from typing import Collection, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler


def _rank_world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    initialised = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1} (world size {world_size})")
    return rank, world_size


def _permutation(n: int, seed: int, epoch: int) -> list[int]:
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g).tolist()


class ShardedSampler(Sampler[int]):
    """Item indices 0..n-1 for this rank: shuffled per (seed, epoch) if `shuffle`.

    rank / world_size default to torch.distributed's when it is initialised, else 0 / 1.
    """

    def __init__(self, num_items: int, shuffle: bool = True, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, even: bool = False):
        self.num_items = int(num_items)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank, self.world_size = _rank_world(rank, world_size)
        self.even = even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _order(self) -> list[int]:
        order = _permutation(self.num_items, self.seed, self.epoch) if self.shuffle else list(range(self.num_items))
        if self.even:
            order = order[: len(order) - len(order) % self.world_size]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order())

    def __len__(self) -> int:
        total = self.num_items - (self.num_items % self.world_size if self.even else 0)
        return len(range(self.rank, total, self.world_size))


class PairSampler(Sampler[list[int]]):
    """Batches of scene pairs sharing at least one labelled class (DSP's cross-sample step).

    labelled_classes: per item, the classes with weak labels (`SceneDataset.labelled_classes()`).
    An epoch holds as many scenes as one pass over the data: a fresh random half (rounded up)
    of the items that have a partner are its anchors, each with one partner drawn uniformly
    among the other items sharing a labelled class with it. So a pair method trains on as
    many scenes per epoch, and with the same batch size takes as many steps, as any other. A
    single labelled item (one training scan) is its own partner: the batch builder augments
    the two copies with different draws, so the pair is two views of the scan.
    A batch is `pairs_per_batch` pairs flattened, [a0, b0, a1, b1, ...]: positions 2k and
    2k + 1 form a pair. Use as a DataLoader `batch_sampler`. Anchors are sharded by rank.
    """

    def __init__(self, labelled_classes: Sequence[Collection[int]], pairs_per_batch: int = 1, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None, even: bool = True):
        self.partners = self._partners(labelled_classes)
        self.anchors = [i for i, p in enumerate(self.partners) if len(p)]
        if not self.anchors:
            raise ValueError(
                f"PairSampler: none of the {len(labelled_classes)} scenes shares a labelled class with "
                "another (DSP needs pairs); use more labels or more scenes, or a method without pairs")
        if pairs_per_batch < 1:
            raise ValueError(f"PairSampler: pairs_per_batch {pairs_per_batch}: expected >= 1")
        self.pairs_per_batch = int(pairs_per_batch)
        self.anchor_sampler = ShardedSampler(len(self.anchors), True, seed, rank, world_size, even)
        self.seed = int(seed)

    @staticmethod
    def _partners(labelled_classes: Sequence[Collection[int]]) -> list[np.ndarray]:
        classes = sorted(set().union(*labelled_classes)) if labelled_classes else []
        column = {c: k for k, c in enumerate(classes)}
        member = np.zeros((len(labelled_classes), len(classes)), dtype=np.int64)
        for i, cs in enumerate(labelled_classes):
            member[i, [column[c] for c in cs]] = 1
        share = (member @ member.T) > 0
        if len(labelled_classes) > 1:
            np.fill_diagonal(share, False)
        return [np.flatnonzero(row) for row in share]

    def set_epoch(self, epoch: int) -> None:
        self.anchor_sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.anchor_sampler.epoch, self.anchor_sampler.rank])
        batch: list[int] = []
        positions = list(self.anchor_sampler)
        for position in positions[:self._anchors_per_epoch()]:
            anchor = self.anchors[position]
            batch += [anchor, int(rng.choice(self.partners[anchor]))]
            if len(batch) == 2 * self.pairs_per_batch:
                yield batch
                batch = []
        if batch:
            yield batch

    def _anchors_per_epoch(self) -> int:
        return -(-len(self.anchor_sampler) // 2)

    def __len__(self) -> int:
        return -(-self._anchors_per_epoch() // self.pairs_per_batch)
