"""Typed records shared by the data layer, training, evaluation and inference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from torch import Tensor

__all__ = ["NormStats", "PairedSample", "Volume"]


@dataclass(frozen=True)
class NormStats:
    """Per-volume robust scaling: ``x_norm = 2 * (x - low) / (high - low) - 1`` (Section IV-A: [-1, 1]).

    Attributes:
        low: intensity mapped to -1 (a low percentile of the foreground).
        high: intensity mapped to +1 (a high percentile).
    """

    low: float
    high: float

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return (2.0 * (x - self.low) / (self.high - self.low) - 1.0).astype(np.float32)

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        return (x + 1.0) * 0.5 * (self.high - self.low) + self.low


@dataclass(frozen=True)
class Volume:
    """An image volume with its geometry, as read from disk.

    Attributes:
        data: (X, Y, Z) float32 intensities (voxel axes as stored; a 2-D image has Z = 1).
        affine: (4, 4) voxel -> world matrix in RAS mm (the nibabel convention).
        path: the file or folder it was read from (for messages).
        slice_thickness: the acquisition's slice thickness in mm where its header states it (DICOM
            ``SliceThickness``, or the ``SliceThickness`` of a BIDS JSON sidecar beside a NIfTI file); None when
            it does not (the slice spacing is then all that is known).
    """

    data: np.ndarray
    affine: np.ndarray
    path: str
    slice_thickness: float | None = None

    @property
    def voxel_size(self) -> tuple[float, float, float]:
        """Voxel size in mm along each voxel axis (column norms of the affine)."""
        x, y, z = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(x), float(y), float(z)


class PairedSample(NamedTuple):
    """One training/evaluation example (tensors on the [-1, 1] scale, channel-first).

    Attributes:
        hr: (1, H, W) high-resolution target (ground truth).
        ref: (1, H, W) high-resolution reference contrast on the target grid.
        lr: (1, H/scale, W/scale) low-resolution target.
        subject: subject / volume id.
        slice_index: index of the slice in its volume.
        target_stats: normalisation of the target volume (to map outputs back).
        ref_stats: normalisation of the reference volume.
        hr_coords / ref_coords: training samples only: (2, H, W) canvas coordinates (y, x) of the anatomy each
            target / reference pixel shows (the true correspondence under the synthetic misalignment;
            reference pixels showing nothing hold a far-away value), else None.
        degradation: spec of the degradation the LR was made with (``fasr.data.degrade.degradation_from_spec``);
            the model makes this sample's Ref-down-up with it.
    """

    hr: Tensor
    ref: Tensor
    lr: Tensor
    subject: str
    slice_index: int
    target_stats: tuple[float, float]
    ref_stats: tuple[float, float]
    hr_coords: Tensor | None = None
    ref_coords: Tensor | None = None
    degradation: str = ""
