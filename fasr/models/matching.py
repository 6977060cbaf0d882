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
from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

__all__ = [
    "MatchLevel",
    "MatchResult",
    "Rect",
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

    A *vector* level holds one vector per cell and scores ``<q[i], k[j]>``. A *patch* level (made by
    :func:`patch_level`; ``q_scale`` set) holds feature maps and scores the cosine of 3x3 patches, computed
    without forming the 9C-dim patch vectors (:func:`_patch_scores`).

    Attributes:
        q: vector level: (B, Nq_l, D_l) query vectors; patch level: (B, C, Hq_l + 2, Wq_l + 2) query features
            zero-padded by one cell (the padding of ``F.unfold(padding=1)``).
        k: the same for the keys: (B, Nk_l, D_l) or (B, C, Hk_l + 2, Wk_l + 2).
        q_parent: (Nq,) long, cell of this level for each fine-grid query, or None when Nq_l == Nq.
        k_parent: (Nk,) long, cell of this level for each fine-grid key, or None when Nk_l == Nk.
        q_scale: patch level: (B, Nq_l) weight / |P_q(i)| per query cell; None for a vector level.
        k_scale: patch level: (B, Nk_l) 1 / |P_k(j)| per key cell; None for a vector level.
        ratio: fine cells per cell of this level along each axis when the parents are exactly
            ``(y // ratio, x // ratio)`` on both sides (:func:`parent_index` of a ceil-pooled map); 0 = the
            parents are arbitrary. Lets blocks add the level by broadcasting instead of gathering (ours).
    """

    q: Tensor
    k: Tensor
    q_parent: Tensor | None = None
    k_parent: Tensor | None = None
    q_scale: Tensor | None = None
    k_scale: Tensor | None = None
    ratio: int = 0

    @property
    def is_patch(self) -> bool:
        return self.q_scale is not None

    def n_cells(self, which: str) -> int:
        """Number of cells of this level on the query (``"q"``) or key (``"k"``) side."""
        x = self.q if which == "q" else self.k
        return (x.shape[2] - 2) * (x.shape[3] - 2) if self.is_patch else x.shape[1]


class MatchResult(NamedTuple):
    """``index`` (B, Nq) long: argmax_j C(i, j); ``score`` (B, Nq): max_j C(i, j); ``lse`` (B, Nq) or None:
    logsumexp_j C(i, j) / T (for the softmax score)."""

    index: Tensor
    score: Tensor
    lse: Tensor | None


class Rect(NamedTuple):
    """A rectangle of grid cells, rows ``y0:y1`` and columns ``x0:x1`` (end-exclusive), on a grid ``width``
    wide; its cells are taken row-major."""

    y0: int
    y1: int
    x0: int
    x1: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    def cells(self, device=None) -> Tensor:
        """(n,) long row-major grid index of every cell."""
        ys = torch.arange(self.y0, self.y1, device=device)
        xs = torch.arange(self.x0, self.x1, device=device)
        return (ys[:, None] * self.width + xs).reshape(-1)


class SearchWindow(NamedTuple):
    """Restrict each query's keys to a square window around its own position (registered contrasts).

    Attributes:
        q_grid: (Hq, Wq) of the fine query grid (queries are numbered row-major on it).
        k_grid: (Hk, Wk) of the fine key grid; key (y, x) faces query (y * Hq / Hk, x * Wq / Wk).
        search_window: half-width of the window in query-grid cells (converted to key cells by the grid ratio).
        tile: query tiles of tile x tile cells are matched against the union of their windows.
    """

    q_grid: tuple[int, int]
    k_grid: tuple[int, int]
    search_window: int
    tile: int = 16

    def key_radius(self) -> tuple[int, int]:
        return (math.ceil(self.search_window * self.k_grid[0] / self.q_grid[0]),
                math.ceil(self.search_window * self.k_grid[1] / self.q_grid[1]))

    def separable_mask(self, q: Rect, k: Rect, device=None) -> tuple[Tensor, Tensor]:
        """The window is a product of a row and a column condition: (rows (hq, hk), columns (wq, wk)) bool,
        True where key row / column lies within the radius of the query row / column."""
        (hq, wq), (hk, wk) = self.q_grid, self.k_grid
        ry, rx = self.key_radius()
        cy = torch.arange(q.y0, q.y1, device=device) * hk // hq  # query rows on the key grid
        cx = torch.arange(q.x0, q.x1, device=device) * wk // wq
        rows = (torch.arange(k.y0, k.y1, device=device)[None, :] - cy[:, None]).abs() <= ry
        cols = (torch.arange(k.x0, k.x1, device=device)[None, :] - cx[:, None]).abs() <= rx
        return rows, cols

    def mask(self) -> Tensor:
        """(Nq, Nk) True where a key lies in a query's window (the dense reference)."""
        (hq, wq), (hk, wk) = self.q_grid, self.k_grid
        rows, cols = self.separable_mask(Rect(0, hq, 0, wq, wq), Rect(0, hk, 0, wk, wk))
        return (rows[:, None, :, None] & cols[None, :, None, :]).reshape(hq * wq, hk * wk)

    def tiles(self) -> Iterator[tuple[Rect, Rect]]:
        """Yield (query rectangle, its windows' key rectangle) per query tile."""
        (hq, wq), (hk, wk) = self.q_grid, self.k_grid
        ry, rx = self.key_radius()
        for y0 in range(0, hq, self.tile):
            for x0 in range(0, wq, self.tile):
                y1, x1 = min(y0 + self.tile, hq), min(x0 + self.tile, wq)
                keys = Rect(max(0, y0 * hk // hq - ry), min(hk, (y1 - 1) * hk // hq + ry + 1),
                            max(0, x0 * wk // wq - rx), min(wk, (x1 - 1) * wk // wq + rx + 1), wk)
                yield Rect(y0, y1, x0, x1, wq), keys


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


def _fp32(device: torch.device) -> torch.autocast:
    """Matching always runs in fp32, also inside ``torch.autocast`` (bf16 scores would flip argmaxes)."""
    return torch.autocast(device.type, enabled=False)


def patch_level(
    q_map: Tensor,
    k_map: Tensor,
    *,
    weight: float = 1.0,
    q_parent: Tensor | None = None,
    k_parent: Tensor | None = None,
    ratio: int = 0,
) -> MatchLevel:
    """A cosine 3x3-patch correlation term: cos(P_q(i), P_k(j)) * weight, patches as ``F.unfold(padding=1)``.

    Equals ``MatchLevel(patch_vectors(q_map) * weight, patch_vectors(k_map), q_parent, k_parent)`` but is
    never unfolded: the patch norms come from a 3x3 box filter of the squared feature norms (same zero
    padding), and the patch dot products are sums of 9 shifted pixel dot products (:func:`_patch_scores`).
    The maps are cast to fp32 (matching runs in fp32 also under autocast).

    Args:
        q_map: (B, C, Hq_l, Wq_l) query features at this level.
        k_map: (B, C, Hk_l, Wk_l) key features at this level.
        weight: factor on the whole term (e.g. 1/L for the level average of Eq. 15).
        q_parent: (Nq,) long, cell of ``q_map`` for each fine-grid query (coarse levels), or None.
        k_parent: (Nk,) long, cell of ``k_map`` for each fine-grid key, or None.
        ratio: when the parents are ``parent_index(..., ratio)`` of ceil-pooled maps (see :class:`MatchLevel`).
    """
    with _fp32(q_map.device):
        q_map, k_map = q_map.float(), k_map.float()
        q_scale = _inverse_patch_norm(q_map) * weight
        k_scale = _inverse_patch_norm(k_map)
        q_pad, k_pad = F.pad(q_map, (1, 1, 1, 1)), F.pad(k_map, (1, 1, 1, 1))  # (B, C, H_l + 2, W_l + 2)
    return MatchLevel(q_pad, k_pad, q_parent, k_parent, q_scale, k_scale, ratio)


def _inverse_patch_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """(B, H*W) 1 / max(|P(i)|, eps) of the zero-padded 3x3 patches of ``x`` (B, C, H, W), as F.normalize."""
    sq = x.square().sum(1, keepdim=True)  # (B, 1, H, W)
    patch_sq = F.avg_pool2d(sq, 3, stride=1, padding=1, count_include_pad=True) * 9  # box filter, zero pad
    return patch_sq.clamp_min(eps * eps).rsqrt().flatten(1)  # (B, H*W); clamp before the root: finite grads


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
    parent = first.q_parent if which == "q" else first.k_parent
    return first.n_cells(which) if parent is None else parent.numel()


Cells = slice | Tensor | Rect  # a block's fine-grid cells: a range of row-major indices, indices, or a rectangle


def _cells(parent: Tensor | None, sl: Cells) -> tuple[Cells, Tensor | None]:
    """Cells of a level needed for fine cells ``sl``: ``sl`` itself, or the distinct parents plus the inverse
    map (on coarse levels many fine cells share a parent, so only distinct parents are multiplied)."""
    if parent is None:
        return sl, None
    if isinstance(sl, Rect):
        sl = sl.cells(parent.device)
    uniq, inv = torch.unique(parent[sl], return_inverse=True)
    return uniq, inv


def _rect(cells: Cells, width: int, n: int) -> tuple[int, int, int, int]:
    """Bounding rectangle (y0, y1, x0, x1), end-exclusive, of row-major cell indices on a grid ``width`` wide."""
    if isinstance(cells, Rect):
        return cells.y0, cells.y1, cells.x0, cells.x1
    if isinstance(cells, slice):
        a, b = cells.start or 0, min(n, cells.stop)
        y0, y1 = a // width, (b - 1) // width + 1
        if y1 - y0 == 1:
            return y0, y1, a % width, (b - 1) % width + 1
        return y0, y1, 0, width
    ys, xs = cells // width, cells % width
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _in_rect(cells: Cells, width: int, rect: tuple[int, int, int, int], n: int, device) -> Tensor | None:
    """Positions of ``cells`` in their bounding rectangle (row-major), or None when they are the whole of it."""
    y0, y1, x0, x1 = rect
    if isinstance(cells, Rect):
        return None
    if isinstance(cells, slice):
        a, b = cells.start or 0, min(n, cells.stop)
        if b - a == (y1 - y0) * (x1 - x0):
            return None
        cells = torch.arange(a, b, device=device)
    elif cells.numel() == (y1 - y0) * (x1 - x0) and bool((cells[1:] > cells[:-1]).all()):
        return None  # distinct, sorted and as many as the rectangle: exactly the rectangle, row-major
    return (cells // width - y0) * (x1 - x0) + cells % width - x0


def _patch_scores(lvl: MatchLevel, q_cells: Tensor | slice, k_cells: Tensor | slice) -> Tensor:
    """Cosine patch correlation of a patch level for the given cells: (B, nq, nk).

    Ours, exact: <P_q(i), P_k(j)> = sum over the 9 offsets o of <q(i+o), k(j+o)>. The pixel dot products of
    the bounding rectangles grown by one cell (C-dim GEMM, 9x cheaper than the 9C-dim patch GEMM) are summed
    over the 9 diagonal shifts, separably (3 along x, then 3 along y), and divided by the two patch norms.
    """
    (qh, qw), (kh, kw) = (s - 2 for s in lvl.q.shape[2:]), (s - 2 for s in lvl.k.shape[2:])
    device = lvl.q.device
    qr, kr = _rect(q_cells, qw, qh * qw), _rect(k_cells, kw, kh * kw)
    (y0, y1, x0, x1), (v0, v1, u0, u1) = qr, kr
    b, c = lvl.q.shape[:2]
    hy, hx, ky, kx = y1 - y0, x1 - x0, v1 - v0, u1 - u0
    qf = lvl.q[:, :, y0 : y1 + 2, x0 : x1 + 2].reshape(b, c, -1)  # (B, C, (hy+2)(hx+2)) padded rectangle
    kf = lvl.k[:, :, v0 : v1 + 2, u0 : u1 + 2].reshape(b, c, -1)  # (B, C, (ky+2)(kx+2))
    pix = torch.bmm(qf.transpose(1, 2), kf).view(b, hy + 2, hx + 2, ky + 2, kx + 2)  # pixel correlations
    sx = pix[:, :, 0:hx, :, 0:kx] + pix[:, :, 1 : hx + 1, :, 1 : kx + 1]  # (B, hy+2, hx, ky+2, kx)
    sx += pix[:, :, 2 : hx + 2, :, 2 : kx + 2]  # in place: large fresh buffers cost page faults (ours)
    del pix
    s = sx[:, 0:hy, :, 0:ky] + sx[:, 1 : hy + 1, :, 1 : ky + 1]  # (B, hy, hx, ky, kx)
    s += sx[:, 2 : hy + 2, :, 2 : ky + 2]
    del sx
    q_sc = lvl.q_scale.view(b, qh, qw)[:, y0:y1, x0:x1].reshape(b, hy * hx, 1)  # (B, nq_rect, 1)
    k_sc = lvl.k_scale.view(b, kh, kw)[:, v0:v1, u0:u1].reshape(b, 1, ky * kx)  # (B, 1, nk_rect)
    s = s.view(b, hy * hx, ky * kx)  # (B, nq_rect, nk_rect) cosines times weight after the two scales
    s = s.mul_(q_sc).mul_(k_sc) if not torch.is_grad_enabled() else s * q_sc * k_sc
    qi, ki = _in_rect(q_cells, qw, qr, qh * qw, device), _in_rect(k_cells, kw, kr, kh * kw, device)
    if qi is not None:
        s = s.index_select(1, qi)
    if ki is not None:
        s = s.index_select(2, ki)
    return s


def _level_scores(lvl: MatchLevel, qsl: Cells, ksl: Cells) -> Tensor:
    """One level's term of C[i, j] for fine query cells ``qsl`` and key cells ``ksl``: (B, nq, nk)."""
    q_cells, q_inv = _cells(lvl.q_parent, qsl)
    k_cells, k_inv = _cells(lvl.k_parent, ksl)
    if lvl.is_patch:
        s = _patch_scores(lvl, q_cells, k_cells)
    else:
        q_cells, k_cells = (c.cells(lvl.q.device) if isinstance(c, Rect) else c for c in (q_cells, k_cells))
        s = lvl.q[:, q_cells].float() @ lvl.k[:, k_cells].float().transpose(1, 2)  # (B, nq', nk')
    # Columns first, on the small matrix (a gather per element); then whole rows (contiguous copies).
    if k_inv is not None:
        s = s.index_select(2, k_inv)  # (B, nq', nk)
    if q_inv is not None:
        s = s.index_select(1, q_inv)  # (B, nq, nk)
    return s


def _block_scores(levels: list[MatchLevel], qsl: Cells, ksl: Cells) -> Tensor:
    """C[i, j] for the query rows ``qsl`` and key columns ``ksl`` (fine-grid indices): (B, nq, nk), fp32."""
    with _fp32(levels[0].q.device):
        pyramid = _pyramid_blocks(levels, qsl, ksl)
        if pyramid is not None:
            return _pyramid_scores(levels, *pyramid)
        total = _level_scores(levels[0], qsl, ksl)
        for lvl in levels[1:]:
            total = total + _level_scores(lvl, qsl, ksl)
    return total


def _grid(x: Tensor) -> tuple[int, int]:
    """(H, W) of a patch level's cells (its map is zero-padded by one)."""
    return x.shape[2] - 2, x.shape[3] - 2


def _as_rect(sel: Cells, width: int, n: int) -> Rect | None:
    """``sel`` as a rectangle: a Rect, or a slice of whole grid rows; else None."""
    if isinstance(sel, Rect):
        return sel
    if isinstance(sel, slice):
        a, b = sel.start or 0, min(n, sel.stop)
        if a % width == 0 and b % width == 0:
            return Rect(a // width, b // width, 0, width, width)
    return None


def _pyramid_blocks(levels: list[MatchLevel], qsl: Cells, ksl: Cells) -> tuple[Rect, Rect] | None:
    """The query and key rectangles of the block when it may add its coarse levels by broadcasting
    (:func:`_pyramid_scores`): a fine patch level first, then patch levels whose ``ratio`` divides the previous
    one's and both grids, and rectangles (or whole grid rows) whose edges lie on multiples of every ratio.
    Else None (the gather path)."""
    fine, *coarse = levels
    if not coarse or not fine.is_patch or fine.q_parent is not None or fine.k_parent is not None:
        return None
    (hq, wq), (hk, wk) = _grid(fine.q), _grid(fine.k)
    q, k = _as_rect(qsl, wq, hq * wq), _as_rect(ksl, wk, hk * wk)
    if q is None or k is None:
        return None
    previous = 0
    for lvl in sorted(coarse, key=lambda lvl: -lvl.ratio):
        r = lvl.ratio
        if r < 2 or not lvl.is_patch or (previous and previous % r):
            return None
        if any(n % r for n in (hq, wq, hk, wk, *q[:4], *k[:4])):
            return None
        if _grid(lvl.q) != (hq // r, wq // r) or _grid(lvl.k) != (hk // r, wk // r):
            return None
        previous = r
    return q, k


def _broadcast_add(fine: Tensor, coarse: Tensor, r: int, q_hw: tuple[int, int], k_hw: tuple[int, int]) -> Tensor:
    """``fine[i, j] += coarse[parent(i), parent(j)]`` in place, parents ``(y // r, x // r)``, without a gather.

    Args:
        fine: (B, hq * wq, hk * wk) scores of a block of whole rows of the finer grid.
        coarse: (B, (hq / r) * (wq / r), (hk / r) * (wk / r)) scores of the same block on the coarser grid.
        r: the grid ratio.
        q_hw / k_hw: the fine block's query and key grid shapes.
    """
    b = fine.shape[0]
    (hq, wq), (hk, wk) = q_hw, k_hw
    # Keys first, on the r^2-times smaller matrix: each coarse key cell repeated over its r x r fine cells.
    cols = coarse.view(b, -1, hk // r, 1, wk // r, 1).expand(-1, -1, -1, r, -1, r).reshape(b, 1, -1, hk * wk)
    # (B, 1, (hq/r)(wq/r), hk*wk) -> (B, hq/r, 1, wq/r, 1, hk*wk): each coarse query row added to its r x r rows.
    fine.view(b, hq // r, r, wq // r, r, hk * wk).add_(cols.view(b, hq // r, 1, wq // r, 1, hk * wk))
    return fine


def _pyramid_scores(levels: list[MatchLevel], q: Rect, k: Rect) -> Tensor:
    """C[i, j] of a multi-level correlation for a query and a key rectangle (see :func:`_pyramid_blocks`), the
    coarse levels summed coarsest first and broadcast up one ratio at a time (ours: the gather path's sum with
    the terms added in another order, so equal to fp32 round-off, ~1 ulp)."""
    fine, *coarse = levels

    def on(r: int, rect: Rect) -> Rect:  # the rectangle on a grid r times coarser
        return Rect(rect.y0 // r, rect.y1 // r, rect.x0 // r, rect.x1 // r, rect.width // r)

    acc, acc_ratio = None, 0
    for lvl in sorted(coarse, key=lambda lvl: -lvl.ratio):  # coarsest first
        r = lvl.ratio
        s = _patch_scores(lvl, on(r, q), on(r, k))  # (B, nq / r^2, nk / r^2)
        if acc is not None:
            s = _broadcast_add(s, acc, acc_ratio // r, on(r, q).shape, on(r, k).shape)
        acc, acc_ratio = s, r
    return _broadcast_add(_patch_scores(fine, q, k), acc, acc_ratio, q.shape, k.shape)


def _fine_width(levels: list[MatchLevel], which: str) -> int:
    """Width of the fine grid when a patch level lives on it (blocks then cover whole rows), else 1."""
    for lvl in levels:
        parent = lvl.q_parent if which == "q" else lvl.k_parent
        if lvl.is_patch and parent is None:
            return (lvl.q if which == "q" else lvl.k).shape[3] - 2
    return 1


# Ours, measured: at most this many scores per block, whatever the memory budget, so that a block's matrices stay
# in the last-level cache between the GEMM and the maxima (S-A at 256x256: 74 ms in one 4096 x 4096 block,
# 49 ms in 512-row blocks, one thread).
CACHE_BLOCK_ELEMS = 2**21
# Budgets above this are taken literally, without the cache cap (the whole-matrix reference rows of
# ``fasr bench speed --dense``).
LITERAL_BUDGET_MIB = 2**16


def _block_sizes(levels: list[MatchLevel], match_memory_mib: float) -> tuple[int, int]:
    """Rows and columns per block so that the block's score matrices stay within ``match_memory_mib``.

    A patch level holds about three block-sized matrices (pixel correlations and two partial sums), a vector
    level one, plus the running sum. On grids with patch levels, blocks are whole grid rows of queries and of
    keys, and as square as the budget allows: each block's pixel rectangles carry one extra grid row above and
    below (the 3x3 patch halo), so blocks of few rows would repeat most of the pixel GEMM (ours).
    """
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    per_elem = 4 * (1 + sum(3 if lvl.is_patch else 1 for lvl in levels))
    elems = max(1, int(match_memory_mib * 2**20) // per_elem)
    if match_memory_mib <= LITERAL_BUDGET_MIB:
        elems = min(elems, CACHE_BLOCK_ELEMS)
    if n_q * n_k <= elems:
        return n_q, n_k
    wq, wk = _fine_width(levels, "q"), _fine_width(levels, "k")
    if wq > 1 and wk > 1 and elems >= wq * wk:
        a = max(lvl.ratio for lvl in levels)  # coarse levels broadcast when blocks are multiples of their ratio
        rows_all_keys = _multiple(elems // (wq * n_k), a)  # grid rows of queries per block with every key
        if rows_all_keys >= 8:
            return rows_all_keys * wq, n_k
        side = math.isqrt(elems // (wq * wk))
        r = _multiple(min(side, math.ceil(n_q / wq)), a)
        c = _multiple(min(math.ceil(n_k / wk), max(1, elems // (r * wq * wk))), a)
        return r * wq, c * wk
    if n_k <= elems:
        return max(1, min(n_q, elems // n_k)), n_k
    rows = min(n_q, 64)
    return rows, max(1, elems // rows)


def _multiple(n: int, a: int) -> int:
    """``n`` rounded down to a multiple of ``a`` when that leaves at least ``a``, else ``n``."""
    return n - n % a if a > 1 and n >= a else n


@torch.no_grad()
def blocked_match(
    levels: list[MatchLevel],
    match_memory_mib: float = 128.0,
    temperature: float | None = None,
    window: SearchWindow | None = None,
) -> MatchResult:
    """argmax / max (and optionally logsumexp / T) over keys of a correlation, computed block by block.

    Args:
        levels: the terms of the correlation (one for a plain cross-attention).
        match_memory_mib: upper bound for the block's score matrices, in MiB.
        temperature: when given, also accumulate the row-wise logsumexp of C / T.
        window: only keys inside each query's window compete (exact within the window); None = all keys.
    """
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    batch, device = levels[0].q.shape[0], levels[0].q.device
    if window is not None:
        return _windowed_match(levels, window, temperature, (batch, n_q), device)
    rows, cols = _block_sizes(levels, match_memory_mib)
    best = torch.full((batch, n_q), -math.inf, device=device)
    index = torch.zeros((batch, n_q), dtype=torch.long, device=device)
    lse = torch.full((batch, n_q), -math.inf, device=device) if temperature else None
    for q0 in range(0, n_q, rows):
        qsl = slice(q0, min(q0 + rows, n_q))
        for k0 in range(0, n_k, cols):
            ksl = slice(k0, min(k0 + cols, n_k))
            s = _block_scores(levels, qsl, ksl)  # (B, nq, nk)
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
    """Tile by tile: each query rectangle against the key rectangle of its windows, keys outside each query's
    own window masked out by the window's row and column conditions (broadcast, never an (nq, nk) mask)."""
    b = shape[0]
    (hq, wq), wk = window.q_grid, window.k_grid[1]
    best = torch.full((b, hq, wq), -math.inf, device=device)
    index = torch.zeros((b, hq, wq), dtype=torch.long, device=device)
    lse = torch.full((b, hq, wq), -math.inf, device=device) if temperature else None
    for q, k in window.tiles():
        (th, tw), (kh, kw) = q.shape, k.shape
        rows, cols = window.separable_mask(q, k, device)
        s = _block_scores(levels, q, k).view(b, th, tw, kh, kw)  # (B, nq, nk) -> (B, th, tw, kh, kw)
        s.masked_fill_(~rows[None, :, None, :, None], -math.inf).masked_fill_(~cols[None, None, :, None, :], -math.inf)
        s = s.view(b, th, tw, kh * kw)
        top, arg = s.max(dim=-1)  # (B, th, tw)
        best[:, q.y0 : q.y1, q.x0 : q.x1] = top
        index[:, q.y0 : q.y1, q.x0 : q.x1] = (k.y0 + arg // kw) * wk + k.x0 + arg % kw
        if lse is not None:
            lse[:, q.y0 : q.y1, q.x0 : q.x1] = torch.logsumexp(s / temperature, dim=-1)
    return MatchResult(index.view(shape), best.view(shape), None if lse is None else lse.view(shape))


@torch.no_grad()
def dense_match(
    levels: list[MatchLevel], temperature: float | None = None, window: SearchWindow | None = None
) -> MatchResult:
    """Reference: build the whole correlation matrix (what the authors' code does). Tests and benchmarks only."""
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    c = _block_scores(levels, slice(0, n_q), slice(0, n_k))  # (B, Nq, Nk)
    if window is not None:
        c = c.masked_fill(~window.mask().to(c.device), -math.inf)
    best, index = c.max(dim=-1)
    lse = torch.logsumexp(c / temperature, dim=-1) if temperature else None
    return MatchResult(index, best, lse)


def _patch_pair_dot(lvl: MatchLevel, qi: Tensor, ki: Tensor) -> Tensor:
    """<P_q(qi[b, n]), P_k(ki[b, n])> of a patch level for cell pairs (B, N): 9 gathers of pixel features."""
    b, c = lvl.q.shape[:2]
    qw, kw = lvl.q.shape[3], lvl.k.shape[3]  # padded widths
    qf, kf = lvl.q.reshape(b, c, -1), lvl.k.reshape(b, c, -1)  # (B, C, (H_l+2)(W_l+2))
    # Top-left of each 3x3 patch on the padded grid: cell (y, x) sits at (y + 1, x + 1).
    q_tl = (qi // (qw - 2)) * qw + qi % (qw - 2)
    k_tl = (ki // (kw - 2)) * kw + ki % (kw - 2)
    total: Tensor | None = None
    for dy in range(3):
        for dx in range(3):
            qg = torch.gather(qf, 2, (q_tl + dy * qw + dx).unsqueeze(1).expand(b, c, -1))  # (B, C, N)
            kg = torch.gather(kf, 2, (k_tl + dy * kw + dx).unsqueeze(1).expand(b, c, -1))
            d = (qg * kg).sum(1)  # (B, N)
            total = d if total is None else total + d
    assert total is not None
    return total * torch.gather(lvl.q_scale, 1, qi) * torch.gather(lvl.k_scale, 1, ki)


def matched_score(levels: list[MatchLevel], index: Tensor) -> Tensor:
    """C(i, M(i)) recomputed differentiably from the vectors or maps (equals ``MatchResult.score``).

    The argmax is not differentiable; the soft-attention value is, and this is how gradients reach the
    extractor and the word embeddings through Eqs. 18-19 without keeping any correlation block for backward.

    Args:
        levels: the correlation terms used for matching.
        index: (B, Nq) fine-grid key index per query.

    Returns:
        (B, Nq) fp32 correlation of each query with its matched key.
    """
    b, n_q = index.shape
    total: Tensor | None = None
    with _fp32(index.device):
        for lvl in levels:
            qi = torch.arange(n_q, device=index.device)
            qi = (qi if lvl.q_parent is None else lvl.q_parent[qi]).expand(b, -1)  # (B, Nq)
            ki = index if lvl.k_parent is None else lvl.k_parent[index]  # (B, Nq)
            if lvl.is_patch:
                s = _patch_pair_dot(lvl, qi, ki)
            else:
                q = torch.gather(lvl.q, 1, qi.unsqueeze(-1).expand(-1, -1, lvl.q.shape[-1]))  # (B, Nq, D)
                k = torch.gather(lvl.k, 1, ki.unsqueeze(-1).expand(-1, -1, lvl.k.shape[-1]))  # (B, Nq, D)
                s = (q.float() * k.float()).sum(-1)
            total = s if total is None else total + s
    assert total is not None
    return total


_TENSOR_FIELDS = ("q", "k", "q_scale", "k_scale")


def softmax_score(
    levels: list[MatchLevel], index: Tensor, temperature: float, match_memory_mib: float = 128.0
) -> Tensor:
    """max_j Softmax(C / T)(i, j) (Eqs. 10, 14 then 18-19), differentiable, memory-bounded.

    The row logsumexp is accumulated over key blocks; each block is recomputed in backward (activation
    checkpointing) so no block is kept alive. ``-log softmax_score(levels, true_index, T)`` is the
    cross-entropy of a known correspondence.

    Args:
        levels: the correlation terms.
        index: (B, Nq) fine-grid key index per query whose probability is returned.
        temperature: softmax temperature T.
        match_memory_mib: upper bound for one block's score matrices.

    Returns:
        (B, Nq) probabilities in (0, 1].
    """
    top = matched_score(levels, index) / temperature
    if not torch.is_grad_enabled():
        return torch.exp(top - blocked_match(levels, match_memory_mib, temperature).lse)
    n_q, n_k = _n_fine(levels, "q"), _n_fine(levels, "k")
    rows, cols = _block_sizes(levels, match_memory_mib)
    present = [[f for f in _TENSOR_FIELDS if getattr(lvl, f) is not None] for lvl in levels]
    flat = [getattr(lvl, f) for lvl, fields in zip(levels, present) for f in fields]

    def block_lse(qsl: slice, ksl: slice, *tensors: Tensor) -> Tensor:
        it = iter(tensors)
        lv = [lvl._replace(**{f: next(it) for f in fields}) for lvl, fields in zip(levels, present)]
        return torch.logsumexp(_block_scores(lv, qsl, ksl) / temperature, dim=-1)

    row_lse = []
    for q0 in range(0, n_q, rows):
        qsl = slice(q0, min(q0 + rows, n_q))
        parts = [
            checkpoint(block_lse, qsl, slice(k0, min(k0 + cols, n_k)), *flat, use_reentrant=False)
            for k0 in range(0, n_k, cols)
        ]
        row_lse.append(torch.logsumexp(torch.stack(parts, dim=-1), dim=-1))
    return torch.exp(top - torch.cat(row_lse, dim=1))
