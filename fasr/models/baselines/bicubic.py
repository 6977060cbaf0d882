"""Bicubic interpolation as a (parameter-free) model: the floor every learned method must beat."""

from __future__ import annotations

import torch
from torch import Tensor

from fasr.models.baselines.common import ResidualSR
from fasr.models.config import ModelConfig

__all__ = ["BicubicSR", "from_config"]


class BicubicSR(ResidualSR):
    """Antialiased bicubic upsampling of the LR target (the same ``up`` the data pipeline uses); ``ref`` unused.

    Args:
        scale: upsampling factor.
    """

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        return torch.zeros_like(base)


def from_config(cfg: ModelConfig) -> BicubicSR:
    """Build from the model section of a run config (only ``scale`` is used)."""
    return BicubicSR(scale=cfg.scale)
