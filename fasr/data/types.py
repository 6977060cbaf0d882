"""Typed records shared by the data layer, training, evaluation and inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from torch import Tensor

__all__ = ["NormStats", "PairedSample"]


@dataclass(frozen=True)
class NormStats:
    """Per-volume robust scaling: ``x_norm = 2 * (x - low) / (high - low) - 1`` (Section IV-A: [-1, 1]).

    Attributes:
        low: intensity mapped to -1 (a low percentile of the foreground).
        high: intensity mapped to +1 (a high percentile).
    """

    low: float
    high: float

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return (2.0 * (x - self.low) / (self.high - self.low) - 1.0).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return (x + 1.0) * 0.5 * (self.high - self.low) + self.low


class PairedSample(NamedTuple):
    """One training/evaluation example (tensors on the [-1, 1] scale, channel-first).

    Attributes:
        hr: (1, H, W) high-resolution target (ground truth).
        ref: (1, H, W) high-resolution reference contrast on the target grid.
        lr: (1, H/scale, W/scale) low-resolution target.
        subject: subject / volume id.
        slice_index: index of the slice in its volume.
        target_stats: normalisation of the target volume (to map outputs back).
        ref_stats: normalisation of the reference volume.
    """

    hr: Tensor
    ref: Tensor
    lr: Tensor
    subject: str
    slice_index: int
    target_stats: tuple[float, float]
    ref_stats: tuple[float, float]
