"""The reference add-ons of FASR-Net (ours, not the paper's): ``model.ref_detail``, ``model.ref_guided`` and
``model.guide_order`` in one place, so that :meth:`fasr.models.fasrnet.FASRNet.forward` reads as Fig. 2.

Reference images ride along with V^1 through every alignment module and come back aligned with that module's own
matches: the band the LR lacks as the reference shows it (I_Ref - I_Ref-down-up), and for ``ref_guided`` the
reference's LR view (and with ``guide_order: 2`` the same two views of I_Ref^2). ``ref_detail`` injects the aligned
band into the fusion at full resolution; ``ref_guided`` fits the LR to the aligned LR view window by window
(:mod:`fasr.models.guided`), injects the predicted band with the fit's strength, adds that band to the output under
a per-pixel gate, and multiplies the confidence by the fit's rho^2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.data.degrade import Degradation
from fasr.models.alignment import AlignmentResult
from fasr.models.guided import explained_share, local_linear_detail, local_quadratic_detail, squared_views

__all__ = ["ReferenceGuide"]


@dataclass(frozen=True)
class ReferenceGuide:
    """Which add-ons are on; every method is a no-op when none is.

    Attributes:
        detail: ``model.ref_detail``.
        guided: ``model.ref_guided``.
        order: ``model.guide_order`` (1: linear fit, 2: quadratic).
    """

    detail: bool
    guided: bool
    order: int

    @property
    def n_images(self) -> int:
        """How many reference images ride along with V^1."""
        return 0 if not (self.detail or self.guided) else 1 if not self.guided else 2 if self.order == 1 else 4

    def attach(self, v1: Tensor, ref: Tensor, ref_p: Tensor, ref_du_p: Tensor, degradation: Degradation, scale: int,
               pad: tuple[int, int, int, int]) -> Tensor:
        """V^1 (B, C_1, H, W) with the carried reference images appended as channels, channels-last as V (the
        transfer reads whole pixel rows of channels); ``*_p`` are padded, ``ref`` is not."""
        if not self.n_images:
            return v1
        carried = [ref_p - ref_du_p]  # the band the LR lacks, as the reference shows it
        if self.guided:
            carried.append(ref_du_p)
            if self.order == 2:
                squared = squared_views(ref, degradation, scale)  # (DU(I_Ref^2), its band)
                carried += [F.pad(x, pad, mode="replicate") for x in squared]  # local_quadratic_detail's order
        v1 = torch.cat([v1, *(c.to(v1.dtype) for c in carried)], dim=1)  # (B, C_1 + n_images, H, W)
        return v1.contiguous(memory_format=torch.channels_last)

    def detach(self, results: Sequence[AlignmentResult], lr_up_p: Tensor
               ) -> tuple[list[AlignmentResult], Tensor | None, Tensor | None]:
        """Split the carried channels off each module's full-resolution texture again; returns the results without
        them, the aligned band for ``ref_detail`` (B, n_align, H, W) and the guide for ``ref_guided`` (B, 2 n_align,
        H, W: predicted band, then fit strength), each None when off."""
        n = self.n_images
        if not n:
            return list(results), None, None
        aligned = [r.features["1"][:, -n:] for r in results]  # per module (B, n, H, W)
        results = [r._replace(features={**r.features, "1": r.features["1"][:, :-n]}) for r in results]
        band = torch.cat([a[:, :1] for a in aligned], dim=1)  # (B, n_align, H, W)
        guide = None
        if self.guided:
            # carried image j of every module, each (B, n_align, H, W)
            views = [torch.cat([a[:, j : j + 1] for a in aligned], dim=1) for j in range(1, n)]
            fit = local_linear_detail if self.order == 1 else local_quadratic_detail
            guide = fit(lr_up_p, views[0], band, *views[1:]).to(band.dtype)
        return results, band if self.detail else None, guide

    @staticmethod
    def confidence(attention: Tensor, guide: Tensor | None) -> Tensor:
        """The soft attention on the SR grid, times the guide's rho^2 when there is one (matched AND explaining the
        LR: ~0 in flat background), clamped to [0, 1]."""
        if guide is not None:
            n = guide.shape[1] // 2
            attention = attention * explained_share(guide[:, n:]).mean(1, keepdim=True)[..., : attention.shape[-2],
                                                                                      : attention.shape[-1]]
        return attention.clamp(0.0, 1.0)

    @staticmethod
    def gated_band(gate: nn.Module | None, feats: Tensor, guide: Tensor | None) -> Tensor | float:
        """The predicted band (first half of the guide) summed over modules under the per-pixel gate the trunk's
        features and the guide decide (B, 1, H, W); 0 without a guide."""
        if gate is None or guide is None:
            return 0.0
        n = guide.shape[1] // 2
        weights = gate(torch.cat([feats, guide], dim=1))  # (B, n_align, H, W)
        return (weights * guide[:, :n]).sum(1, keepdim=True)
