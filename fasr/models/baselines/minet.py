"""MINet-style two-branch network with hierarchical feature fusion (after Feng et al., MICCAI 2021).

Published: a reference branch on the HR reference and a target branch whose LR features are upsampled by
sub-pixel convolution right after its head, each a chain of RCAN residual groups; after every stage the two
branches' features are fused (concatenation + 1x1 conv) into the target branch (multi-stage integration); the
stage outputs of both branches are then combined by a layer-attention module (HAN) beside a channel-spatial
attention on the last target features. Light variant here: 3 stages of 1 RCAB each, width ``n_feats``,
reference reconstruction head dropped (only the target is supervised), layer-attention energies scaled by
1/(C*H*W), and a global bicubic residual.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fasr.models.baselines.common import ResBlock, ResidualSR, SubPixelUpsampler, conv3x3, zero_
from fasr.models.config import ModelConfig

__all__ = ["ResidualGroup", "LayerAttention", "ChannelSpatialAttention", "MINet", "from_config"]


class ResidualGroup(nn.Sequential):
    """RCAN residual group: ``n_blocks`` RCABs and a conv, with a residual connection.

    Args:
        n_feats: channels.
        n_blocks: RCABs.
        reduction: channel-attention reduction.
    """

    def __init__(self, n_feats: int, n_blocks: int, reduction: int) -> None:
        super().__init__(*[ResBlock(n_feats, reduction=reduction) for _ in range(n_blocks)], conv3x3(n_feats, n_feats))

    def forward(self, x: Tensor) -> Tensor:
        return x + super().forward(x)


class LayerAttention(nn.Module):
    """HAN layer attention: each stage's features re-weighted by its correlation with every other stage.

    ``out_i = x_i + gamma * sum_j softmax_j(<x_i, x_j> / D) x_j`` with D = C*H*W and ``gamma`` learned from 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, N, C, H, W) stacked stage features -> (B, N * C, H, W)."""
        b, n, c, h, w = x.shape
        flat = x.reshape(b, n, c * h * w)  # (B, N, D)
        weights = torch.softmax(flat @ flat.transpose(1, 2) / flat.shape[-1], dim=-1)  # (B, N, N)
        out = x + self.gamma * (weights @ flat).view(b, n, c, h, w)
        return out.reshape(b, n * c, h, w)


class ChannelSpatialAttention(nn.Module):
    """HAN channel-spatial attention: a 3x3x3 conv over (C, H, W) gives a joint gate, ``x + gamma * x * gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 1, kernel_size=3, padding=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        gate = torch.sigmoid(self.conv(x.unsqueeze(1))).squeeze(1)  # (B, 1, C, H, W) -> (B, C, H, W)
        return x + self.gamma * x * gate


class MINet(ResidualSR):
    """Two branches on the HR grid, fused after every stage and hierarchically at the end.

    Args:
        scale: upsampling factor.
        n_feats: channels of both branches.
        n_stages: residual groups per branch (fusion points).
        n_blocks: RCABs per residual group.
        reduction: channel-attention reduction.
    """

    def __init__(self, scale: int, n_feats: int = 64, n_stages: int = 3, n_blocks: int = 1, reduction: int = 16):
        super().__init__(scale)
        self.ref_head = conv3x3(1, n_feats)
        self.target_head = nn.Sequential(conv3x3(1, n_feats), SubPixelUpsampler(n_feats, scale))
        self.ref_stages = nn.ModuleList(ResidualGroup(n_feats, n_blocks, reduction) for _ in range(n_stages))
        self.target_stages = nn.ModuleList(ResidualGroup(n_feats, n_blocks, reduction) for _ in range(n_stages))
        self.integrate = nn.ModuleList(nn.Conv2d(2 * n_feats, n_feats, kernel_size=1) for _ in range(n_stages))
        self.layer_attention = LayerAttention()
        self.merge_stages = conv3x3(2 * n_stages * n_feats, n_feats)
        self.spatial_attention = ChannelSpatialAttention()
        self.merge = conv3x3(2 * n_feats, n_feats)
        self.tail = zero_(conv3x3(n_feats, 1))

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        r = self.ref_head(ref)  # (B, C, H, W)
        t = head = self.target_head(lr)  # (B, C, h, w) -> (B, C, H, W)
        stages = []
        for ref_stage, target_stage, integrate in zip(self.ref_stages, self.target_stages, self.integrate):
            r, t = ref_stage(r), target_stage(t)
            t = t + integrate(torch.cat([r, t], dim=1))  # multi-stage integration: (B, 2C, H, W) -> (B, C, H, W)
            stages += [r, t]
        stacked = torch.stack(stages, dim=1)  # (B, 2N, C, H, W)
        hierarchy = self.merge_stages(self.layer_attention(stacked))  # (B, 2N * C, H, W) -> (B, C, H, W)
        fused = self.merge(torch.cat([self.spatial_attention(t), hierarchy], dim=1)) + head
        return self.tail(fused)


def from_config(cfg: ModelConfig) -> MINet:
    """Build the light MINet from ``cfg.scale`` and ``cfg.n_feats``."""
    return MINet(scale=cfg.scale, n_feats=cfg.n_feats)
