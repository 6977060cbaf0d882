"""Local linear cross-contrast detail (ours, not the paper's; ``model.ref_guided``).

Two co-registered contrasts are, within a small window, close to linear functions of each other (the idea of the
guided filter, He et al., TPAMI 2013): where T1 rises across an edge, T2 rises or falls by a locally fixed factor.
The LR target and the reference's LR view (I_Ref-down-up) show the same frequencies, so that factor can be fitted
on them, window by window, and applied to the band the LR lacks, as the reference shows it (I_Ref -
I_Ref-down-up): a prediction of the target's missing band. It only exists for the right reference: another
patient's anatomy or noise fits badly, which the fit's squared correlation rho^2 says per pixel. The network gets
it as the fit's strength log(1.001 / (1.001 - rho^2)), on [0, 6.9]: a linear gate on rho^2 barely tells an exact fit
(0.997, the HR target as reference) from a good one (0.7, the true T1), the strength does: 5.5 and 1.2.

Order 2 (``model.guide_order``, ours): the target as a local quadratic function of the reference, fitted on the
LR views of the reference and of its square (hr ~ a ref + c ref^2 + b, so LR-up ~ a DU(ref) + c DU(ref^2) + b),
the missing band predicted as a (ref - DU(ref)) + c (ref^2 - DU(ref^2)). Three tissues in one window (CSF, grey and
white matter) are not on one line in T1-T2 space but close to a parabola. Measured on the 32 test slices of
``fasr bench reference`` (x4, bicubic plus the fit alone, 5x5 windows): true T1 30.52 -> 33.07 dB (linear 32.57),
another subject's T1 29.92 (linear 30.05).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fasr.data.degrade import Degradation

__all__ = [
    "box_mean", "local_linear_detail", "local_quadratic_detail", "squared_views", "explained_share", "GUIDE_RADIUS",
    "GUIDE_EPS",
    "RHO_EPS", "STRENGTH_FLOOR",
]

GUIDE_RADIUS = 2  # 5x5 windows at full resolution
# Regulariser of the slope, on [-1, 1] intensities: windows with variance << 1e-3 get a slope near 0. Measured on
# the 32 test slices of `fasr bench reference` (x4, bicubic plus the fit alone): 1e-3 gave the true T1 +2.05 dB over
# bicubic and the HR target itself +15.7 dB, 1e-2 gave +1.73 and +6.9 dB.
GUIDE_EPS = 1e-3
# Regulariser of the squared correlation (only against 0 / 0): rho^2 says how well the fit holds, whatever the
# window's contrast.
RHO_EPS = 1e-6
STRENGTH_FLOOR = 1e-3  # strength = log((1 + floor) / (1 + floor - rho^2)): 0 at rho^2 = 0


def box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean over the (2 radius + 1)^2 window around each pixel, edges replicated; same shape as ``x``."""
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


def _strength(r2: Tensor) -> Tensor:
    """log((1 + floor) / (1 + floor - r2)) of a fit's squared correlation r2 on [0, 1]: on [0, 6.9]."""
    r2 = r2.clamp(0, 1)
    return (math.log1p(STRENGTH_FLOOR) - torch.log1p(STRENGTH_FLOOR - r2)).clamp_min(0)


def explained_share(strength: Tensor) -> Tensor:
    """The fit's squared correlation rho^2 on [0, 1] back from its strength (the inverse of :func:`_strength`): the
    share of the LR's local variance that the transferred reference explains."""
    return ((1 + STRENGTH_FLOOR) * -torch.expm1(-strength)).clamp(0, 1)


def _cov(x: Tensor, y: Tensor, radius: int) -> Tensor:
    """Covariance of x and y over each window (same shape)."""
    return box_mean(x * y, radius) - box_mean(x, radius) * box_mean(y, radius)


def local_linear_detail(
    lr_up: Tensor, ref_du: Tensor, band: Tensor, radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS
) -> Tensor:
    """Fit lr_up ~ a * ref_du + b in each window and apply the (window-averaged) slope to the reference's band.

    Computed in fp32 with autocast off: the window variances are differences of close numbers.

    Args:
        lr_up: (B, 1 or n, H, W) I_LR-up.
        ref_du: (B, n, H, W) I_Ref-down-up, as each alignment module transferred it.
        band: (B, n, H, W) I_Ref - I_Ref-down-up, transferred with the same matches.
        radius: window radius in pixels.
        eps: slope regulariser.

    Returns:
        (B, 2 n, H, W): the predicted missing band a * band for each of the n, then the fit's strength
        log(1.001 / (1.001 - rho^2)) in [0, 6.9] for each (rho^2: the fit's squared correlation in the window).
    """
    with torch.autocast(lr_up.device.type, enabled=False):
        lr_up, ref_du, band = lr_up.float(), ref_du.float(), band.float()
        cov = _cov(lr_up, ref_du, radius)  # (B, n, H, W)
        var_r, var_l = _cov(ref_du, ref_du, radius).clamp_min(0), _cov(lr_up, lr_up, radius).clamp_min(0)
        slope = box_mean(cov / (var_r + eps), radius)
        rho2 = cov * cov / ((var_l + RHO_EPS) * (var_r + RHO_EPS))
        return torch.cat([slope * band, _strength(rho2)], dim=1)


def squared_views(ref: Tensor, degradation: Degradation, scale: int) -> tuple[Tensor, Tensor]:
    """The squared reference's two views for :func:`local_quadratic_detail`: (DU(I_Ref^2), I_Ref^2 - DU(I_Ref^2)).

    Args:
        ref: (B, 1, H, W) I_Ref.
        degradation: makes the down-up view (the LR's degradation).
        scale: its factor.
    """
    sq = ref * ref
    sq_du = degradation.down_up(sq, scale)
    return sq_du, sq - sq_du


def local_quadratic_detail(
    lr_up: Tensor, ref_du: Tensor, band: Tensor, sq_du: Tensor, sq_band: Tensor,
    radius: int = GUIDE_RADIUS, eps: float = GUIDE_EPS,
) -> Tensor:
    """Fit lr_up ~ a * ref_du + c * sq_du + b in each window (ridge, two regressors) and apply the window-averaged
    coefficients to the two bands (order 2 of ``model.guide_order``, ours).

    Args:
        lr_up: (B, 1 or n, H, W) I_LR-up.
        ref_du / band: (B, n, H, W) I_Ref-down-up and I_Ref - I_Ref-down-up, as each alignment module transferred them.
        sq_du / sq_band: (B, n, H, W) the same two for the squared reference: DU(I_Ref^2) and I_Ref^2 - DU(I_Ref^2).
        radius: window radius in pixels.
        eps: coefficient regulariser (added to both variances).

    Returns:
        (B, 2 n, H, W) float32 as :func:`local_linear_detail`: the predicted band, then the strength of the fit's
        R^2. With two regressors chance fits score higher than with one (a noise reference: R^2 ~0.56 against rho^2
        ~0.31 on smooth test images); the network learns the scale.

    The window moments are computed in float64 where the device has it (not on Apple's MPS): DU(I_Ref) and
    DU(I_Ref^2) are nearly collinear in low-contrast windows, and in float32 the 2x2 determinant and R^2 lose most
    of their digits there (strength errors up to ~4 on its 0-6.9 scale; the predicted band stays exact to 1e-5).
    """
    dtype = torch.float32 if lr_up.device.type == "mps" else torch.float64
    with torch.autocast(lr_up.device.type, enabled=False):
        lr_up, ref_du, band, sq_du, sq_band = (x.to(dtype) for x in (lr_up, ref_du, band, sq_du, sq_band))
        c11, c22 = _cov(ref_du, ref_du, radius).clamp_min(0), _cov(sq_du, sq_du, radius).clamp_min(0)
        c12 = _cov(ref_du, sq_du, radius)
        y1, y2 = _cov(lr_up, ref_du, radius), _cov(lr_up, sq_du, radius)
        var_l = _cov(lr_up, lr_up, radius).clamp_min(0)
        gram = (c11 * c22 - c12 * c12).clamp_min(0)  # det of the unregularised 2x2 covariance, >= 0

        def solve(reg: float) -> tuple[Tensor, Tensor]:
            """(a, c) of the 2x2 system [[c11 + reg, c12], [c12, c22 + reg]] (a, c) = (y1, y2)."""
            det = gram + reg * (c11 + c22) + reg * reg
            return ((c22 + reg) * y1 - c12 * y2) / det, ((c11 + reg) * y2 - c12 * y1) / det

        a, c = solve(eps)
        pred = box_mean(a, radius) * band + box_mean(c, radius) * sq_band
        a0, c0 = solve(RHO_EPS)
        r2 = (a0 * y1 + c0 * y2) / (var_l + RHO_EPS)  # explained share of the LR's window variance
        return torch.cat([pred, _strength(r2)], dim=1).float()
