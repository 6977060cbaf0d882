"""A simulated low-resolution target made from a high-resolution one (``fasr infer --simulate-from``, the demo),
its bicubic baseline, and scores against the ground truth.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from fasr.data.degrade import Degradation
from fasr.data.geometry import sr_affine
from fasr.data.normalize import robust_stats
from fasr.data.samples import degrade_lr
from fasr.data.types import Volume
from fasr.errors import FasrError
from fasr.inference.engine.stacks import Slicer
from fasr.inference.engine.volumes import upsample_stack
from fasr.inference.grid import choose_inplane_axes
from fasr.scoring.conventions import get_convention

__all__ = ["Simulation", "SCORES", "simulate_lr", "bicubic_volume", "score_methods"]

# Scores reported against the ground truth (fastMRI convention: scanner intensities, range = HR maximum).
SCORES = ("psnr", "ssim")


class Simulation(NamedTuple):
    """A ground-truth target and the LR made from it.

    Attributes:
        hr: the high-resolution target, cropped in-plane to a multiple of the scale (its grid is the SR grid).
        lr: the simulated low-resolution target, on the coarse grid with the same field of view.
        inplane_axes: the two voxel axes that were downsampled.
    """

    hr: Volume
    lr: Volume
    inplane_axes: tuple[int, int]


def simulate_lr(
    hr: Volume,
    ref_affine: np.ndarray,
    scale: int,
    degradation: Degradation,
    *,
    noise: str,
    snr: float,
    norm_percentiles: tuple[float, float],
    seed: int,
) -> Simulation:
    """Degrade each slice of ``hr`` by ``scale`` in-plane, as the data layer makes training pairs.

    The in-plane axes are the two with the finest reference spacing / largest extent (the rule of
    :mod:`fasr.inference.grid` at scale 1). Trailing voxels are cropped so both in-plane sizes divide by
    ``scale``. Degradation and noise act on the normalised slices; the LR goes back to scanner intensities.

    Args:
        hr: high-resolution target.
        ref_affine: (4, 4) affine of the reference (decides the slice axis).
        scale: downsampling factor.
        degradation: :class:`fasr.data.degrade.Degradation` (bicubic or k-space).
        noise / snr: LR acquisition noise (:func:`fasr.data.degrade.add_noise`); ``none`` for a clean LR.
        norm_percentiles: foreground percentiles of the normalisation.
        seed: seed of the noise.
    """
    inplane = choose_inplane_axes(hr.data.shape, hr.affine, ref_affine, 1)
    slice_axis = 3 - sum(inplane)
    keep = [slice(None)] * 3
    for axis in inplane:
        n = hr.data.shape[axis]
        if n < scale:
            raise FasrError(f"'{hr.path}' is only {n} voxels wide in-plane; it cannot be downsampled x{scale}")
        keep[axis] = slice(0, n - n % scale)
    hr = Volume(data=np.ascontiguousarray(hr.data[tuple(keep)]), affine=hr.affine, path=hr.path)

    stats = robust_stats(hr, *norm_percentiles)
    slicer = Slicer.for_grid(hr.affine, slice_axis)
    stack = torch.from_numpy(slicer.to_stack(stats.normalize(hr.data)))[:, None]  # (N, 1, H, W)
    generator = torch.Generator().manual_seed(seed)
    lr_stack = degrade_lr(stack, scale, degradation, noise, snr, generator)[:, 0].numpy()  # (N, h, w)
    lr = Volume(
        data=stats.denormalize(slicer.from_stack(lr_stack)).astype(np.float32),
        affine=sr_affine(hr.affine, (1.0 / scale, 1.0 / scale), axes=inplane),
        path=f"{hr.path} (simulated x{scale} LR)",
    )
    return Simulation(hr=hr, lr=lr, inplane_axes=inplane)


def bicubic_volume(lr: np.ndarray, slicer: Slicer, scale: int) -> np.ndarray:
    """Bicubic upsampling of every slice of an (X, Y, Z) LR volume onto the SR grid (the baseline).

    Args:
        lr: LR volume.
        slicer: how its slices are taken (:class:`fasr.inference.engine.stacks.Slicer` of the SR grid).
        scale: in-plane factor.
    """
    return slicer.from_stack(upsample_stack(slicer.to_stack(lr), scale))


def score_methods(hr: np.ndarray, outputs: dict[str, np.ndarray], slicer: Slicer) -> dict[str, dict[str, float]]:
    """PSNR/SSIM of each output against the ground truth, fastMRI convention on scanner intensities.

    Args:
        hr: (X, Y, Z) ground truth.
        outputs: method name -> (X, Y, Z) prediction on the same grid.
        slicer: the slices SSIM is computed on.
    """
    convention = get_convention("fastmri")
    target = slicer.to_stack(hr).astype(np.float64)  # (N, H, W)
    scores = {}
    for name, pred in outputs.items():
        volume_scores, _ = convention.score_volume(slicer.to_stack(pred).astype(np.float64), target, None)
        scores[name] = {k: float(volume_scores[k]) for k in SCORES}
    return scores
