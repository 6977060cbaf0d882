"""Flexible Alignment (Section III-C): Single-Multi (S-A, Eqs. 7-13) and Multi-Multi (M-A, Eqs. 14-16)
pyramid alignment, plus one-level cross-attention (TTSR, the paper's "w/o FA").

Both modules take the texture features Q (of I_LR-up), K (of I_Ref-down-up) and V (of I_Ref) by grid (see
:mod:`fasr.models.extractor`) and return, for each transfer grid ("1/4", "1/2", "1"), the aligned reference
texture (the hard-attention transfer) and the soft-attention map on the 1/4 grid (Eqs. 18-19).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.models.matching import (
    MatchLevel,
    SearchWindow,
    blocked_match,
    matched_score,
    parent_index,
    patch_vectors,
    softmax_score,
)
from fasr.models.transfer import transfer_patches

__all__ = ["AlignmentResult", "Matcher", "SingleMultiAlignment", "MultiMultiAlignment", "TRANSFER_GRIDS"]

# Transfer grids and their size in pixels per 1/4-grid cell.
TRANSFER_GRIDS: dict[str, int] = {"1/4": 1, "1/2": 2, "1": 4}


class AlignmentResult(NamedTuple):
    """``features[grid]``: (B, C_grid, H_grid, W_grid) aligned texture; ``score[grid]``: (B, 1, Hq, Wq) soft
    attention on the 1/4 grid for the texture at that grid."""

    features: dict[str, Tensor]
    score: dict[str, Tensor]


@dataclass(frozen=True)
class Matcher:
    """How both alignment modules match: hard index (Eqs. 11, 16) and soft-attention value (Eqs. 18-19).

    Attributes:
        attention_score: ``cosine`` (max cosine, the authors' code) or ``softmax`` (max softmax probability).
        temperature: softmax temperature.
        budget_mib: byte budget of one correlation block.
        search_window: match within this many 1/4-grid cells of the query (0 = the whole image).
    """

    attention_score: str = "cosine"
    temperature: float = 0.05
    budget_mib: float = 128.0
    search_window: int = 0

    def __post_init__(self) -> None:
        if self.search_window and self.attention_score == "softmax":
            raise ValueError("search_window needs attention_score 'cosine' (the softmax is over all keys)")

    def __call__(
        self, levels: list[MatchLevel], q_grid: tuple[int, int], k_grid: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Returns (index (B, Nq) long, score (B, Nq)) with the score differentiable."""
        window = SearchWindow(q_grid, k_grid, self.search_window) if self.search_window else None
        index = blocked_match(levels, self.budget_mib, window=window).index  # Eqs. 11 / 16 (softmax keeps argmax)
        if self.attention_score == "softmax":
            return index, softmax_score(levels, index, self.temperature, self.budget_mib)
        return index, matched_score(levels, index)


def _query_grid(b: int, hq: int, wq: int, device) -> tuple[Tensor, Tensor]:
    """(B, Nq) row and column of every query on the 1/4 grid."""
    i = torch.arange(hq * wq, device=device)
    return (i // wq).expand(b, -1), (i % wq).expand(b, -1)


def _displacement(ky: Tensor, kx: Tensor, qy: Tensor, qx: Tensor, factor: int, hq: int, wq: int) -> Tensor:
    """(B, 2, Hq, Wq) offset from each query's window (top-left ``factor * q``) to its key at (ky, kx)."""
    d = torch.stack([ky - factor * qy, kx - factor * qx], dim=1)  # (B, 2, Nq)
    return d.reshape(d.shape[0], 2, hq, wq)


class SingleMultiAlignment(nn.Module):
    """S-A: one query scale (1/4 grid) against keys at several scales (Eqs. 7-13, Fig. 4).

    The word embedding F_WE (unfold 3x3 + linear, Eqs. 7-8) is implemented as the equivalent 3x3 convolution
    into ``embed_dim`` channels, evaluated only at the sampled key positions (strided convolution). For the key
    grid ``g`` (factor f), each query is matched against K^g's embedded 3x3 patches sampled every ``stride``
    pixels (``coarse``: stride f, one key per 1/4-grid cell; ``1``: every pixel, as the authors' code), and the
    (3f x 3f) window of V^g at the matched key is transferred (Eq. 12, each scale with its own index).

    Args:
        channels: feature channels per grid.
        embed_dim: width of the embedded patch vectors.
        key_stride: ``"coarse"`` or an integer stride for the finer key grids.
        matcher: matching settings shared with M-A.
    """

    def __init__(
        self,
        channels: dict[str, int],
        embed_dim: int = 64,
        key_stride: str | int = "coarse",
        matcher: Matcher = Matcher(),
    ) -> None:
        super().__init__()
        self.embed_q = nn.Conv2d(channels["1/4"], embed_dim, 3, padding=1)  # Eq. 7
        self.embed_k = nn.ModuleDict(  # Eq. 8, one per key grid (keys "g1_4", ...: no "/" in module names)
            {_key(g): nn.Conv2d(channels[g], embed_dim, 3, padding=1) for g in TRANSFER_GRIDS}
        )
        self.key_stride = key_stride
        self.matcher = matcher

    def forward(self, q_feats: dict[str, Tensor], k_feats: dict[str, Tensor], v_feats: dict[str, Tensor]) -> AlignmentResult:
        b, _, hq, wq = q_feats["1/4"].shape
        q = F.normalize(self.embed_q(q_feats["1/4"]), dim=1)  # (B, d, Hq, Wq)
        q = q.flatten(2).transpose(1, 2)  # (B, Nq, d)
        qy, qx = _query_grid(b, hq, wq, q.device)
        features, score = {}, {}
        for grid, factor in TRANSFER_GRIDS.items():
            stride = factor if self.key_stride == "coarse" else int(self.key_stride)
            conv = self.embed_k[_key(grid)]
            k = F.conv2d(k_feats[grid], conv.weight, conv.bias, stride=stride, padding=1)  # (B, d, Hk, Wk)
            hk, wk = k.shape[-2:]
            k = F.normalize(k, dim=1).flatten(2).transpose(1, 2)  # (B, Nk, d)
            index, s = self.matcher([MatchLevel(q, k)], (hq, wq), (hk, wk))  # Eqs. 10-11, 18
            ky, kx = stride * (index // wk), stride * (index % wk)  # matched key position on grid g
            disp = _displacement(ky, kx, qy, qx, factor, hq, wq)
            features[grid] = transfer_patches(v_feats[grid], disp, factor)  # Eq. 12
            score[grid] = s.reshape(b, 1, hq, wq)
        return AlignmentResult(features, score)


def _key(grid: str) -> str:
    return "g" + grid.replace("/", "_")


class MultiMultiAlignment(nn.Module):
    """M-A: same-scale correlations at several pyramid levels, summed on the 1/4 grid (Eqs. 14-16, Fig. 5).

    Level 1/4 correlates 3x3 patches of Q/K (L2-normalised). The coarser levels correlate 3x3 patches of
    coarser features -- ``pooled``: Q/K average-pooled by 2 and 4, i.e. 6x6 and 12x12 receptive fields on the
    same features (cheap); ``deep``: the backbone's 1/8 and 1/16 features (relu4/relu5, the authors' code).
    The coarse correlations are upsampled geometrically (pair (i, j) scores the parents of i and j) and averaged
    (Eq. 15 up to the constant 1/L, which keeps the score in [-1, 1]). One index per query then transfers
    V at all three grids (Eq. 16). With ``levels=("1/4",)`` this is TTSR's one-level cross-attention.

    Args:
        levels: pyramid grids to correlate, finest first.
        pyramid: ``pooled`` or ``deep``.
        matcher: matching settings shared with S-A.
    """

    def __init__(
        self,
        levels: tuple[str, ...] = ("1/4", "1/8", "1/16"),
        pyramid: str = "pooled",
        matcher: Matcher = Matcher(),
    ) -> None:
        super().__init__()
        self.levels = levels
        self.pyramid = pyramid
        self.matcher = matcher

    def _level_features(self, feats: dict[str, Tensor], grid: str) -> Tensor:
        if grid == "1/4" or self.pyramid == "deep":
            return feats[grid]
        ratio = {"1/8": 2, "1/16": 4}[grid]
        return F.avg_pool2d(feats["1/4"], ratio, ceil_mode=True)

    def forward(self, q_feats: dict[str, Tensor], k_feats: dict[str, Tensor], v_feats: dict[str, Tensor]) -> AlignmentResult:
        b, _, hq, wq = q_feats["1/4"].shape
        weight = 1.0 / len(self.levels)
        terms = []
        for grid in self.levels:
            ql, kl = self._level_features(q_feats, grid), self._level_features(k_feats, grid)
            parent = None
            if grid != "1/4":
                ratio = {"1/8": 2, "1/16": 4}[grid]
                parent = parent_index((hq, wq), tuple(ql.shape[-2:]), ratio, device=ql.device)
            # Eq. 14 per level; the 1/L weight folded into the queries makes the sum an average (Eq. 15).
            terms.append(MatchLevel(patch_vectors(ql) * weight, patch_vectors(kl), parent, parent))
        index, s = self.matcher(terms, (hq, wq), (hq, wq))  # Eq. 16 index, Eq. 19 score
        qy, qx = _query_grid(b, hq, wq, index.device)
        ky, kx = index // wq, index % wq
        features = {
            grid: transfer_patches(v_feats[grid], _displacement(f * ky, f * kx, qy, qx, f, hq, wq), f)
            for grid, f in TRANSFER_GRIDS.items()
        }
        s = s.reshape(b, 1, hq, wq)
        return AlignmentResult(features, {grid: s for grid in TRANSFER_GRIDS})
