"""Degradations that make LR (and Ref-down-up) images from HR ones.

One interface (:class:`Degradation`): ``down(hr, scale)`` gives the LR image, ``up(lr, scale)`` brings it
back to the HR grid, ``down_up`` does both (the paper's I_{Ref down-up}, Section III-A).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Degradation", "Bicubic", "resize"]


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of (B, C, H, W) with antialiasing when shrinking (like PIL / MATLAB imresize)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink)


class Degradation:
    """Base class: subclasses implement :meth:`down`; :meth:`up` is bicubic."""

    def down(self, hr: Tensor, scale: int) -> Tensor:
        raise NotImplementedError

    def up(self, lr: Tensor, scale: int) -> Tensor:
        return resize(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))

    def down_up(self, hr: Tensor, scale: int) -> Tensor:
        return self.up(self.down(hr, scale), scale)


class Bicubic(Degradation):
    """Antialiased bicubic downsampling (the paper's degradation)."""

    def down(self, hr: Tensor, scale: int) -> Tensor:
        h, w = hr.shape[-2:]
        if h % scale or w % scale:
            raise ValueError(f"HR size {h}x{w} is not divisible by scale {scale}")
        return resize(hr, (h // scale, w // scale))
