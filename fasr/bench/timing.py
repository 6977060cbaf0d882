"""The one timing helper of the benchmarks: seconds of an optimiser step on random tensors."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import Tensor, nn

__all__ = ["train_step_seconds"]


def train_step_seconds(
    model: nn.Module,
    loss: Callable[[Tensor, Tensor], Tensor],
    *,
    batch: int,
    patch: int,
    scale: int,
    device: str | torch.device = "cpu",
    repeats: int = 3,
) -> float:
    """Median seconds of one optimiser step (forward, ``loss``, backward, Adam) on random inputs on [-1, 1].

    One untimed warm-up step comes first (it pays one-off allocations); CUDA is synchronised around each
    timed step. 0 for a model without trainable parameters.

    Args:
        model: in training mode, on ``device``.
        loss: ``loss(sr, hr) -> scalar``.
        batch: samples per step.
        patch: HR patch side (the LR side is ``patch // scale``).
        scale: the model's upsampling factor.
        device: where the tensors are made.
        repeats: timed steps.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return 0.0
    optimizer = torch.optim.Adam(params)
    lr = torch.rand(batch, 1, patch // scale, patch // scale, device=device) * 2 - 1  # (B, 1, h, w)
    ref, hr = torch.rand(2, batch, 1, patch, patch, device=device) * 2 - 1  # each (B, 1, H, W)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    times = []
    for i in range(repeats + 1):
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss(model(lr, ref).sr, hr).backward()
        optimizer.step()
        sync()
        if i:
            times.append(time.perf_counter() - start)
    return statistics.median(times)
