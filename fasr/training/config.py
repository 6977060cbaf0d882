"""Loss, optimiser, schedule and logging sections of the run config (Section III-E, IV-B)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LossConfig", "OptimConfig", "ScheduleConfig", "LogConfig"]


@dataclass
class LossConfig:
    """Loss weights (Eq. 25). ``paper``: all 1; the authors' code uses fourier 1e-4, perceptual 0."""

    l1: float = 1.0
    perceptual: float = 1.0
    fourier: float = 1.0
    fourier_mode: str = "complex"
    perceptual_weights: str | None = None
    warmup_epochs: int = 10


@dataclass
class OptimConfig:
    """Adam with separate learning rates for the texture extractor and the rest (Section IV-B)."""

    lr_extractor: float = 1e-4
    lr_rest: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 0.0


@dataclass
class ScheduleConfig:
    """Training length and learning-rate decay."""

    epochs: int = 60
    steps_per_epoch: int = 0
    max_steps: int = 0
    decay: str = "step"
    decay_every: int = 20
    decay_gamma: float = 0.5
    val_every: int = 1
    amp: str = "auto"


@dataclass
class LogConfig:
    """Run folder contents."""

    tensorboard: bool = True
    image_every: int = 1
    progress: bool = True
    val_max_slices: int = 0
