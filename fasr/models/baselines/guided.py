"""The local linear fit alone (ours, parameter-free): bicubic plus the reference's missing band mapped into the
target's contrast window by window (:mod:`fasr.models.guided`). It shows, with no network, how much a reference
can say about the missing band: a lot for the right one, nothing (or harm) for a wrong one."""

from __future__ import annotations

from torch import Tensor

from fasr.data.degrade import Bicubic, Degradation
from fasr.models.baselines.common import ResidualSR
from fasr.models.config import ModelConfig, ref_degradation_of
from fasr.models.guided import local_linear_detail, local_quadratic_detail, squared_views

__all__ = ["GuidedFitSR", "from_config"]


class GuidedFitSR(ResidualSR):
    """``sr = up(lr) + a * (ref - ref_down_up)`` with the slope ``a`` fitted between ``up(lr)`` and
    ``ref_down_up`` in 5x5 windows (no training, no matching: the reference must be registered); order 2 adds
    ``c * (ref^2 - DU(ref^2))``, fitted jointly.

    Args:
        scale: upsampling factor.
        ref_degradation: how I_Ref-down-up is made (the LR's degradation).
        order: 1 = linear, 2 = quadratic fit (``model.guide_order``).
    """

    def __init__(self, scale: int, ref_degradation: Degradation | None = None, order: int = 1) -> None:
        super().__init__(scale)
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (linear) or 2 (quadratic), got {order}")
        self.ref_degradation = ref_degradation or Bicubic()
        self.order = order

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        ref_du = self.ref_degradation.down_up(ref, self.scale)  # (B, 1, H, W)
        if self.order == 1:
            return local_linear_detail(base, ref_du, ref - ref_du)[:, :1]  # the predicted band; strength unused
        squared = squared_views(ref, self.ref_degradation, self.scale)  # (DU(ref^2), ref^2 - DU(ref^2))
        return local_quadratic_detail(base, ref_du, ref - ref_du, *squared)[:, :1]


def from_config(cfg: ModelConfig) -> GuidedFitSR:
    """Build from the model section of a run config (``scale``, ``ref_degradation`` and ``guide_order``)."""
    return GuidedFitSR(cfg.scale, ref_degradation_of(cfg), cfg.guide_order)
