"""Super-resolve a volume with a reference contrast: SR grid, reference resampled through the affines, each
input normalised by its own volume's statistics, slice batches through the model, intensities back on the
target's scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fasr.data.degrade import SliceProfile, resize
from fasr.data.geometry import check_coverage, resample_to_grid
from fasr.data.normalize import normalize_clipped, robust_stats
from fasr.data.thick import along_axis
from fasr.data.types import NormStats, Volume
from fasr.inference.engine.adapt import adapt_model
from fasr.inference.engine.slices import RunSettings, super_resolve_slices
from fasr.inference.engine.stacks import Slicer
from fasr.inference.grid import SRGrid, plan_sr_grid, plan_thick_grid

__all__ = ["InferenceResult", "upsample_stack", "reference_coverage", "super_resolve_volume", "super_resolve_thick"]

# Smallest fraction of the SR grid the reference must cover (fasr.data.geometry.check_coverage).
MIN_COVERAGE = 0.9


@dataclass(frozen=True)
class InferenceResult:
    """A super-resolved volume and what was used to make it.

    Attributes:
        sr: (X', Y', Z') float32 super-resolved target, on the LR's intensity scale.
        confidence: (X', Y', Z') float32 soft-attention confidence in [0, 1] (Eqs. 18-20), or None for models
            without reference matching.
        reference: (X', Y', Z') float32 reference resampled onto the SR grid (its own intensities).
        grid: the SR grid (shape, affine, slice axis).
        coverage: fraction of the SR grid inside the reference's field of view.
        target_stats / ref_stats: normalisation of the LR target and of the resampled reference.
        stats: throughput and memory plan of the slice loop (:class:`fasr.inference.engine.slices.SliceResult`).
    """

    sr: np.ndarray
    confidence: np.ndarray | None
    reference: np.ndarray
    grid: SRGrid
    coverage: float
    target_stats: NormStats
    ref_stats: NormStats
    stats: dict | None = None


def upsample_stack(stack: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic upsampling of (N, h, w) slices to (N, h * scale, w * scale) (the models' LR-up, Section III-A)."""
    n, h, w = stack.shape
    x = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))[:, None]  # (N, 1, h, w)
    return resize(x, (h * scale, w * scale))[:, 0].numpy()  # (N, H, W)


def reference_coverage(
    lr: Volume, ref: Volume, scale: int, inplane_axes: Sequence[int] | None, min_fraction: float = MIN_COVERAGE,
    thick_axis: int | None = None,
) -> tuple[SRGrid, float]:
    """The SR grid of ``lr`` and the fraction of it that ``ref``, as its affine places it, covers.

    Args:
        lr / ref: the LR target and the reference.
        scale / inplane_axes: as :func:`super_resolve_volume`.
        min_fraction: less coverage is a one-line error.
        thick_axis: a through-plane grid: the thick axis, refined ``scale`` times (``inplane_axes`` unused).

    Raises:
        FasrError: the reference covers less than ``min_fraction`` of the grid.
    """
    if thick_axis is None:
        grid = plan_sr_grid(lr.data.shape, lr.affine, ref.affine, scale, inplane_axes)
    else:
        grid = plan_thick_grid(lr.data.shape, lr.affine, ref.affine, thick_axis, scale)
    coverage = check_coverage(
        ref.data.shape, ref.affine, grid.shape, grid.affine, ref.path, lr.path, min_fraction=min_fraction
    )
    return grid, coverage


def _reference_and_stats(
    lr: Volume, ref: Volume, grid: SRGrid, norm_percentiles: tuple[float, float]
) -> tuple[np.ndarray, NormStats, NormStats]:
    """The reference resampled onto ``grid`` (trilinear, through the affines), and each input's own normalisation:
    the LR's from the LR, the reference's from the resampled reference."""
    reference = resample_to_grid(ref.data, ref.affine, grid.shape, grid.affine, order=1)
    return reference, robust_stats(lr, *norm_percentiles), robust_stats(reference, *norm_percentiles, name=ref.path)


def super_resolve_volume(
    model: nn.Module,
    lr: Volume,
    ref: Volume,
    scale: int,
    *,
    norm_percentiles: tuple[float, float],
    batch_size: int,
    device: torch.device,
    progress: bool,
    inplane_axes: Sequence[int] | None = None,
    settings: RunSettings | None = None,
) -> InferenceResult:
    """Super-resolve every slice of ``lr`` with the matching slice of ``ref`` resampled onto the SR grid.

    Slices are taken along the grid's slice axis in display orientation (:class:`Slicer`). Both inputs are
    scaled to [-1, 1] by the :func:`fasr.data.normalize.robust_stats` of its own volume and clipped: the LR by
    the LR's (training normalises the LR with the statistics of the HR target it was degraded from, which
    inference does not have), the reference by those of the reference resampled onto the SR grid.
    What clipping removes from the LR (values beyond the percentiles, e.g. the brightest CSF or negative
    background) is added back bicubically upsampled, so the output keeps the input's full intensity range.

    Args:
        model: SR model in eval mode on ``device``, trained for ``scale``.
        lr: low-resolution target volume.
        ref: high-resolution reference volume of the same patient (any grid covering the LR).
        scale: in-plane upsampling factor.
        norm_percentiles: foreground percentiles mapped to -1 / +1 (the checkpoint's ``data.norm_percentiles``).
        batch_size: slices per forward pass.
        device: where the model runs.
        progress: show a progress bar.
        inplane_axes: the two in-plane voxel axes of ``lr``; None applies the rule of :mod:`fasr.inference.grid`.
        settings: precision and memory budget of the slice loop (default: fp32, budget from the machine).

    Raises:
        FasrError: the reference does not cover the LR field of view.
    """
    grid, coverage = reference_coverage(lr, ref, scale, inplane_axes)
    reference, target_stats, ref_stats = _reference_and_stats(lr, ref, grid, norm_percentiles)

    slicer = Slicer.for_grid(grid.affine, grid.slice_axis)  # the LR grid's axes point the same way
    lr_norm = slicer.to_stack(target_stats.normalize(lr.data))  # (N, h, w), unclipped
    lr_in = np.clip(lr_norm, -1.0, 1.0)
    ref_in = slicer.to_stack(normalize_clipped(reference, ref_stats))  # (N, H, W)
    out = super_resolve_slices(model, lr_in, ref_in, scale, batch_size, device, progress, settings)
    sr_norm = out.sr + upsample_stack(lr_norm - lr_in, scale)  # clipped-away excess, bicubic
    return InferenceResult(
        sr=target_stats.denormalize(slicer.from_stack(sr_norm)).astype(np.float32),
        confidence=None if out.confidence is None else slicer.from_stack(out.confidence),
        reference=reference,
        grid=grid,
        coverage=coverage,
        target_stats=target_stats,
        ref_stats=ref_stats,
        stats=out.stats,
    )



def super_resolve_thick(
    model: nn.Module,
    lr: Volume,
    ref: Volume,
    profile: SliceProfile,
    thick_axis: int,
    *,
    norm_percentiles: tuple[float, float],
    batch_size: int,
    device: torch.device,
    progress: bool,
    settings: RunSettings | None = None,
    adapt: int = 0,
) -> InferenceResult:
    """Through-plane super-resolution (ours): refine the thick axis of ``lr`` ``profile.factor`` times.

    The LR is normalised as in :func:`super_resolve_volume` and interpolated along the thick axis onto the output
    grid (``profile.up``, the model's I_LR-up); the model then runs on the planes that contain the thick axis, once
    across each of the two other axes (rows: the thick axis, as in training), and the two volumes are averaged.
    Where the model adds nothing (an untrained, zero-initialised output) both are the interpolation, exactly.

    Args:
        model: through-plane model in eval mode on ``device``.
        lr: thick-slice target.
        ref: high-resolution reference of the same patient (any grid covering the LR).
        profile: the slice profile, with this scan's factor.
        thick_axis: the LR's thick voxel axis.
        norm_percentiles / batch_size / device / progress / settings: as :func:`super_resolve_volume`.
        adapt: first fine-tune a copy of the model for this many steps on the scan's own slices
            (:func:`fasr.inference.engine.adapt.adapt_model`; 0: off).
    """
    grid, coverage = reference_coverage(lr, ref, profile.factor, None, thick_axis=thick_axis)
    reference, target_stats, ref_stats = _reference_and_stats(lr, ref, grid, norm_percentiles)
    lr_norm = target_stats.normalize(lr.data)
    lr_in = np.clip(lr_norm, -1.0, 1.0)
    lr_up = along_axis(lr_in, thick_axis, "up", profile)  # (X', Y', Z') on the output grid
    ref_in = normalize_clipped(reference, ref_stats)
    stats: dict = {"slice_profile": profile.spec, "planes": []}  # what the model assumed the scan went through
    if adapt:
        ref_thick = along_axis(ref_in, thick_axis, "down", profile)  # the reference in the scan's thick slices
        model, stats["adapt"] = adapt_model(model, lr_in, ref_thick, thick_axis, profile, adapt, device)
    sr_sum, confidence_sum = np.zeros(grid.shape, np.float32), None
    for across in (a for a in range(3) if a != thick_axis):
        def planes(volume: np.ndarray) -> np.ndarray:  # (N, T', B): planes across `across`, thick axis as rows
            return np.ascontiguousarray(np.moveaxis(volume, (across, thick_axis), (0, 1)))

        out = super_resolve_slices(model, planes(lr_up), planes(ref_in), 1, batch_size, device, progress, settings,
                                   degradation=profile)  # Ref-down-up with this scan's factor
        sr_sum += np.moveaxis(out.sr, (0, 1), (across, thick_axis))
        if out.confidence is not None:
            confidence = np.moveaxis(out.confidence, (0, 1), (across, thick_axis))
            confidence_sum = confidence if confidence_sum is None else confidence_sum + confidence
        stats["planes"].append(out.stats)
    sr_norm = sr_sum / 2 + along_axis(lr_norm - lr_in, thick_axis, "up", profile)  # clipped-away excess
    return InferenceResult(
        sr=target_stats.denormalize(sr_norm).astype(np.float32),
        confidence=None if confidence_sum is None else (confidence_sum / 2).astype(np.float32),
        reference=reference,
        grid=grid,
        coverage=coverage,
        target_stats=target_stats,
        ref_stats=ref_stats,
        stats=stats,
    )
