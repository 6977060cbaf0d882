"""Memory-bounded patch matching: the argmax / max of correlation matrices without materialising them.

The alignment modules need, for every query patch i, ``M(i) = argmax_j C(i, j)`` (Eqs. 11, 16) and the
soft-attention value ``S(i) = max_j C(i, j)`` (Eqs. 18-19). ``C`` has (number of queries) x (number of keys)
entries -- 4096 x 65536 at 256x256 for S-A's full-resolution keys -- so it is never built whole: rows and columns
are processed in blocks under a byte budget and only running maxima are kept. The result equals the dense
computation (:func:`dense_match`, used by tests and the benchmark).

A correlation can be a *sum over pyramid levels* (M-A, Eq. 15): level l contributes
``<q_l[a_l(i)], k_l[b_l(j)]>``, where ``a_l`` / ``b_l`` map a fine-grid position to its parent cell on the coarse
grid. This is the geometric reading of "upsample the coarse correlation matrices and add them": pair (i, j) at
the fine grid scores the parents of i and j at each coarser level.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = [
    "MatchLevel",
    "MatchResult",
    "SearchWindow",
    "patch_vectors",
    "patch_level",
    "parent_index",
    "blocked_match",
    "dense_match",
    "matched_score",
    "softmax_score",
]


class MatchLevel(NamedTuple):
    """One term of a (possibly multi-level) correlation.

    Attributes:
        q: (B, Nq_l, D_l) query vectors at this level.
        k: (B, Nk_l, D_l) key vectors at this level.
        q_parent: (Nq,) long, row of ``q`` for each fine-grid query, or None when Nq_l == Nq.
        k_parent: (Nk,) long, row of ``k`` for each fine-grid key, or None when Nk_l == Nk.
    """

    q: Tensor
    k: Tensor
    q_parent: Tensor | None = None
    k_parent: Tensor | None = None


class MatchResult(NamedTuple):
    """``index`` (B, Nq) long: argmax_j C(i, j); ``score`` (B, Nq): max_j C(i, j); ``lse`` (B, Nq) or None:
    logsumexp_j C(i, j) / T (for the softmax score)."""

    index: Tensor
    score: Tensor
    lse: Tensor | None


class SearchWindow(NamedTuple):
    """Restrict each query's keys to a square window around its own position (registered contrasts).

    Attributes:
        q_grid: (Hq, Wq) of the fine query grid (queries are numbered row-major on it).
        k_grid: (Hk, Wk) of the fine key grid; key (y, x) faces query (y * Hq / Hk, x * Wq / Wk).
        radius: half-width of the window in query-grid cells (converted to key cells by the grid ratio).
        tile: query tiles of tile x tile cells are matched against the union of their windows.
    """

    q_grid: tuple[int, int]
    k_grid: tuple[int, int]
    radius: int
    tile: int = 16

    def key_radius(self) -> tuple[int, int]:
        return (math.ceil(self.radius * self.k_grid[0] / self.q_grid[0]),
                math.ceil(self.radius * self.k_grid[1] / self.q_grid[1]))

    def mask(self, q_idx: Tensor, k_idx: Tensor) -> Tensor:
        """(nq, nk) True where key ``k_idx[j]`` lies in the window of query ``q_idx[i]``."""
        (hq, wq), (hk, wk) = self.q_grid, self.k_grid
        ry, rx = self.key_radius()
        cy = (q_idx // wq) * hk // hq  # query position on the key grid
        cx = (q_idx % wq) * wk // wq
        dy = (k_idx // wk)[None, :] - cy[:, None]
        dx = (k_idx % wk)[None, :] - cx[:, None]
        return (dy.abs() <= ry) & (dx.abs() <= rx)

    def tiles(self, device=None):
        """Yield (query indices, candidate key indices) per query tile."""
        (hq, wq), (hk, wk) = self.q_grid, self.k_grid
        ry, rx = self.key_radius()
        for y0 in range(0, hq, self.tile):
            for x0 in range(0, wq, self.tile):
                y1, x1 = min(y0 + self.tile, hq), min(x0 + self.tile, wq)
                qy, qx = torch.arange(y0, y1, device=device), torch.arange(x0, x1, device=device)
                ky = torch.arange(max(0, y0 * hk // hq - ry), min(hk, (y1 - 1) * hk // hq + ry + 1), device=device)
                kx = torch.arange(max(0, x0 * wk // wq - rx), min(wk, (x1 - 1) * wk // wq + rx + 1), device=device)
                yield (qy[:, None] * wq + qx).reshape(-1), (ky[:, None] * wk + kx).reshape(-1)


def patch_vectors(x: Tensor, normalize: bool = True) -> Tensor:
    """Flattened 3x3 patches of a feature map, L2-normalised (cosine correlation, TTSR/FASR).

    Args:
        x: (B, C, H, W) features.
        normalize: divide each patch vector by its L2 norm.

    Returns:
        (B, H*W, C*9) patch vectors, row ``y * W + x``.
    """
    cols = F.unfold(x, kernel_size=3, padding=1)  # (B, C*9, H*W)
    cols = cols.transpose(1, 2)  # (B, H*W, C*9)
    return F.normalize(cols, dim=-1, eps=1e-6) if normalize else cols


def patch_level(
    q_map: Tensor,
    k_map: Tensor,
    *,
    weight: float = 1.0,
    q_parent: Tensor | None = None,
    k_parent: Tensor | None = None,
) -> MatchLevel:
    """A cosine 3x3-patch correlation term: cos(P_q(i), P_k(j)) * weight, patches as ``F.unfold(padding=1)``.

    Args:
        q_map: (B, C, Hq_l, Wq_l) query features at this level.
        k_map: (B, C, Hk_l, Wk_l) key features at this level.
        weight: factor on the whole term (e.g. 1/L for the level average of Eq. 15).
        q_parent: (Nq,) long, cell of ``q_map`` for each fine-grid query (coarse levels), or None.
        k_parent: (Nk,) long, cell of ``k_map`` for each fine-grid key, or None.
    """
    return MatchLevel(patch_vectors(q_map) * weight, patch_vectors(k_map), q_parent, k_parent)


def parent_index(fine_hw: tuple[int, int], coarse_hw: tuple[int, int], ratio: int, device=None) -> Tensor:
    """Row of the parent cell (y // ratio, x // ratio) on a coarse grid for each fine-grid cell.

    Returns:
        (H*W,) long; clamped to the coarse grid (a floor-pooled coarse map may be one cell short).
    """
    h, w = fine_hw
    ch, cw = coarse_hw
    ys = (torch.arange(h, device=device) // ratio).clamp_(max=ch - 1)
    xs = (torch.arange(w, device=device) // ratio).clamp_(max=cw - 1)
    return (ys[:, None] * cw + xs[None, :]).reshape(-1)


def _n_fine(levels: list[MatchLevel], which: str) -> int:
    first = levels[0]
    parent, rows = (first.q_parent, first.q) if which == "q" else (first.k_parent, first.k)
    return rows.shape[1] if parent is None else parent.numel()


def _rows(x: Tensor, parent: Tensor | None, sl: slice | Tensor) -> tuple[Tensor, Tensor | None]:
    """Rows of ``x`` needed for fine indices ``sl`` (a slice or an index tensor): those rows, or the distinct
    parents plus the inverse map (on coarse levels many fine cells share a parent, so only distinct parents
    are multiplied)."""
    if parent is None:
        return x[:, sl], None
    uniq, inv = torch.unique(parent[sl], return_inverse=True)
    return x[:, uniq], inv


def _block_scores(levels: list[MatchLevel], qsl: slice | Tensor, ksl: slice | Tensor) -> Tensor:
    """C[i, j] for the query rows ``qsl`` and key columns ``ksl`` (fine-grid indices): (B, nq, nk)."""
    total: Tensor | None = None
    for lvl in levels:
        q, q_inv = _rows(lvl.q, lvl.q_parent, qsl)
        k, k_inv = _rows(lvl.k, lvl.k_parent, ksl)
        s = q @ k.transpose(1, 2)  # (B, nq', nk') over distinct parents
        if q_inv is not None:
            s = s[:, q_inv]
        if k_inv is not None:
            s = s[:, :, k_inv]  # (B, nq, nk)
        total = s if total is None else total + s
    assert total is not None
    return total


def _block_sizes(n_q: int, n_k: int, n_levels: int, budget_bytes: int) -> tuple[int, int]:
    """Rows and columns per block so that the block's score matrices stay within ``budget_bytes``."""
    elems = max(1, budget_bytes // (4 * (n_levels + 1)))  # one fp32 matrix per level plus the running sum
    if n_k <= elems:
        return max(1, min(n_q, elems // n_k)), n_k
    rows = min(n_q, 64)
    return rows, max(1, elems // rows)


@torch.no_grad()
def blocked_match(
    levels: list[MatchLevel],
    budget_mib: float = 128.0,
    temperature: float | None = None,
    window: SearchWindow | None = None,
) -> MatchResult:
    """argmax / max (and optionally logsumexp / T) over keys of a correlation, computed block by block.

    Args:
        levels: the terms of the correlation (one for a plain cross-attention).
        budget_mib: upper bound for the block's score matrices, in MiB.
        temperature: when given, also accumulate the row-wise logsumexp of C / T.
        window: only keys inside each query's window compete (exact within the window); None = all keys.
    """
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    batch, device = levels[0].q.shape[0], levels[0].q.device
    if window is not None:
        return _windowed_match(levels, window, temperature, (batch, n_q), device)
    rows, cols = _block_sizes(n_q, n_k, len(levels), int(budget_mib * 2**20))
    best = torch.full((batch, n_q), -math.inf, device=device)
    index = torch.zeros((batch, n_q), dtype=torch.long, device=device)
    lse = torch.full((batch, n_q), -math.inf, device=device) if temperature else None
    for q0 in range(0, n_q, rows):
        qsl = slice(q0, min(q0 + rows, n_q))
        for k0 in range(0, n_k, cols):
            ksl = slice(k0, min(k0 + cols, n_k))
            s = _block_scores(levels, qsl, ksl).float()  # (B, nq, nk)
            blk_best, blk_arg = s.max(dim=-1)
            better = blk_best > best[:, qsl]  # strict: ties keep the earlier key, like a dense argmax
            best[:, qsl] = torch.where(better, blk_best, best[:, qsl])
            index[:, qsl] = torch.where(better, blk_arg + k0, index[:, qsl])
            if lse is not None:
                lse[:, qsl] = torch.logaddexp(lse[:, qsl], torch.logsumexp(s / temperature, dim=-1))
    return MatchResult(index, best, lse)


def _windowed_match(
    levels: list[MatchLevel], window: SearchWindow, temperature: float | None, shape: tuple[int, int], device
) -> MatchResult:
    """Tile by tile: each query tile against the keys of its windows, the rest of each row masked out."""
    best = torch.full(shape, -math.inf, device=device)
    index = torch.zeros(shape, dtype=torch.long, device=device)
    lse = torch.full(shape, -math.inf, device=device) if temperature else None
    for q_idx, k_idx in window.tiles(device):
        s = _block_scores(levels, q_idx, k_idx).float()  # (B, nq, nk)
        s = s.masked_fill(~window.mask(q_idx, k_idx), -math.inf)
        best[:, q_idx], arg = s.max(dim=-1)
        index[:, q_idx] = k_idx[arg]
        if lse is not None:
            lse[:, q_idx] = torch.logsumexp(s / temperature, dim=-1)
    return MatchResult(index, best, lse)


@torch.no_grad()
def dense_match(
    levels: list[MatchLevel], temperature: float | None = None, window: SearchWindow | None = None
) -> MatchResult:
    """Reference: build the whole correlation matrix (what the authors' code does). Tests and benchmarks only."""
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    c = _block_scores(levels, slice(0, n_q), slice(0, n_k)).float()  # (B, Nq, Nk)
    if window is not None:
        c = c.masked_fill(~window.mask(torch.arange(n_q), torch.arange(n_k)), -math.inf)
    best, index = c.max(dim=-1)
    lse = torch.logsumexp(c / temperature, dim=-1) if temperature else None
    return MatchResult(index, best, lse)


def matched_score(levels: list[MatchLevel], index: Tensor) -> Tensor:
    """C(i, M(i)) recomputed differentiably from the vectors (equals ``MatchResult.score``).

    The argmax is not differentiable; the soft-attention value is, and this is how gradients reach the
    extractor and the word embeddings through Eqs. 18-19 without keeping any correlation block for backward.

    Args:
        levels: the correlation terms used for matching.
        index: (B, Nq) fine-grid key index per query.

    Returns:
        (B, Nq) correlation of each query with its matched key.
    """
    n_q = index.shape[1]
    total: Tensor | None = None
    for lvl in levels:
        qi = torch.arange(n_q, device=index.device)
        qi = qi if lvl.q_parent is None else lvl.q_parent[qi]
        ki = index if lvl.k_parent is None else lvl.k_parent[index]  # (B, Nq)
        q = lvl.q[:, qi]  # (B, Nq, D)
        k = torch.gather(lvl.k, 1, ki.unsqueeze(-1).expand(-1, -1, lvl.k.shape[-1]))  # (B, Nq, D)
        s = (q * k).sum(-1)
        total = s if total is None else total + s
    assert total is not None
    return total


def softmax_score(
    levels: list[MatchLevel], index: Tensor, temperature: float, budget_mib: float = 128.0
) -> Tensor:
    """max_j Softmax(C / T)(i, j) (Eqs. 10, 14 then 18-19), differentiable, memory-bounded.

    The row logsumexp is accumulated over key blocks; each block is recomputed in backward (activation
    checkpointing) so no block is kept alive.

    Returns:
        (B, Nq) probabilities in (0, 1].
    """
    top = matched_score(levels, index) / temperature
    if not torch.is_grad_enabled():
        return torch.exp(top - blocked_match(levels, budget_mib, temperature).lse)
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    rows, cols = _block_sizes(n_q, n_k, len(levels), int(budget_mib * 2**20))

    def block_lse(qsl: slice, ksl: slice, *tensors: Tensor) -> Tensor:
        lv = [MatchLevel(q, k, lvl.q_parent, lvl.k_parent) for lvl, q, k in zip(levels, tensors[::2], tensors[1::2])]
        return torch.logsumexp(_block_scores(lv, qsl, ksl) / temperature, dim=-1)

    flat = [t for lvl in levels for t in (lvl.q, lvl.k)]
    row_lse = []
    for q0 in range(0, n_q, rows):
        qsl = slice(q0, min(q0 + rows, n_q))
        parts = [
            checkpoint(block_lse, qsl, slice(k0, min(k0 + cols, n_k)), *flat, use_reentrant=False)
            for k0 in range(0, n_k, cols)
        ]
        row_lse.append(torch.logsumexp(torch.stack(parts, dim=-1), dim=-1))
    return torch.exp(top - torch.cat(row_lse, dim=1))
