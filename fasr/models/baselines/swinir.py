"""Light SwinIR (Liang et al., ICCVW 2021): single-image SR with shifted-window self-attention on the LR grid.

Published lightweight model: conv head, 4 residual Swin transformer blocks (RSTB) of 6 Swin layers each
(window 8, 6 heads, width 60, MLP ratio 2), LayerNorm, conv, long skip, one-step pixel shuffle. Light variant
here: 4 RSTBs of 4 layers, width ``n_feats`` with 4 heads, the same window and MLP ratio, one input channel and
a global bicubic residual. Inputs whose size is not a multiple of the window are padded (edge replication) and
the output is cropped back.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.errors import FasrError
from fasr.models.baselines.common import ResidualSR, conv3x3, zero_
from fasr.models.config import ModelConfig

__all__ = [
    "window_partition",
    "window_merge",
    "relative_position_index",
    "shift_mask",
    "WindowAttention",
    "SwinLayer",
    "ResidualSwinGroup",
    "SwinIR",
    "from_config",
]


def window_partition(x: Tensor, window: int) -> Tensor:
    """Cut (B, H, W, C) into non-overlapping windows: (B * nH * nW, window^2, C); H, W multiples of ``window``."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c)  # (B, nH, ws, nW, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)  # (B * nH * nW, ws * ws, C)


def window_merge(windows: Tensor, window: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B * nH * nW, window^2, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c)  # (B, nH, nW, ws, ws, C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, h, w, c)


def relative_position_index(window: int) -> Tensor:
    """(N, N) index, N = window^2, of each (query, key) offset in a (2 * window - 1)^2 bias table."""
    grid = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack(grid).flatten(1)  # (2, N)
    offset = coords[:, :, None] - coords[:, None, :] + (window - 1)  # (2, N, N), each in [0, 2 * window - 2]
    return offset[0] * (2 * window - 1) + offset[1]


def shift_mask(h: int, w: int, window: int, shift: int) -> Tensor:
    """(nH * nW, N, N) additive mask for shifted windows: -inf between tokens that the cyclic roll made adjacent.

    Args:
        h, w: padded feature size (multiples of ``window``).
        window: window side.
        shift: roll applied before partitioning (0 < shift < window).
    """
    region = torch.zeros(1, h, w, 1)
    bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for label, (rows, cols) in enumerate(itertools.product(bands, bands)):
        region[:, rows, cols] = label
    labels = window_partition(region, window).squeeze(-1)  # (nW, N)
    crossing = labels[:, :, None] != labels[:, None, :]  # (nW, N, N)
    return torch.zeros(crossing.shape).masked_fill(crossing, float("-inf"))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window with a learned relative position bias.

    Args:
        dim: token width.
        heads: attention heads (must divide ``dim``).
        window: window side.
    """

    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.bias_table, std=0.02)
        self.register_buffer("bias_index", relative_position_index(window), persistent=False)

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        """Args: x (B, nW, N, C) tokens grouped by window; mask (nW, N, N) additive or None. Returns (B, nW, N, C)."""
        b, nw, n, c = x.shape
        qkv = self.qkv(x).view(b, nw, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each (B, nW, heads, N, d)
        bias = self.bias_table[self.bias_index].permute(2, 0, 1)  # (N, N, heads) -> (heads, N, N)
        if mask is not None:
            bias = bias + mask[:, None]  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, nW, heads, N, d)
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class SwinLayer(nn.Module):
    """Swin transformer layer: ``x + W-MSA(LN(x))`` then ``x + MLP(LN(x))``, windows optionally shifted.

    Args:
        dim: token width.
        heads: attention heads.
        window: window side.
        shift: cyclic shift (window // 2 on every other layer, 0 otherwise); skipped when the map fits one window.
        mlp_ratio: MLP hidden width / ``dim``.
    """

    def __init__(self, dim: int, heads: int, window: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C), H and W multiples of the window."""
        b, h, w, c = x.shape
        shift = self.shift if min(h, w) > self.window else 0
        y = self.norm1(x)
        if shift:
            y = torch.roll(y, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(y, self.window).view(b, -1, self.window**2, c)  # (B, nW, N, C)
        mask = shift_mask(h, w, self.window, shift).to(x) if shift else None
        y = self.attn(windows, mask).view(-1, self.window**2, c)  # (B * nW, N, C)
        y = window_merge(y, self.window, h, w)  # (B, H, W, C)
        if shift:
            y = torch.roll(y, shifts=(shift, shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class ResidualSwinGroup(nn.Module):
    """RSTB: Swin layers (alternately shifted) then a 3x3 conv, with a residual connection.

    Args:
        dim: channels.
        depth: Swin layers.
        heads: attention heads.
        window: window side.
        mlp_ratio: MLP hidden width / ``dim``.
    """

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *[SwinLayer(dim, heads, window, shift=(i % 2) * (window // 2), mlp_ratio=mlp_ratio) for i in range(depth)]
        )
        self.conv = conv3x3(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        y = self.layers(x.permute(0, 2, 3, 1))  # (B, H, W, C) tokens
        return x + self.conv(y.permute(0, 3, 1, 2))


class SwinIR(ResidualSR):
    """Light SwinIR; ``ref`` is ignored.

    Args:
        scale: upsampling factor.
        n_feats: token width (divisible by ``heads``).
        n_groups: RSTBs.
        depth: Swin layers per RSTB.
        heads: attention heads.
        window: window side (LR inputs are padded to a multiple of it).
        mlp_ratio: MLP hidden width / ``n_feats``.
    """

    def __init__(
        self,
        scale: int,
        n_feats: int = 64,
        n_groups: int = 4,
        depth: int = 4,
        heads: int = 4,
        window: int = 8,
        mlp_ratio: float = 2.0,
    ) -> None:
        super().__init__(scale)
        if n_feats % heads:
            raise FasrError(f"swinir: model.n_feats={n_feats} must be a multiple of its {heads} attention heads")
        self.window = window
        self.head = conv3x3(1, n_feats)
        self.groups = nn.Sequential(
            *[ResidualSwinGroup(n_feats, depth, heads, window, mlp_ratio) for _ in range(n_groups)]
        )
        self.norm = nn.LayerNorm(n_feats)
        self.body_conv = conv3x3(n_feats, n_feats)
        for m in self.groups.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        # Lightweight SwinIR's one-step reconstruction: (B, C, h, w) -> (B, s^2, h, w) -> (B, 1, h*s, w*s).
        self.upsampler = nn.Sequential(zero_(conv3x3(n_feats, scale * scale)), nn.PixelShuffle(scale))

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        h, w = lr.shape[-2:]
        pad_h, pad_w = -h % self.window, -w % self.window
        x = self.head(F.pad(lr, (0, pad_w, 0, pad_h), mode="replicate"))  # (B, C, h', w'), multiples of window
        deep = self.norm(self.groups(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # LN over channels
        x = x + self.body_conv(deep)  # long skip
        return self.upsampler(x)[..., : h * self.scale, : w * self.scale]


def from_config(cfg: ModelConfig) -> SwinIR:
    """Build the light SwinIR from ``cfg.scale`` and ``cfg.n_feats``."""
    return SwinIR(scale=cfg.scale, n_feats=cfg.n_feats)
