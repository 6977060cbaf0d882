"""Full-reference image metrics: PSNR, SSIM and NMSE on NumPy arrays, always with an explicit ``data_range``.

All metrics accept one slice (H, W) or a stack (N, H, W) and an optional boolean foreground ``mask`` of the
same shape. PSNR and NMSE pool the squared error over every (masked) pixel of the array; SSIM is computed per
slice and averaged over slices (as fastMRI does for volumes). Computation is in float64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np
from scipy import ndimage

__all__ = ["Metric", "PSNR", "SSIM", "NMSE", "foreground_mask"]


class Metric(ABC):
    """A score of ``pred`` against the ground truth ``target``.

    Attributes:
        name: short lower-case key used in tables and JSON.
        higher_is_better: direction of improvement.
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def __call__(
        self, pred: np.ndarray, target: np.ndarray, *, data_range: float, mask: np.ndarray | None = None
    ) -> float:
        """Score ``pred`` against ``target``.

        Args:
            pred: (H, W) or (N, H, W) prediction.
            target: ground truth, same shape.
            data_range: dynamic range of the images (e.g. 255 for 8-bit, the volume maximum for fastMRI).
            mask: optional boolean foreground mask, same shape; only its pixels are scored.
        """
        if pred.shape != target.shape or pred.ndim not in (2, 3):
            raise ValueError(f"pred {pred.shape} and target {target.shape} must be equal (H, W) or (N, H, W)")
        if mask is not None and (mask.shape != target.shape or not mask.any()):
            raise ValueError(f"mask {mask.shape} must match target {target.shape} and select at least one pixel")
        if data_range <= 0:
            raise ValueError(f"data_range must be positive, got {data_range}")
        return float(self.compute(pred.astype(np.float64), target.astype(np.float64), float(data_range), mask))

    @abstractmethod
    def compute(self, pred: np.ndarray, target: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
        """The metric on float64 arrays whose arguments were checked by :meth:`__call__`."""


def _select(x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return x if mask is None else x[mask]


class PSNR(Metric):
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB (inf for a perfect prediction)."""

    name = "psnr"
    higher_is_better = True

    def compute(self, pred: np.ndarray, target: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
        mse = np.mean(_select((pred - target) ** 2, mask))
        return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


class NMSE(Metric):
    """Normalised mean squared error ``||pred - target||^2 / ||target||^2`` (fastMRI's).

    It is scale-free: ``data_range`` is checked but does not enter the value. A target without energy (an empty
    slice) leaves it undefined: NaN, which the conventions' means skip like slices with an empty mask.
    """

    name = "nmse"
    higher_is_better = False

    def compute(self, pred: np.ndarray, target: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
        energy = np.sum(_select(target**2, mask))
        return float("nan") if energy == 0 else np.sum(_select((pred - target) ** 2, mask)) / energy


class SSIM(Metric):
    """Structural similarity (Wang et al. 2004), the mean of the SSIM map of each slice, averaged over slices.

    The map's border of half a window is excluded (as scikit-image and the authors' 'valid' filtering do).
    Use :meth:`fastmri` or :meth:`paper` for the two conventions.

    Args:
        window: ``uniform`` (box) or ``gaussian`` weights.
        size: window side for ``uniform``; ``gaussian`` windows span ``2 * int(3.5 * sigma + 0.5) + 1``.
        sigma: Gaussian standard deviation.
        sample_covariance: divide (co)variances by ``n - 1`` instead of ``n``.
        k1, k2: stabilising constants, ``C_i = (k_i * data_range)^2``.
    """

    name = "ssim"
    higher_is_better = True
    TRUNCATE = 3.5  # Gaussian support in standard deviations (scipy/scikit-image)

    def __init__(
        self,
        window: Literal["uniform", "gaussian"],
        size: int = 7,
        sigma: float = 1.5,
        sample_covariance: bool = True,
        k1: float = 0.01,
        k2: float = 0.03,
    ) -> None:
        self.window, self.sigma, self.sample_covariance, self.k1, self.k2 = window, sigma, sample_covariance, k1, k2
        self.size = size if window == "uniform" else 2 * int(self.TRUNCATE * sigma + 0.5) + 1

    @classmethod
    def fastmri(cls) -> SSIM:
        """fastMRI's evaluation: 7x7 box window, sample covariance (scikit-image defaults)."""
        return cls("uniform", size=7, sample_covariance=True)

    @classmethod
    def paper(cls) -> SSIM:
        """The authors' public test: 11x11 Gaussian window, sigma 1.5, population covariance (Wang et al.)."""
        return cls("gaussian", sigma=1.5, sample_covariance=False)

    def _filter(self, x: np.ndarray) -> np.ndarray:
        if self.window == "gaussian":
            return ndimage.gaussian_filter(x, sigma=self.sigma, truncate=self.TRUNCATE, mode="reflect")
        return ndimage.uniform_filter(x, size=self.size, mode="reflect")

    def ssim_map(self, pred: np.ndarray, target: np.ndarray, data_range: float) -> np.ndarray:
        """Per-pixel SSIM of one (H, W) slice pair (float64)."""
        n = self.size**2
        cov_norm = n / (n - 1) if self.sample_covariance else 1.0
        mu_p, mu_t = self._filter(pred), self._filter(target)
        var_p = cov_norm * (self._filter(pred * pred) - mu_p**2)
        var_t = cov_norm * (self._filter(target * target) - mu_t**2)
        cov = cov_norm * (self._filter(pred * target) - mu_p * mu_t)
        c1, c2 = (self.k1 * data_range) ** 2, (self.k2 * data_range) ** 2
        return ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))

    def compute(self, pred: np.ndarray, target: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
        pad = (self.size - 1) // 2
        # (H, W) -> (1, H, W): every input is a stack of slices from here on.
        pred, target = pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, *target.shape[-2:])
        masks = np.ones(pred.shape, bool) if mask is None else mask.reshape(pred.shape)
        scores = []
        for p, t, m in zip(pred, target, masks):
            valid = np.zeros_like(m)
            valid[pad : m.shape[0] - pad, pad : m.shape[1] - pad] = True
            valid &= m
            if valid.any():  # a slice whose foreground lies only in the border band has no score
                scores.append(self.ssim_map(p, t, data_range)[valid].mean())
        return float(np.mean(scores)) if scores else float("nan")


def foreground_mask(volume: np.ndarray, threshold: float) -> np.ndarray:
    """Foreground of a (N, H, W) ground-truth stack: pixels above ``threshold`` x its maximum, holes filled per slice.

    Filling keeps dark tissue inside the head (e.g. CSF on T1) in the mask.

    Args:
        volume: (N, H, W) ground truth.
        threshold: fraction of the stack's maximum (e.g. 0.05).
    """
    above = volume > threshold * volume.max()  # (N, H, W)
    return np.stack([ndimage.binary_fill_holes(s) for s in above])
