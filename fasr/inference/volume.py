"""Slice-wise super-resolution of a stack: batches of (LR slice, reference slice) pairs through a model."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


__all__ = ["SliceResult", "super_resolve_slices"]


class SliceResult(NamedTuple):
    """Outputs for a stack of N slices, on the [-1, 1] scale of the model.

    Attributes:
        sr: (N, H, W) super-resolved slices.
        confidence: (N, H, W) soft-attention confidence in [0, 1], or None for single-image models.
    """

    sr: np.ndarray
    confidence: np.ndarray | None


def super_resolve_slices(
    model: nn.Module,
    lr: np.ndarray,
    ref: np.ndarray,
    scale: int,
    batch_size: int,
    device: torch.device,
    progress: bool,
) -> SliceResult:
    """Run ``model(lr, ref)`` over a stack of slices in batches, each LR slice with its own reference slice.

    Args:
        model: an SR model in eval mode (``forward(lr, ref) -> SROutput``), already on ``device``.
        lr: (N, h, w) LR slices on [-1, 1].
        ref: (N, h * scale, w * scale) reference slices on [-1, 1], on the SR grid.
        scale: in-plane factor of the model.
        batch_size: slices per forward pass.
        device: where the batches run.
        progress: show a progress bar (stderr).
    """
    n, h, w = lr.shape
    if ref.shape != (n, h * scale, w * scale):
        raise ValueError(f"reference stack {ref.shape} does not match LR {lr.shape} at x{scale}")
    sr = np.empty((n, h * scale, w * scale), dtype=np.float32)
    confidence: np.ndarray | None = None
    with torch.inference_mode(), tqdm(total=n, desc="super-resolving", unit="slice", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            lr_b = torch.from_numpy(np.ascontiguousarray(lr[start:stop], dtype=np.float32))[:, None].to(device)
            ref_b = torch.from_numpy(np.ascontiguousarray(ref[start:stop], dtype=np.float32))[:, None].to(device)
            out = model(lr_b, ref_b)  # sr: (b, 1, H, W)
            sr[start:stop] = out.sr[:, 0].float().cpu().numpy()
            if out.confidence is not None:
                if confidence is None:
                    confidence = np.zeros_like(sr)
                confidence[start:stop] = out.confidence[:, 0].float().cpu().numpy()
            bar.update(stop - start)
    return SliceResult(sr=sr, confidence=confidence)
