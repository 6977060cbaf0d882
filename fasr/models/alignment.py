"""Flexible Alignment (Section III-C): Single-Multi (S-A, Eqs. 7-13) and Multi-Multi (M-A, Eqs. 14-16)
pyramid alignment, plus one-level cross-attention (TTSR, the paper's "w/o FA").

Every alignment module implements :class:`AlignmentModule`: it declares the grids of Q/K it matches on and of V
it transfers, takes the texture features Q (of I_LR-up), K (of I_Ref-down-up) and V (of I_Ref) by grid (see
:mod:`fasr.models.extractor`), and returns an :class:`AlignmentResult`: for each transfer grid the aligned
reference texture (hard attention) and the soft-attention map on the 1/4 grid (Eqs. 18-19). It also gives the
correspondence loss of its matching (ours, :mod:`fasr.models.correspondence`). A new module is one class here and
one line in :data:`ALIGNMENTS`.

Choices of ours (``docs/architecture.md``): features are centred per image and channel before matching (ReLU
features are non-negative, so raw patch vectors are nearly parallel and every cosine is close to 1); the S-A word
embedding has no bias (a bias adds the same vector to every patch); matching always runs in fp32, also under
autocast (bf16 rounding changes about half of the argmax indices).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.models.correspondence import MatchTarget, correspondence_nce
from fasr.models.grids import QUERY_GRID, TRANSFER_GRIDS, Grid
from fasr.models.matching import (
    MatchLevel,
    SearchWindow,
    blocked_match,
    matched_score,
    parent_index,
    patch_level,
    softmax_score,
)
from fasr.models.transfer import transfer_patches

__all__ = [
    "AlignmentResult",
    "AlignmentModule",
    "AlignmentSettings",
    "Matcher",
    "SingleMultiAlignment",
    "MultiMultiAlignment",
    "ALIGNMENTS",
    "ALIGNMENT_CHOICES",
]


class AlignmentResult(NamedTuple):
    """``features[grid]``: (B, C_grid, H_grid, W_grid) aligned texture; ``score[grid]``: (B, 1, Hq, Wq) soft
    attention on the 1/4 grid for the texture at that grid; ``index``: (B, Nq) long, the 1/4-grid key cell
    matched to each query (diagnostics: matching accuracy); ``match_loss``: the correspondence loss when the
    forward pass was given the true keys (training), else None."""

    features: dict[str, Tensor]
    score: dict[str, Tensor]
    index: Tensor
    match_loss: Tensor | None = None


@dataclass(frozen=True)
class Matcher:
    """How the alignment modules match: hard index (Eqs. 11, 16) and soft-attention value (Eqs. 18-19).

    Attributes:
        attention_score: ``cosine`` (max cosine, the authors' code) or ``softmax`` (max softmax probability).
        temperature: softmax temperature.
        match_memory_mib: byte budget of one correlation block.
        search_window: match within this many 1/4-grid cells of the query (0 = the whole image).
    """

    attention_score: str = "cosine"
    temperature: float = 0.05
    match_memory_mib: float = 128.0
    search_window: int = 0

    def __post_init__(self) -> None:
        if self.search_window and self.attention_score == "softmax":
            raise ValueError("search_window needs attention_score 'cosine' (the softmax is over all keys); "
                             "set model.search_window=0 for attention_score 'softmax'")

    def __call__(
        self, levels: list[MatchLevel], q_grid: tuple[int, int], k_grid: tuple[int, int]
    ) -> tuple[Tensor, Tensor]:
        """Returns (index (B, Nq) long, score (B, Nq)) with the score differentiable."""
        window = SearchWindow(q_grid, k_grid, self.search_window) if self.search_window else None
        best = blocked_match(levels, self.match_memory_mib, window=window)  # Eqs. 11 / 16
        if self.attention_score == "softmax":
            return best.index, softmax_score(levels, best.index, self.temperature, self.match_memory_mib)
        if not torch.is_grad_enabled():  # inference: the blocked maximum is the score (no recomputation)
            return best.index, best.score
        return best.index, matched_score(levels, best.index)

    def nce(self, levels: list[MatchLevel], target: MatchTarget, temperature: float) -> Tensor:
        """Correspondence InfoNCE of these levels (ours), memory-bounded like the match."""
        return correspondence_nce(levels, target, temperature, self.match_memory_mib)


@dataclass(frozen=True)
class AlignmentSettings:
    """Everything an alignment module may be built from (each module takes what it needs).

    Attributes:
        channels: feature channels per grid.
        embed_dim: S-A word-embedding width (Eqs. 7-8).
        sa_key_stride: S-A key sampling on the finer grids: ``coarse`` (one key per 1/4-grid cell, at the cell
            centre) or ``1`` (every position).
        ma_pyramid: ``pooled`` or ``deep`` M-A pyramid.
        matcher: matching settings shared by all modules.
    """

    channels: dict[str, int]
    embed_dim: int = 64
    sa_key_stride: str = "coarse"
    ma_pyramid: str = "pooled"
    matcher: Matcher = field(default_factory=Matcher)


@contextmanager
def _fp32(x: Tensor):
    """Autocast off: matching in fp32 whatever the surrounding precision."""
    with torch.autocast(device_type=x.device.type, enabled=False):
        yield


def _centred(x: Tensor) -> Tensor:
    """(B, C, H, W) features minus their per-image, per-channel mean, in fp32 (ours, see module doc)."""
    x = x.float()
    return x - x.mean(dim=(2, 3), keepdim=True)


def _query_grid(b: int, hq: int, wq: int, device) -> tuple[Tensor, Tensor]:
    """(B, Nq) row and column of every query on the 1/4 grid."""
    i = torch.arange(hq * wq, device=device)
    return (i // wq).expand(b, -1), (i % wq).expand(b, -1)


def _transfer(v: Tensor, ky: Tensor, kx: Tensor, f: int, hq: int, wq: int) -> Tensor:
    """Eqs. 12 / 16: the (3f x 3f) window of ``v`` whose top-left is (ky, kx) (B, Nq) for each query cell."""
    b = ky.shape[0]
    qy, qx = _query_grid(b, hq, wq, ky.device)
    disp = torch.stack([ky - f * qy, kx - f * qx], dim=1).reshape(b, 2, hq, wq)  # (B, 2, Nq) -> (B, 2, Hq, Wq)
    return transfer_patches(v, disp, f)


class AlignmentModule(nn.Module):
    """Interface of an alignment module.

    Attributes:
        qk_grids: grids of Q and K the module matches on.
        v_grids: grids of V it transfers (always :data:`TRANSFER_GRIDS`).
    """

    qk_grids: tuple[Grid, ...]
    v_grids: ClassVar[tuple[Grid, ...]] = TRANSFER_GRIDS

    @classmethod
    def from_settings(cls, settings: AlignmentSettings) -> AlignmentModule:
        raise NotImplementedError

    def forward(
        self, q: dict[str, Tensor], k: dict[str, Tensor], v: dict[str, Tensor],
        match: MatchTarget | None = None, temperature: float = 0.07,
    ) -> AlignmentResult:
        """Align V to the queries; with ``match`` (the true keys, training) the result also carries the
        correspondence loss, computed from the same embeddings/correlation terms as the matching."""
        raise NotImplementedError

    def correspondence_loss(self, q: dict[str, Tensor], k: dict[str, Tensor], target: MatchTarget, t: float) -> Tensor:
        """InfoNCE of the true keys ``target`` (on the 1/4 grid) under this module's matching, temperature t
        (matching alone, without V: the extractor pretraining)."""
        raise NotImplementedError


class SingleMultiAlignment(AlignmentModule):
    """S-A: one query scale (1/4 grid) against keys at several scales (Eqs. 7-13, Fig. 4).

    The word embedding F_WE (unfold 3x3 + linear, Eqs. 7-8) is the equivalent 3x3 convolution (no bias, ours)
    into ``embed_dim`` channels, on centred features. For key grid ``g`` (f of its pixels per 1/4-grid cell),
    query i is compared with embedded 3x3 patches of K^g, so a key covers 1/f of the query's footprint (the
    "different scale" of Fig. 1(a)). ``coarse`` keys are evaluated at the centre pixel of every 1/4-grid cell
    (Nk = Nq per grid; ours, 1/f^2 of the work of every position); ``1`` evaluates every position of grid g.
    Each grid uses its own index (Eq. 12 as written): the (3f x 3f) window of V^g centred on the matched key is
    transferred.

    Args:
        channels: feature channels per grid.
        embed_dim: width of the embedded patch vectors.
        key_stride: ``"coarse"`` or ``"1"``.
        matcher: matching settings.
    """

    qk_grids = TRANSFER_GRIDS

    def __init__(self, channels: dict[str, int], embed_dim: int, key_stride: str, matcher: Matcher) -> None:
        super().__init__()
        if key_stride not in ("coarse", "1"):
            raise ValueError(f"sa_key_stride must be 'coarse' or '1', got {key_stride!r}")
        self.embed_q = nn.Conv2d(channels[QUERY_GRID], embed_dim, 3, padding=1, bias=False)  # Eq. 7
        self.embed_k = nn.ModuleDict(  # Eq. 8, one per key grid (keys "g1_4", ...: no "/" in module names)
            {_key(g): nn.Conv2d(channels[g], embed_dim, 3, padding=1, bias=False) for g in TRANSFER_GRIDS}
        )
        self.key_stride, self.matcher = key_stride, matcher

    @classmethod
    def from_settings(cls, settings: AlignmentSettings) -> SingleMultiAlignment:
        return cls(settings.channels, settings.embed_dim, settings.sa_key_stride, settings.matcher)

    def _key_stride(self, f: int) -> tuple[int, int]:
        """(stride, first position) of the keys on a grid with f pixels per 1/4-grid cell."""
        return (f, f // 2) if self.key_stride == "coarse" else (1, 0)

    def _embed(self, q: dict[str, Tensor], k: dict[str, Tensor]) -> tuple[Tensor, dict[Grid, tuple[Tensor, int]]]:
        """Embedded queries (B, Nq, d) and, per key grid, (embedded keys (B, Nk, d), key-grid width Wk)."""
        hq, wq = q[QUERY_GRID].shape[-2:]
        eq = F.conv2d(_centred(q[QUERY_GRID]), self.embed_q.weight.float(), padding=1)  # (B, d, Hq, Wq)
        eq = F.normalize(eq, dim=1)
        keys = {}
        for grid in TRANSFER_GRIDS:
            f = grid.cells_per(QUERY_GRID)
            stride, start = self._key_stride(f)
            weight = self.embed_k[_key(grid)].weight.float()
            ek = F.conv2d(_centred(k[grid])[..., start:, start:], weight, stride=stride, padding=1)
            ek = ek[..., : hq * f // stride, : wq * f // stride]  # (B, d, Hk, Wk)
            keys[grid] = (F.normalize(ek, dim=1).flatten(2).transpose(1, 2), ek.shape[-1])  # (B, Nk, d)
        return eq.flatten(2).transpose(1, 2), keys  # (B, d, Hq, Wq) -> (B, Nq, d)

    def forward(
        self, q: dict[str, Tensor], k: dict[str, Tensor], v: dict[str, Tensor],
        match: MatchTarget | None = None, temperature: float = 0.07,
    ) -> AlignmentResult:
        b, _, hq, wq = q[QUERY_GRID].shape
        features, score, cells = {}, {}, None
        with _fp32(q[QUERY_GRID]):
            eq, keys = self._embed(q, k)
            loss = None if match is None else self._nce(eq, keys, wq, match, temperature)
            for grid, (ek, wk) in keys.items():
                f = grid.cells_per(QUERY_GRID)
                index, s = self.matcher([MatchLevel(eq, ek)], (hq, wq), (ek.shape[1] // wk, wk))  # Eqs. 10-11, 18
                stride, start = self._key_stride(f)
                ky, kx = stride * (index // wk) + start, stride * (index % wk) + start  # key centre on grid g
                features[grid] = _transfer(v[grid], ky - f // 2, kx - f // 2, f, hq, wq)  # Eq. 12
                score[grid] = s.reshape(b, 1, hq, wq)
                if grid == QUERY_GRID:
                    cells = index
        return AlignmentResult(features, score, cells, loss)

    def correspondence_loss(self, q: dict[str, Tensor], k: dict[str, Tensor], target: MatchTarget, t: float) -> Tensor:
        with _fp32(q[QUERY_GRID]):
            return self._nce(*self._embed(q, k), q[QUERY_GRID].shape[-1], target, t)

    def _nce(self, eq: Tensor, keys: dict[Grid, tuple[Tensor, int]], wq: int, target: MatchTarget, t: float) -> Tensor:
        """Mean over the key grids of the InfoNCE of the key nearest each true 1/4-grid key cell."""
        losses = []
        for grid, (ek, wk) in keys.items():
            f = grid.cells_per(QUERY_GRID)
            stride, start = self._key_stride(f)
            ty, tx = target.index // wq, target.index % wq  # true key cell on the 1/4 grid
            index = ((f * ty + f // 2 - start) // stride) * wk + (f * tx + f // 2 - start) // stride
            losses.append(self.matcher.nce([MatchLevel(eq, ek)], target._replace(index=index), t))
        return torch.stack(losses).mean()


def _key(grid: str) -> str:
    return "g" + grid.replace("/", "_")


class MultiMultiAlignment(AlignmentModule):
    """M-A: same-scale correlations at several pyramid levels, summed on the 1/4 grid (Eqs. 14-16, Fig. 5).

    Level 1/4 correlates 3x3 patches of centred Q/K (cosine). The coarser levels correlate 3x3 patches of
    coarser features -- ``pooled``: Q/K average-pooled by 2 and 4, i.e. 6x6 and 12x12 receptive fields on the
    same features (cheap); ``deep``: the backbone's 1/8 and 1/16 features (relu4/relu5, the authors' code).
    The coarse correlations are upsampled geometrically (pair (i, j) scores the parents of i and j) and averaged
    (Eq. 15 up to the constant 1/L, which keeps the score in [-1, 1]); one softmax/argmax is taken over the sum
    (not a softmax per level before the sum). One index per query then transfers V at all three grids
    (Eq. 16). With ``levels=("1/4",)`` this is TTSR's one-level cross-attention.

    Args:
        levels: pyramid grids to correlate, finest first.
        pyramid: ``pooled`` or ``deep``.
        matcher: matching settings.
    """

    def __init__(self, levels: tuple[str, ...], pyramid: str, matcher: Matcher) -> None:
        super().__init__()
        self.levels = tuple(Grid(g) for g in levels)
        self.pyramid, self.matcher = pyramid, matcher
        self.qk_grids = self.levels if pyramid == "deep" else (QUERY_GRID,)

    @classmethod
    def from_settings(cls, settings: AlignmentSettings) -> MultiMultiAlignment:
        return cls(("1/4", "1/8", "1/16"), settings.ma_pyramid, settings.matcher)

    def _level_features(self, feats: dict[str, Tensor], grid: Grid) -> Tensor:
        if grid == QUERY_GRID or self.pyramid == "deep":
            return _centred(feats[grid])
        return F.avg_pool2d(_centred(feats[QUERY_GRID]), QUERY_GRID.cells_per(grid), ceil_mode=True)

    def _correlation(self, q: dict[str, Tensor], k: dict[str, Tensor]) -> list[MatchLevel]:
        """The terms of Eq. 15 (each level's cosine weighted by 1/L)."""
        hq, wq = q[QUERY_GRID].shape[-2:]
        terms = []
        for grid in self.levels:
            ql, kl = self._level_features(q, grid), self._level_features(k, grid)
            parent, ratio = None, QUERY_GRID.cells_per(grid)
            if grid != QUERY_GRID:
                parent = parent_index((hq, wq), tuple(ql.shape[-2:]), ratio, device=ql.device)
            terms.append(patch_level(ql, kl, weight=1.0 / len(self.levels), q_parent=parent, k_parent=parent,
                                     ratio=ratio))  # Eq. 14
        return terms

    def forward(
        self, q: dict[str, Tensor], k: dict[str, Tensor], v: dict[str, Tensor],
        match: MatchTarget | None = None, temperature: float = 0.07,
    ) -> AlignmentResult:
        b, _, hq, wq = q[QUERY_GRID].shape
        with _fp32(q[QUERY_GRID]):
            levels = self._correlation(q, k)
            index, s = self.matcher(levels, (hq, wq), (hq, wq))  # Eq. 16 index, Eq. 19 score
            loss = None if match is None else self.matcher.nce(levels, match, temperature)
        ky, kx = index // wq, index % wq
        features = {g: _transfer(v[g], g.cells_per(QUERY_GRID) * ky, g.cells_per(QUERY_GRID) * kx,
                                 g.cells_per(QUERY_GRID), hq, wq) for g in self.v_grids}
        s = s.reshape(b, 1, hq, wq)
        return AlignmentResult(features, {g: s for g in self.v_grids}, index, loss)

    def correspondence_loss(self, q: dict[str, Tensor], k: dict[str, Tensor], target: MatchTarget, t: float) -> Tensor:
        with _fp32(q[QUERY_GRID]):
            return self.matcher.nce(self._correlation(q, k), target, t)


class CrossAttention(MultiMultiAlignment):
    """One-level M-A on the 1/4 grid: TTSR's hard/soft attention (the paper's "w/o FA")."""

    @classmethod
    def from_settings(cls, settings: AlignmentSettings) -> CrossAttention:
        return cls(("1/4",), "pooled", settings.matcher)


# name -> module class; ``model.alignment`` picks a combination from ALIGNMENT_CHOICES.
ALIGNMENTS: dict[str, type[AlignmentModule]] = {
    "ma": MultiMultiAlignment,
    "sa": SingleMultiAlignment,
    "cross_attention": CrossAttention,
}
ALIGNMENT_CHOICES: dict[str, tuple[str, ...]] = {
    "both": ("ma", "sa"),
    "ma": ("ma",),
    "sa": ("sa",),
    "cross_attention": ("cross_attention",),
}
