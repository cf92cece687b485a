"""A training sampler that shards by rank, reshuffles per epoch, and can start mid-epoch (for resume)."""
from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler

from solov2.engine.rng import AUGMENT, derive_seed


class TrainSampler(Sampler):
    """Same permutation on every rank for a given (seed, epoch); rank r takes every world_size-th index.

    ``set_epoch(epoch, skip)`` starts the next pass after ``skip`` samples of this rank's share, so a run
    resumed mid-epoch sees exactly the images it had not seen yet, without loading the others.
    With ``keyed=True`` it yields ``(index, derive_seed(seed, AUGMENT, epoch, index))`` pairs, the keys of
    :class:`~solov2.engine.rng.SeededSamples`: each sample's augmentation seed travels with its index.
    """

    def __init__(self, size: int, shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
                 keyed: bool = False):
        self.size, self.shuffle, self.seed, self.keyed = size, shuffle, seed, keyed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 0, 0
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.size, generator=g).tolist()
        else:
            order = list(range(self.size))
        total = self.per_rank * self.world_size
        order = (order * math.ceil(total / max(len(order), 1)))[:total]  # pad so every rank gets as many
        mine = order[self.rank::self.world_size][self.skip:]
        if self.keyed:
            return ((i, derive_seed(self.seed, AUGMENT, self.epoch, i)) for i in mine)  # lazily: ~30 us each
        return iter(mine)

    def __len__(self) -> int:
        return self.per_rank - self.skip
