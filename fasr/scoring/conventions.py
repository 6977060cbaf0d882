"""Scoring conventions: on which intensity scale, with which SSIM, and how slices pool into one number.

* ``fastmri`` (default): the fastMRI challenge evaluation. Images are mapped back to scanner intensities;
  data range = the maximum of the ground-truth volume; PSNR and NMSE over each whole volume; SSIM with a
  7x7 box window per slice, averaged over the volume's slices; the summary averages volumes.
* ``paper``: the authors' public test. Images on [-1, 1] are mapped to 8 bits (``round(clip((x + 1) * 127.5))``);
  data range 255; SSIM with an 11x11 Gaussian window (sigma 1.5); every score per slice; the summary averages
  all slices.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from fasr.data.types import NormStats
from fasr.errors import FasrError
from fasr.scoring.metrics import NMSE, PSNR, SSIM, Metric

__all__ = ["Convention", "FastMRIConvention", "PaperConvention", "CONVENTIONS", "get_convention", "Scores"]

# metric name -> value; one row of a table.
Scores = dict[str, float]


class Convention(ABC):
    """How predictions are scored; subclasses fix the scale, the SSIM window and the pooling."""

    name: ClassVar[str]
    protocol: ClassVar[str]  # one line stated in every output

    def __init__(self) -> None:
        self.metrics: tuple[Metric, ...] = (PSNR(), self.ssim(), NMSE())

    @abstractmethod
    def ssim(self) -> SSIM:
        """The SSIM variant of this convention."""

    @abstractmethod
    def to_images(self, x: np.ndarray, stats: NormStats) -> np.ndarray:
        """Map (N, H, W) images on [-1, 1] to the scale scores are computed on."""

    @abstractmethod
    def data_range(self, target: np.ndarray) -> float:
        """Data range for the (N, H, W) ground-truth volume ``target`` (on the scoring scale)."""

    @abstractmethod
    def pool_volume(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None, data_range: float, slices: list[Scores]
    ) -> Scores:
        """One row for a whole volume, from the arrays or from its per-slice rows."""

    @abstractmethod
    def summarize(self, volumes: list[Scores], slices: list[Scores]) -> Scores:
        """The headline numbers of one method over the evaluated set."""

    def score_volume(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None
    ) -> tuple[Scores, list[Scores]]:
        """Scores of one volume and of each of its slices (slices whose mask is empty score NaN).

        Args:
            pred: (N, H, W) prediction on the scoring scale.
            target: (N, H, W) ground truth on the scoring scale.
            mask: optional (N, H, W) boolean foreground.
        """
        data_range = self.data_range(target)
        slices = []
        for i in range(target.shape[0]):
            m = None if mask is None else mask[i]
            if m is not None and not m.any():
                slices.append({metric.name: float("nan") for metric in self.metrics})
                continue
            slices.append(
                {metric.name: metric(pred[i], target[i], data_range=data_range, mask=m) for metric in self.metrics}
            )
        return self.pool_volume(pred, target, mask, data_range, slices), slices


def _mean(rows: list[Scores]) -> Scores:
    """Column means, ignoring NaN (slices without foreground)."""
    return {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0]}


class FastMRIConvention(Convention):
    name = "fastmri"
    protocol = (
        "fastMRI: scanner intensities, data range = max of the ground-truth volume, PSNR/NMSE per volume, "
        "SSIM 7x7 box window per slice averaged per volume, mean over volumes"
    )

    def ssim(self) -> SSIM:
        return SSIM.fastmri()

    def to_images(self, x: np.ndarray, stats: NormStats) -> np.ndarray:
        return stats.denormalize(x.astype(np.float64))

    def data_range(self, target: np.ndarray) -> float:
        return float(target.max())

    def pool_volume(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None, data_range: float, slices: list[Scores]
    ) -> Scores:
        return {metric.name: metric(pred, target, data_range=data_range, mask=mask) for metric in self.metrics}

    def summarize(self, volumes: list[Scores], slices: list[Scores]) -> Scores:
        return _mean(volumes)


class PaperConvention(Convention):
    name = "paper"
    protocol = (
        "paper (authors' public test): 8-bit images from [-1, 1], data range 255, SSIM 11x11 Gaussian "
        "window sigma 1.5, scores per slice, mean over slices"
    )

    def ssim(self) -> SSIM:
        return SSIM.paper()

    def to_images(self, x: np.ndarray, stats: NormStats) -> np.ndarray:
        return np.round(np.clip((x.astype(np.float64) + 1.0) * 127.5, 0.0, 255.0))

    def data_range(self, target: np.ndarray) -> float:
        return 255.0

    def pool_volume(
        self, pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None, data_range: float, slices: list[Scores]
    ) -> Scores:
        return _mean(slices)

    def summarize(self, volumes: list[Scores], slices: list[Scores]) -> Scores:
        return _mean(slices)


CONVENTIONS: dict[str, type[Convention]] = {c.name: c for c in (FastMRIConvention, PaperConvention)}


def get_convention(name: str) -> Convention:
    """The convention called ``name`` (``fastmri`` or ``paper``)."""
    if name not in CONVENTIONS:
        raise FasrError(f"unknown convention '{name}'; choose one of {sorted(CONVENTIONS)}")
    return CONVENTIONS[name]()
