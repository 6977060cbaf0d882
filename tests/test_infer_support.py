"""Shared helpers for the inference and demo tests (no tests here): a probe model whose outputs reveal what it
was given, checkpoints of it and of a tiny FASR-Net, and world-linear test volumes."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fasr.checkpoint import save_checkpoint
from fasr.config import RunConfig
from fasr.data.geometry import voxel_to_world
from fasr.models import build_model, register
from fasr.models.config import ModelConfig
from fasr.models.output import SROutput

__all__ = ["ProbeSR", "build_probe", "write_checkpoint", "write_tiny_fasr", "world_field", "run_cli"]


class ProbeSR(nn.Module):
    """SR = bicubic upsampling of the LR; confidence = the reference mapped from [-1, 1] to [0, 1].

    The confidence map therefore shows, on the SR grid, exactly the reference slice the model received.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> SROutput:
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)  # (B, 1, H, W)
        return SROutput(sr=up, attention={}, confidence=((ref + 1) / 2).clamp(0, 1))


def build_probe(cfg: ModelConfig) -> ProbeSR:
    return ProbeSR(cfg.scale)


def write_checkpoint(path: Path, scale: int = 4) -> Path:
    """A checkpoint of :class:`ProbeSR` (registered as model ``probe``)."""
    register("probe", "test_infer_support:build_probe")
    cfg = RunConfig(model=ModelConfig(name="probe", scale=scale))
    return save_checkpoint(path, {"model": build_probe(cfg.model).state_dict(), "config": asdict(cfg)})


def write_tiny_fasr(path: Path, scale: int = 4) -> Path:
    """A checkpoint of a small randomly initialised FASR-Net."""
    torch.manual_seed(0)
    cfg = RunConfig(model=ModelConfig(name="fasr", scale=scale, n_feats=8, n_blocks=(1, 1, 1), embed_dim=8))
    return save_checkpoint(path, {"model": build_model(cfg.model).state_dict(), "config": asdict(cfg)})


def world_field(
    affine: np.ndarray, shape: tuple[int, ...], coefficients: tuple[float, float, float, float]
) -> np.ndarray:
    """``c0 + c1 x + c2 y + c3 z`` at the world position of every voxel centre of a grid, (X, Y, Z) float64."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)  # (X, Y, Z, 3)
    xyz = voxel_to_world(affine, ijk)
    c0, c1, c2, c3 = coefficients
    return c0 + c1 * xyz[..., 0] + c2 * xyz[..., 1] + c3 * xyz[..., 2]


def run_cli(argv: list[str]) -> int:
    """``fasr <argv>`` in this process (so models registered here are known); returns the exit status."""
    from fasr.cli import main

    return main([str(a) for a in argv])
