"""Process-group setup for ``torchrun`` (DDP on one or many nodes) and the few collectives training needs.

``torchrun --nproc_per_node=N [--nnodes=M ...] -m fasr train ...`` sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
without them training runs as a single process. Backend: NCCL on CUDA, gloo on CPU. All collectives are
no-ops (returning the local value) in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistContext", "init_distributed", "shutdown"]


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        rank / world_size / local_rank: torchrun's numbering (0 / 1 / 0 for a single process).
        device: this process's device (``cuda:<local_rank>`` when CUDA is present, else CPU).
        owns_group: whether :func:`init_distributed` created the process group (and must destroy it).
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one (e.g. a stop request seen by one process)."""
        if not self.distributed:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average of each value over ranks."""
        if not self.distributed or not values:
            return values
        t = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return dict(zip(values, (t / self.world_size).tolist()))

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed() -> DistContext:
    """Join the job torchrun describes in the environment (or reuse an initialised group); else single process."""
    cuda = torch.cuda.is_available()
    if dist.is_available() and dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        local = int(os.environ.get("LOCAL_RANK", rank % max(torch.cuda.device_count(), 1)))
        return DistContext(rank, world, local, torch.device(f"cuda:{local}" if cuda else "cpu"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistContext(0, 1, 0, torch.device("cuda:0" if cuda else "cpu"))
    local = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), local, device, owns_group=True)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`init_distributed` created it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
