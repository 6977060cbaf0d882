"""The record every super-resolution model returns."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["SROutput"]


class SROutput(NamedTuple):
    """Result of ``model(lr, ref)``.

    Attributes:
        sr: (B, 1, H, W) super-resolved image on the [-1, 1] scale.
        attention: soft-attention maps (Eqs. 18-20) by grid name (``"1/4"``, ``"1/2"``, ``"1"``), each
            (B, 1, h, w); empty for models without reference matching.
        confidence: (B, 1, H, W) per-pixel map in [0, 1] of how strongly the reference drove the output
            (the soft attention on the SR grid), or None for single-image models.
        match_loss: scalar correspondence loss of the matching branches when the model was given the true
            matches (training, ``fasr.models.correspondence``), else None.
        matches: reference-based models: alignment module name -> (B, Nq) key cell matched to each query of the
            (padded) 1/4 grid, row-major (diagnostics); None for single-image models.
    """

    sr: Tensor
    attention: dict[str, Tensor]
    confidence: Tensor | None
    match_loss: Tensor | None = None
    matches: dict[str, Tensor] | None = None
