"""The step budget: seconds per optimiser step of each row, and the one step count that fills the budget."""

from __future__ import annotations

from fasr.config import RunConfig
from fasr.errors import FasrError

__all__ = ["TIMED_STEPS", "seconds_per_step", "steps_for_budget"]

TIMED_STEPS = 3  # budget calibration: timed optimiser steps per row, after one untimed warm-up step


def seconds_per_step(cfg: RunConfig, repeats: int = TIMED_STEPS) -> float:
    """Median seconds of one optimiser step (forward, every loss term, backward, Adam) on random tensors.

    Uses the run's model, loss, batch and patch size (:func:`fasr.bench.timing.train_step_seconds`); 0 for a
    model without parameters.

    Args:
        cfg: the run config.
        repeats: timed steps after one warm-up step.
    """
    import torch

    from fasr.bench.timing import train_step_seconds
    from fasr.models import build_model
    from fasr.training.losses import build_loss

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).train()
    if not any(p.requires_grad for p in model.parameters()):
        return 0.0
    loss, _ = build_loss(cfg.loss.resolved(), cfg.model.feature_levels)
    epoch = cfg.loss.warmup_epochs  # every loss term on: after the warm-up
    return train_step_seconds(
        model,
        lambda sr, hr: loss(sr, hr, epoch=epoch).total,
        batch=cfg.data.batch_size,
        patch=cfg.data.patch_size,
        scale=cfg.model.scale,
        repeats=repeats,
    )


def steps_for_budget(step_seconds: dict[str, float], runs_per_row: int, budget_s: float) -> int:
    """The one step count for every row such that all training steps of the suite fit ``budget_s``.

    Args:
        step_seconds: seconds per optimiser step by row.
        runs_per_row: seeds x held-out subjects.
        budget_s: training budget of the whole suite in seconds.
    """
    per_step = sum(step_seconds.values()) * runs_per_row
    if per_step <= 0:
        return 0
    steps = int(budget_s // per_step)
    if steps < 1:
        raise FasrError(
            f"--budget-minutes {budget_s / 60:g} is too small: one step of every run takes {per_step:.1f} s; "
            "raise the budget or pass --steps N"
        )
    return steps
