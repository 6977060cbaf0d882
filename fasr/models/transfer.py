"""Hard-attention texture transfer: warp value patches by the matched indices (Eqs. 12 and 16).

Matching happens on the 1/4 grid (one query per cell). At a transfer grid ``f`` times finer, the query's patch
is a (3f x 3f) window at stride f (3x3 at 1/4, 6x6 at 1/2, 12x12 at full resolution, as in TTSR and the authors'
code), and overlapping windows are averaged, i.e. ``fold(unfold(V)[matched]) / fold(ones)``.

Instead of unfolding V (9 f^2 copies of it: ~1 GB at 640x640), each output pixel reads from the 9 queries whose
windows cover it, displaced by that query's match offset: the same result with 9 gathers of V's size, each a
copy of whole pixel rows (C contiguous values) in channels-last order.
"""

from __future__ import annotations

import torch
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
    assert (h, w) == (hq * factor, wq * factor), f"values {h}x{w} vs grid {hq}x{wq} x{factor}"
    # Pixel rows (B*(H*W + 1), C): each read copies one contiguous C-vector (a view of channels-last V); row
    # H*W of each image is zero and receives every read that falls outside V.
    pixels = values.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, C, H, W) -> (B, H*W, C)
    rows = torch.cat([pixels, pixels.new_zeros(b, 1, c)], dim=1).reshape(b * (h * w + 1), c)
    first_row = (torch.arange(b, device=values.device) * (h * w + 1)).view(b, 1)
    ys = torch.arange(h, device=values.device)
    xs = torch.arange(w, device=values.device)
    out: Tensor | None = None
    count = torch.zeros((h, w), device=values.device, dtype=values.dtype)
    for a in (-1, 0, 1):
        qy = ys // factor + a  # query row whose window covers pixel row y
        valid_y = (qy >= 0) & (qy < hq)
        qy = qy.clamp(0, hq - 1)
        for bb in (-1, 0, 1):
            qx = xs // factor + bb
            valid = valid_y[:, None] & ((qx >= 0) & (qx < wq))[None, :]  # (H, W)
            qx = qx.clamp(0, wq - 1)
            d = disp[:, :, qy[:, None], qx[None, :]]  # (B, 2, H, W)
            sy = ys[None, :, None] + d[:, 0]  # (B, H, W) source row
            sx = xs[None, None, :] + d[:, 1]
            inside = valid & (sy >= 0) & (sy < h) & (sx >= 0) & (sx < w)  # (B, H, W)
            src = torch.where(inside, sy * w + sx, h * w).reshape(b, h * w) + first_row
            taken = rows.index_select(0, src.reshape(-1))  # (B*H*W, C)
            out = taken if out is None else out.add_(taken)
            count += valid
    assert out is not None
    out = out.reshape(b, h, w, c) / count[None, :, :, None]
    return out.permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W), channels-last memory
