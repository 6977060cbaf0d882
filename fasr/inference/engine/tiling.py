"""In-plane tiling of one forward pass: overlapping tiles with context margins, blended (ours).

A slice too large for the memory budget (:func:`fasr.inference.engine.memory.plan_tiles`) is cut into square LR tiles.
Each tile runs with ``margin`` LR pixels of context on every side -- the same region of the target and of the
reference, so the reference tile covers the tile plus its search margin -- and only the tile's own output is
kept. Neighbouring tiles overlap by ``overlap`` pixels and are blended with linear ramps. Where the margin
covers the network's receptive field and the search window, the result equals the untiled one away from the
seams; with global matching (``search_window`` 0) a tile searches only its own region plus the margin.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["tile_count", "tile_spans", "tiled_forward"]


def tile_spans(n: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """Start/stop of tiles of ``tile`` pixels covering [0, n), consecutive tiles overlapping by >= ``overlap``."""
    if n <= tile:
        return [(0, n)]
    step = max(1, tile - overlap)
    starts = list(range(0, n - tile, step)) + [n - tile]
    return [(s, s + tile) for s in starts]


def tile_count(h: int, w: int, tile: int, overlap: int) -> int:
    """Tiles of :func:`tiled_forward` over an (h, w) LR slice."""
    return len(tile_spans(h, tile, overlap)) * len(tile_spans(w, tile, overlap))


def _ramp(start: int, stop: int, n: int, overlap: int, scale: int, device) -> Tensor:
    """(stop - start) * scale blending weights along one axis: ramps at inner edges, 1 at the image border."""
    length = (stop - start) * scale
    w = torch.ones(length, device=device)
    ramp_len = overlap * scale
    if ramp_len:
        up = (torch.arange(ramp_len, device=device) + 0.5) / ramp_len
        if start > 0:
            w[:ramp_len] = up
        if stop < n:
            w[length - ramp_len :] = torch.minimum(w[length - ramp_len :], up.flip(0))
    return w


def tiled_forward(
    forward: Callable[[Tensor, Tensor], tuple[Tensor, Tensor | None]],
    lr: Tensor,
    ref: Tensor,
    scale: int,
    tile: int,
    margin: int,
    overlap: int,
    on_tile: Callable[[], None] | None = None,
) -> tuple[Tensor, Tensor | None, int]:
    """Run ``forward(lr_tile, ref_tile) -> (sr_tile, confidence_tile or None)`` tile by tile and blend.

    Args:
        forward: the model's forward pass on one (B, 1, h_t, w_t) LR tile and its (B, 1, h_t*s, w_t*s) reference.
        lr: (B, 1, h, w) LR slices.
        ref: (B, 1, h * scale, w * scale) reference slices.
        scale: in-plane factor.
        tile: LR tile side (pixels, without margin).
        margin: LR pixels of context on each side (clipped at the border).
        overlap: LR pixels over which neighbouring tiles are blended.
        on_tile: called after each tile (progress).

    Returns:
        sr (B, 1, H, W), confidence (B, 1, H, W) or None, and the number of tiles.
    """
    b, _, h, w = lr.shape
    s = scale
    # Context windows start on the model's coarsest pooling grid (16 HR px), so that every tile pools, pads
    # and matches on the same cells as the whole slice.
    align = 16 // math.gcd(16, s)
    sr = lr.new_zeros((b, 1, h * s, w * s), dtype=torch.float32)
    conf: Tensor | None = None
    weight = lr.new_zeros((h * s, w * s), dtype=torch.float32)
    ys, xs = tile_spans(h, tile, overlap), tile_spans(w, tile, overlap)
    for y0, y1 in ys:
        cy0, cy1 = max(0, y0 - margin) // align * align, min(h, y1 + margin)
        wy = _ramp(y0, y1, h, overlap, s, lr.device)
        for x0, x1 in xs:
            cx0, cx1 = max(0, x0 - margin) // align * align, min(w, x1 + margin)
            out_sr, out_conf = forward(lr[..., cy0:cy1, cx0:cx1], ref[..., cy0 * s : cy1 * s, cx0 * s : cx1 * s])
            # Keep the tile's own pixels: offsets of [y0, y1) x [x0, x1) inside the context window, in HR.
            crop = (..., slice((y0 - cy0) * s, (y1 - cy0) * s), slice((x0 - cx0) * s, (x1 - cx0) * s))
            wt = wy[:, None] * _ramp(x0, x1, w, overlap, s, lr.device)[None, :]  # (h_t * s, w_t * s)
            region = (..., slice(y0 * s, y1 * s), slice(x0 * s, x1 * s))
            sr[region] += out_sr[crop].float() * wt
            if out_conf is not None:
                if conf is None:
                    conf = torch.zeros_like(sr)
                conf[region] += out_conf[crop].float() * wt
            weight[region] += wt
            if on_tile is not None:
                on_tile()
    sr /= weight
    if conf is not None:
        conf /= weight
    return sr, conf, tile_count(h, w, tile, overlap)
