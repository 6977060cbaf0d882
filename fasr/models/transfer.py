"""Hard-attention texture transfer: warp value patches by the matched indices (Eqs. 12 and 16).

Matching happens on the 1/4 grid (one query per cell). At a transfer grid ``f`` times finer, the query's patch
is a (3f x 3f) window at stride f (3x3 at 1/4, 6x6 at 1/2, 12x12 at full resolution, as in TTSR and the authors'
code), and overlapping windows are averaged, i.e. ``fold(unfold(V)[matched]) / fold(ones)``.

Instead of unfolding V (9 f^2 copies of it: ~1 GB at 640x640), each output pixel reads from the 9 queries whose
windows cover it, displaced by that query's match offset: the same result with 9 reads per output pixel, each
a whole pixel row (C contiguous values) of channels-last V, summed in one embedding-bag pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["transfer_patches"]


def transfer_patches(values: Tensor, disp: Tensor, factor: int) -> Tensor:
    """Warp ``values`` by per-query displacements, with overlapping (3f x 3f) windows averaged.

    Args:
        values: (B, C, H, W) value features on the transfer grid, H = factor * Hq, W = factor * Wq.
        disp: (B, 2, Hq, Wq) integer (dy, dx) offsets in transfer-grid pixels from each query's window to its
            matched key's window (for a match on the 1/4 grid: ``factor * (j - i)``).
        factor: transfer-grid pixels per 1/4-grid cell (1, 2 or 4).

    Returns:
        (B, C, H, W) transferred texture; reads outside V are zero (like ``unfold`` with zero padding).
    """
    b, c, h, w = values.shape
    hq, wq = disp.shape[-2:]
    f = factor
    assert (h, w) == (hq * f, wq * f), f"values {h}x{w} vs grid {hq}x{wq} x{f}"
    # V zero-padded by 3f, the length of a window: a window whose top-left lies more than 3f outside V reads
    # only zeros, so moving it to 3f outside changes nothing, and then every read lies in the padded V.
    # Pixel rows (B * H' * W', C) of the padded V, H' = H + 6f: each read is one contiguous C-vector.
    pad = 3 * f
    hp, wp = h + 2 * pad, w + 2 * pad
    rows = F.pad(values, (pad,) * 4).permute(0, 2, 3, 1).reshape(b * hp * wp, c)  # (B, C, H', W') -> rows
    ys = torch.arange(h, device=values.device)
    xs = torch.arange(w, device=values.device)
    top = (f * (torch.arange(hq, device=values.device) - 1)).view(1, hq, 1)  # window top-left of each query
    left = (f * (torch.arange(wq, device=values.device) - 1)).view(1, 1, wq)
    dy = (top + disp[:, 0]).clamp(-pad, h) - top  # (B, Hq, Wq)
    dx = (left + disp[:, 1]).clamp(-pad, w) - left
    # Row offset of each query's match on the padded grid, with a one-cell border of invalid queries whose
    # offset sends every read past the last row (clamped to it: the zero bottom-right corner).
    offset = torch.full((b, hq + 2, wq + 2), hp * wp, dtype=torch.long, device=values.device)
    offset[:, 1:-1, 1:-1] = dy * wp + dx  # (B, Hq + 2, Wq + 2)
    base = ((ys + pad) * wp)[:, None] + (xs + pad)[None, :]  # (H, W) row of pixel (y, x) itself
    first_row = (torch.arange(b, device=values.device) * (hp * wp)).view(b, 1, 1)
    src = torch.empty((b, h, w, 9), dtype=torch.long, device=values.device)  # row each covering query reads
    for a in (0, 1, 2):  # query row y // f + a - 1 covers pixel row y
        for bb in (0, 1, 2):
            shifted = offset[:, a : a + hq, bb : bb + wq]  # (B, Hq, Wq) offsets of the covering queries
            up = shifted[:, :, None, :, None].expand(b, hq, f, wq, f).reshape(b, h, w)  # nearest upsampling
            src[..., 3 * a + bb] = (base + up).clamp_(max=hp * wp - 1) + first_row
    # How many of the 9 covering queries exist (fewer on the border), separable: rows x columns.
    count_y = 3 - (ys < f).long() - (ys >= h - f).long()
    count_x = 3 - (xs < f).long() - (xs >= w - f).long()
    count = (count_y[:, None] * count_x[None, :]).to(values.dtype)  # (H, W), exact small integers
    # The 9 reads of every output pixel summed in one pass (an embedding bag: no 9 intermediate copies of V),
    # then divided by the exact count (weights of 1/count would carry bf16's rounding of 1/9 into every pixel).
    out = F.embedding_bag(src.view(b * h * w, 9), rows, mode="sum").view(b, h, w, c)  # (B, H, W, C)
    out = out / count[None, :, :, None]
    return out.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W), channels-last memory
