"""EDSR (Lim et al., CVPRW 2017): single-image SR with a deep residual trunk on the LR grid.

Published: head conv, 16 (baseline) or 32 residual blocks (conv-ReLU-conv, no batch norm, residual scaling),
a conv closing the long skip, sub-pixel upsampling, output conv. Light variant here: 8 blocks of ``n_feats``
channels, one input channel, and a global bicubic residual instead of RGB mean shifting.
"""

from __future__ import annotations

from torch import Tensor, nn

from fasr.models.baselines.common import ResBlock, ResidualSR, SubPixelUpsampler, conv3x3, zero_
from fasr.models.config import ModelConfig

__all__ = ["EDSR", "from_config"]


class EDSR(ResidualSR):
    """Light EDSR; ``ref`` is ignored.

    Args:
        scale: upsampling factor.
        n_feats: trunk channels.
        n_blocks: residual blocks in the trunk.
        res_scale: residual scaling of each block (EDSR uses 0.1 only for its wide model).
    """

    def __init__(self, scale: int, n_feats: int = 64, n_blocks: int = 8, res_scale: float = 1.0) -> None:
        super().__init__(scale)
        self.head = conv3x3(1, n_feats)
        self.trunk = nn.Sequential(
            *[ResBlock(n_feats, res_scale=res_scale) for _ in range(n_blocks)], conv3x3(n_feats, n_feats)
        )
        self.upsampler = SubPixelUpsampler(n_feats, scale)
        self.tail = zero_(conv3x3(n_feats, 1))

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        x = self.head(lr)  # (B, C, h, w)
        x = x + self.trunk(x)  # long skip
        return self.tail(self.upsampler(x))  # (B, C, H, W) -> (B, 1, H, W)


def from_config(cfg: ModelConfig) -> EDSR:
    """Build the light EDSR from ``cfg.scale`` and ``cfg.n_feats``."""
    return EDSR(scale=cfg.scale, n_feats=cfg.n_feats)
