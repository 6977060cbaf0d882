"""Seeded, rank-sharded training order with a fixed number of samples per epoch and exact mid-epoch restart.

Unlike ``torch.utils.data.DistributedSampler``, an epoch may hold more or fewer samples than the dataset
(``schedule.steps_per_epoch``: permutations are concatenated as needed) and iteration can start part-way
through an epoch, so an interrupted run resumes on exactly the samples it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

__all__ = ["EpochSampler", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed for (run seed, epoch), decorrelated for neighbouring values of either."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(2, np.uint64)[0] >> np.uint64(1))


class EpochSampler(Sampler[int]):
    """This rank's share of the epoch's order: element ``rank``, ``rank + world_size``, ... of a seeded stream.

    Args:
        size: dataset length.
        samples_per_rank: indices each rank draws per epoch.
        seed: run seed (the same on every rank).
        rank / world_size: position in the job.
    """

    def __init__(self, size: int, samples_per_rank: int, seed: int, rank: int = 0, world_size: int = 1) -> None:
        if size <= 0:
            raise ValueError("cannot sample from an empty dataset")
        self.size, self.samples_per_rank, self.seed = size, samples_per_rank, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch``, skipping this rank's first ``start`` indices (samples already trained on)."""
        self.epoch, self.start = epoch, start

    def order(self) -> list[int]:
        """This rank's full index list for the current epoch."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        total = self.samples_per_rank * self.world_size
        n_perms = -(-total // self.size)  # ceil
        stream = torch.cat([torch.randperm(self.size, generator=g) for _ in range(n_perms)])[:total]
        return stream[self.rank :: self.world_size].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return self.samples_per_rank - self.start
