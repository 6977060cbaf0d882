"""Learning from the scan itself (ours, ``fasr infer --adapt N``): fine-tune a through-plane model on the thick-slice
scan's own slices before it runs.

Each thick slice is high-resolution in-plane. Degraded along one in-plane axis with the scan's slice profile it
becomes a through-plane training pair with a known answer (the idea of SMORE, which has no reference); the
reference is averaged into the same thick slices, so the pair shows the reference as the model will see it. N
steps of L1 on random crops of those pairs, both in-plane axes in turn as the thick one, adapt a copy of the model
to this scanner, contrast and patient; the original model is left untouched.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fasr.data.degrade import SliceProfile
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.errors import FasrError

__all__ = ["adapt_model", "ADAPT_LR", "ADAPT_BATCH"]

ADAPT_LR = 2e-5  # Adam step size: a tenth of the training's final rate scale, so N steps nudge rather than retrain
ADAPT_BATCH = 4
_MIN_CONTENT = 0.2  # content share a slice needs to be trained on


def adapt_model(
    model: nn.Module, lr: np.ndarray, ref: np.ndarray, thick_axis: int, profile: SliceProfile, steps: int,
    device: torch.device, seed: int = 0, patch: int = 60,
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` fine-tuned for ``steps`` steps on the scan's own slices.

    Args:
        model: through-plane model (left unchanged).
        lr: (X, Y, T) the thick-slice scan, normalised to [-1, 1].
        ref: (X, Y, T) the reference averaged into the same thick slices (``profile.down`` along the thick axis
            of the reference on the output grid), normalised.
        thick_axis: the thick voxel axis of both.
        profile: the scan's slice profile.
        steps: optimiser steps.
        device: where it trains.
        seed: crop and batch draws.
        patch: crop size (rounded down to a multiple of the factor).
    """
    slices_lr = np.moveaxis(lr, thick_axis, 0)  # (T, A, B): each a slice, high-resolution in-plane
    slices_ref = np.moveaxis(ref, thick_axis, 0)
    content = (slices_lr > FOREGROUND_LEVEL).mean(axis=(1, 2))
    usable = np.flatnonzero(content >= _MIN_CONTENT)
    f = profile.factor
    p = min(patch, *slices_lr.shape[1:]) // f * f
    if not len(usable) or p < f:
        raise FasrError(f"--adapt: the scan has no slice with {_MIN_CONTENT:.0%} content and {patch} pixels to learn "
                        "from; run without --adapt")
    tuned = copy.deepcopy(model).to(device).train()
    optimizer = torch.optim.Adam([w for w in tuned.parameters() if w.requires_grad], lr=ADAPT_LR)
    rng = np.random.default_rng(seed)
    start, losses = time.perf_counter(), []
    for step in range(steps):
        hr, ref_b = [], []
        for _ in range(ADAPT_BATCH):
            k = int(rng.choice(usable))
            a, b = slices_lr[k], slices_ref[k]
            if step % 2:  # the other in-plane axis plays the thick one
                a, b = a.T, b.T
            y = int(rng.integers(0, (a.shape[0] - p) // f + 1)) * f  # at a thick slice's edge
            x = int(rng.integers(0, a.shape[1] - p + 1))
            hr.append(a[y : y + p, x : x + p])
            ref_b.append(b[y : y + p, x : x + p])
        target = torch.from_numpy(np.stack(hr).astype(np.float32))[:, None].to(device)  # (B, 1, p, p)
        reference = torch.from_numpy(np.stack(ref_b).astype(np.float32))[:, None].to(device)
        with torch.no_grad():
            lr_up = profile.down_up(target, 1)  # the pair's thick-slice input on the fine grid
        loss = F.l1_loss(tuned(lr_up, reference, degradation=profile).sr, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    tuned.eval()
    return tuned, {"steps": steps, "seconds": round(time.perf_counter() - start, 2),
                   "l1_first": round(losses[0], 5) if losses else None,
                   "l1_last": round(float(np.mean(losses[-5:])), 5) if losses else None}
