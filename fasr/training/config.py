"""Loss, optimiser, schedule and logging sections of the run config (Section III-E, IV-B).

Loss weights and learning rates come in two presets, because the paper and the authors' public code differ:

=========================  ====================  =====================================
setting                    ``paper``             ``public`` (authors' code)
=========================  ====================  =====================================
L1 / perceptual / Fourier  1 / 1 / 1 (Eq. 25)    1 / 0 / 1e-4
Fourier difference         complex               magnitude only
FFT normalisation          orthonormal           unnormalised (torch's default)
lr extractor / rest        1e-4 / 1e-5 (IV-B)    1e-6 / 1e-5
=========================  ====================  =====================================

A field left unset (``None``) takes its preset's value; an explicit value always wins. The run folder's
``config.yaml`` holds the resolved values.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal

__all__ = ["LossConfig", "OptimConfig", "ScheduleConfig", "LogConfig", "LOSS_PRESETS", "OPTIM_PRESETS"]

Preset = Literal["paper", "public"]

LOSS_PRESETS: dict[str, dict[str, float | str]] = {
    "paper": {"l1": 1.0, "perceptual": 1.0, "fourier": 1.0, "fourier_mode": "complex", "fourier_norm": "ortho"},
    "public": {"l1": 1.0, "perceptual": 0.0, "fourier": 1e-4, "fourier_mode": "magnitude", "fourier_norm": "backward"},
}
OPTIM_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"lr_extractor": 1e-4, "lr_rest": 1e-5},
    "public": {"lr_extractor": 1e-6, "lr_rest": 1e-5},
}


def _fill(section: LossConfig | OptimConfig, preset: dict) -> LossConfig | OptimConfig:
    """Copy of ``section`` with its unset (None) fields taken from ``preset``."""
    unset = {f.name: preset[f.name] for f in fields(section) if f.name in preset and getattr(section, f.name) is None}
    return replace(section, **unset)


@dataclass
class LossConfig:
    """Loss terms and weights (Eqs. 22-25) and the two-phase schedule (Section IV-B).

    Args:
        preset: ``paper`` or ``public`` (see the module table); fills every weight left unset.
        l1 / perceptual / fourier: weights of Eq. 22, 23 and 24 in the total loss (Eq. 25).
        fourier_mode: ``complex`` (|F(SR) - F(HR)|) or ``magnitude`` (||F(SR)| - |F(HR)||).
        fourier_norm: ``ortho`` (spectrum on the pixel scale, Parseval) or ``backward`` (unnormalised FFT).
        perceptual_weights: torchvision VGG19 ImageNet checkpoint for Eq. 23; None uses the model's own
            fine-tuned texture extractor (features taken with its weights detached).
        warmup_epochs: epochs trained with L1 alone before all terms are switched on (10 in the paper).
    """

    preset: Preset = "paper"
    l1: float | None = None
    perceptual: float | None = None
    fourier: float | None = None
    fourier_mode: Literal["complex", "magnitude"] | None = None
    fourier_norm: Literal["ortho", "backward"] | None = None
    perceptual_weights: str | None = None
    warmup_epochs: int = 10

    def resolved(self) -> LossConfig:
        """This section with unset fields taken from :data:`LOSS_PRESETS` ``[preset]``."""
        return _fill(self, LOSS_PRESETS[self.preset])


@dataclass
class OptimConfig:
    """Adam with separate learning rates for the texture extractor and the rest (Section IV-B).

    Args:
        preset: ``paper`` or ``public``; fills the learning rates left unset.
        lr_extractor: learning rate of parameters named ``extractor.*``.
        lr_rest: learning rate of every other parameter (the only group of a model without an extractor).
        betas / weight_decay: Adam's.
        grad_clip: max global gradient norm (0 = no clipping).
    """

    preset: Preset = "paper"
    lr_extractor: float | None = None
    lr_rest: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 0.0

    def resolved(self) -> OptimConfig:
        """This section with unset learning rates taken from :data:`OPTIM_PRESETS` ``[preset]``."""
        return _fill(self, OPTIM_PRESETS[self.preset])


@dataclass
class ScheduleConfig:
    """Training length, learning-rate decay and precision.

    Args:
        epochs: number of epochs (the paper: 10 warm-up + 50 or more).
        steps_per_epoch: optimiser steps per epoch (0 = one pass over the training slices).
        max_steps: stop after this many steps in total (0 = no cap); the last epoch is then cut short.
        decay: learning-rate decay per epoch: ``step`` (x ``decay_gamma`` every ``decay_every`` epochs),
            ``cosine`` (to 0 at ``epochs``) or ``none`` (the paper only says the rate is "gradually reduced").
        val_every: validate (and write ``best.pt``) every this many epochs and at the end.
        amp: mixed precision on CUDA: ``auto`` (bf16 where supported, else fp16), ``bf16``, ``fp16`` or ``off``;
            always off on CPU.
    """

    epochs: int = 60
    steps_per_epoch: int = 0
    max_steps: int = 0
    decay: Literal["step", "cosine", "none"] = "step"
    decay_every: int = 20
    decay_gamma: float = 0.5
    val_every: int = 1
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"


@dataclass
class LogConfig:
    """Run folder contents.

    Args:
        tensorboard: write TensorBoard logs to ``<run>/tb``.
        log_every: steps between scalar (loss, learning-rate) logs.
        image_every: validations between TensorBoard image grids (LR/Ref/SR/HR/error); 0 = never.
        progress: show a progress bar with loss and speed.
        val_max_slices: validate on at most this many evenly spaced slices (0 = all).
    """

    tensorboard: bool = True
    log_every: int = 10
    image_every: int = 1
    progress: bool = True
    val_max_slices: int = 0
