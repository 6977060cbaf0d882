"""Local linear cross-contrast detail (ours, not the paper's; ``model.ref_guided``).

Two co-registered contrasts are, within a small window, close to linear functions of each other (the idea of the
guided filter, He et al., TPAMI 2013): where T1 rises across an edge, T2 rises or falls by a locally fixed factor.
The LR target and the reference's LR view (I_Ref-down-up) show the same frequencies, so that factor can be fitted
on them, window by window, and applied to the band the LR lacks, as the reference shows it (I_Ref -
I_Ref-down-up): a prediction of the target's missing band. It only exists for the right reference: another
patient's anatomy or noise fits badly, which the fit's squared correlation rho^2 says per pixel. The network gets
it as the fit's strength log(1.001 / (1.001 - rho^2)), on [0, 6.9]: a linear gate on rho^2 barely tells an exact fit
(0.997, the HR target as reference) from a good one (0.7, the true T1), the strength does: 5.5 and 1.2.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["box_mean", "local_linear_detail", "GUIDE_RADIUS", "GUIDE_EPS", "RHO_EPS", "STRENGTH_FLOOR"]

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
        mean_l, mean_r = box_mean(lr_up, radius), box_mean(ref_du, radius)
        cov = box_mean(lr_up * ref_du, radius) - mean_l * mean_r  # (B, n, H, W)
        var_r = (box_mean(ref_du * ref_du, radius) - mean_r * mean_r).clamp_min(0)
        var_l = (box_mean(lr_up * lr_up, radius) - mean_l * mean_l).clamp_min(0)
        slope = box_mean(cov / (var_r + eps), radius)
        rho2 = (cov * cov / ((var_l + RHO_EPS) * (var_r + RHO_EPS))).clamp(0, 1)
        strength = math.log1p(STRENGTH_FLOOR) - torch.log1p(STRENGTH_FLOOR - rho2)
        return torch.cat([slope * band, strength], dim=1)
