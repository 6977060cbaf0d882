"""Cross-Hierarchical Progressive Fusion (CHPF, Section III-D, Eqs. 17-21, Fig. 6) and the plain decoder
used for the "w/o CHPF" ablation (Table III).

The trunk starts on the 1/4 grid and grows to 1/2 and full resolution. At each grid the aligned texture
F_in (Eq. 17: concatenated M-A and S-A outputs) is injected and modulated by the soft attention S (Eq. 21):
``x <- x + conv([x, F_in]) * S``. CHPF additionally exchanges information between all branches after each
growth step with a "fully-connected" layer (every branch resampled to every grid, merged by a 1x1 conv), and
finally merges the three branches; the decoder only grows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResBlock", "TextureInjection", "ProgressiveFusion"]

GRIDS = ("1/4", "1/2", "1")


class ResBlock(nn.Module):
    """conv-ReLU-conv with identity skip (EDSR-style, no batch norm)."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, n_feats, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(n_feats, n_feats, 3, padding=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


def _stack(n_feats: int, n: int) -> nn.Sequential:
    return nn.Sequential(*(ResBlock(n_feats) for _ in range(n)))


class TextureInjection(nn.Module):
    """Eq. 21: the trunk takes the aligned texture, weighted per position by the soft attention S.

    Ours, at full resolution only: the aligned reference detail (``model.ref_detail``) and the local linear
    prediction of the missing band (``model.ref_guided``, :mod:`fasr.models.guided`) each enter through their own
    convolution, zero-initialised, added to the texture's before S weights all of them.
    """

    def __init__(self, n_feats: int, tex_channels: int, detail_channels: int = 0, guide_channels: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(n_feats + tex_channels, n_feats, 3, padding=1)
        self.detail = _zero_conv(detail_channels, n_feats)
        self.guide = _zero_conv(guide_channels, n_feats)

    def forward(
        self, x: Tensor, tex: Tensor, s: Tensor, detail: Tensor | None = None, guide: Tensor | None = None
    ) -> Tensor:
        y = self.conv(torch.cat([x, tex], dim=1))
        for name, conv, extra in (("detail", self.detail, detail), ("guide", self.guide, guide)):
            if (conv is None) != (extra is None):
                raise ValueError(f"pass the {name} input exactly when the injection was built with {name} channels")
            if conv is not None:
                y = y + conv(extra)
        return x + y * s


def _zero_conv(c_in: int, c_out: int) -> nn.Conv2d | None:
    """A bias-free 3x3 convolution starting at zero (a grown input adds nothing until trained), or None."""
    if not c_in:
        return None
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    nn.init.zeros_(conv.weight)
    return conv


class _Exchange(nn.Module):
    """Fully-connected cross-hierarchical layer: branch k <- 1x1 conv over all branches resampled to grid k."""

    def __init__(self, n_feats: int, n_branches: int) -> None:
        super().__init__()
        self.merge = nn.ModuleList(nn.Conv2d(n_feats * n_branches, n_feats, 1) for _ in range(n_branches))

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        out = []
        for k, merge in enumerate(self.merge):
            size = xs[k].shape[-2:]
            # Finer branches are area-averaged down, coarser ones bilinearly stretched up.
            resampled = [
                x if x.shape[-2:] == size else
                F.interpolate(x, size=size, mode="area" if x.shape[-1] > size[-1] else "bilinear")
                for x in xs
            ]
            out.append(xs[k] + F.relu(merge(torch.cat(resampled, dim=1))))
        return out


class _Up2(nn.Module):
    """x2 growth by sub-pixel convolution."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2), nn.ReLU(inplace=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class ProgressiveFusion(nn.Module):
    """CHPF (``cross_hierarchical=True``) or the plain decoder (``False``).

    Args:
        n_feats: trunk channels.
        tex_channels: aligned-texture channels per grid (``"1/4"``, ``"1/2"``, ``"1"``).
        n_blocks: residual blocks per branch in the stages that end at 1/4, 1/2 and full resolution.
        cross_hierarchical: exchange between branches and merge them (CHPF) or not (decoder).
        detail_channels: channels of the aligned reference detail injected at full resolution (0 = none; ours).
        guide_channels: channels of the local linear detail injected at full resolution (0 = none; ours).
    """

    def __init__(
        self,
        n_feats: int,
        tex_channels: dict[str, int],
        n_blocks: tuple[int, int, int] = (8, 4, 2),
        cross_hierarchical: bool = True,
        detail_channels: int = 0,
        guide_channels: int = 0,
    ) -> None:
        super().__init__()
        self.cross = cross_hierarchical
        self.inject = nn.ModuleList(
            TextureInjection(n_feats, tex_channels[g], *((detail_channels, guide_channels) if g == "1" else (0, 0)))
            for g in GRIDS
        )
        self.up = nn.ModuleList(_Up2(n_feats) for _ in GRIDS[1:])
        # Stage s runs n_blocks[s] blocks on each live branch: CHPF keeps s + 1 branches, the decoder one.
        self.blocks = nn.ModuleList(
            nn.ModuleList(_stack(n_feats, n) for _ in range(s + 1 if self.cross else 1))
            for s, n in enumerate(n_blocks)
        )
        if self.cross:
            self.exchange = nn.ModuleList(_Exchange(n_feats, n) for n in (2, 3))
            self.merge = nn.Conv2d(3 * n_feats, n_feats, 1)

    def forward(
        self, x: Tensor, tex: dict[str, Tensor], s: dict[str, Tensor], detail: Tensor | None = None,
        guide: Tensor | None = None,
    ) -> Tensor:
        """Fuse.

        Args:
            x: (B, n_feats, Hq, Wq) trunk features on the 1/4 grid.
            tex: F_in per grid, (B, C_g, Hq * f, Wq * f).
            s: soft attention per grid, (B, 1, Hq * f, Wq * f).
            detail: (B, detail_channels, 4 Hq, 4 Wq) aligned reference detail, when built with it.
            guide: (B, guide_channels, 4 Hq, 4 Wq) local linear detail, when built with it.

        Returns:
            (B, n_feats, 4 Hq, 4 Wq) full-resolution features.
        """
        branches = [self.inject[0](x, tex["1/4"], s["1/4"])]
        branches = [blk(b) for blk, b in zip(self.blocks[0], branches)]
        for stage, grid in enumerate(GRIDS[1:], start=1):
            at_full = grid == "1"
            grown = self.inject[stage](self.up[stage - 1](branches[-1]), tex[grid], s[grid],
                                       detail if at_full else None, guide if at_full else None)
            if self.cross:
                branches = self.exchange[stage - 1]([*branches, grown])
            else:
                branches = [grown]
            branches = [blk(b) for blk, b in zip(self.blocks[stage], branches)]
        if not self.cross:
            return branches[0]
        size = branches[-1].shape[-2:]
        full = [F.interpolate(b, size=size, mode="bilinear", align_corners=False) for b in branches[:-1]]
        return F.relu(self.merge(torch.cat([*full, branches[-1]], dim=1)))
