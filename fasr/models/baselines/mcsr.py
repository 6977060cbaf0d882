"""MCSR-style multi-contrast CNN (after Zeng et al., Comput. Biol. Med. 2018).

The published model cascades two plain CNNs with residual learning on the HR grid: a single-contrast
subnetwork super-resolves the interpolated LR target, and a multi-contrast subnetwork refines that estimate from
its concatenation with the HR reference; both outputs are supervised. Light variant here: ``depth`` = 6
convolutions of ``n_feats`` channels per subnetwork, and only the final output is supervised (the shared trainer
has one output); the single-contrast estimate is still formed, as a residual over bicubic.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fasr.models.baselines.common import ResidualSR, conv3x3, zero_
from fasr.models.config import ModelConfig

__all__ = ["plain_cnn", "MCSR", "from_config"]


def plain_cnn(in_channels: int, n_feats: int, depth: int) -> nn.Sequential:
    """VDSR-style stack: ``depth`` 3x3 convs with ReLU between them, ``in_channels`` -> 1 channel.

    Args:
        in_channels: input channels.
        n_feats: hidden channels.
        depth: number of convolutions (>= 2); the last one starts at zero, so the stack starts as zero.
    """
    if depth < 2:
        raise ValueError(f"depth must be >= 2, got {depth}")
    layers: list[nn.Module] = [conv3x3(in_channels, n_feats), nn.ReLU(inplace=True)]
    for _ in range(depth - 2):
        layers += [conv3x3(n_feats, n_feats), nn.ReLU(inplace=True)]
    layers.append(zero_(conv3x3(n_feats, 1)))
    return nn.Sequential(*layers)


class MCSR(ResidualSR):
    """Single-contrast estimate, then multi-contrast refinement from [estimate, reference].

    Args:
        scale: upsampling factor.
        n_feats: hidden channels of both subnetworks.
        depth: convolutions per subnetwork.
    """

    def __init__(self, scale: int, n_feats: int = 64, depth: int = 6) -> None:
        super().__init__(scale)
        self.single = plain_cnn(1, n_feats, depth)
        self.multi = plain_cnn(2, n_feats, depth)

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        correction = self.single(base)  # (B, 1, H, W)
        single = base + correction  # single-contrast SR
        return correction + self.multi(torch.cat([single, ref], dim=1))  # (B, 2, H, W) -> (B, 1, H, W)


def from_config(cfg: ModelConfig) -> MCSR:
    """Build the light MCSR from ``cfg.scale`` and ``cfg.n_feats``."""
    return MCSR(scale=cfg.scale, n_feats=cfg.n_feats)
