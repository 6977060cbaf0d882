"""Thick-slice volumes (ours): a slice profile applied along one voxel axis with the affine of the multi-slice
acquisition, and the interpolation back onto the fine grid that through-plane models take as their input.

Both work on whole volumes through :class:`fasr.data.degrade.SliceProfile`, which acts on rows: the thick axis is
moved to the rows of (A, 1, T, B) planes and back.
"""

from __future__ import annotations

import numpy as np
import torch

from fasr.data.degrade import SliceProfile
from fasr.data.geometry import sr_affine
from fasr.data.types import Volume

__all__ = ["along_axis", "thick_volume", "thick_affine"]


def along_axis(volume: np.ndarray, axis: int, method: str, profile: SliceProfile) -> np.ndarray:
    """``profile.down`` (thick slices) or ``profile.up`` (back onto the fine grid) along one axis of a volume.

    Args:
        volume: (X, Y, Z) intensities.
        axis: the thick voxel axis.
        method: ``down`` or ``up``.
        profile: the slice profile.
    """
    planes = np.moveaxis(np.asarray(volume, dtype=np.float32), axis, 1)  # (A, T, B): the thick axis as rows
    with torch.no_grad():
        out = getattr(profile, method)(torch.from_numpy(np.ascontiguousarray(planes))[:, None], 1)[:, 0]
    return np.moveaxis(out.numpy(), 1, axis)


def thick_affine(affine: np.ndarray, axis: int, factor: float) -> np.ndarray:
    """The affine of a grid ``factor`` times coarser (``factor`` < 1: finer) along ``axis``, keeping the field of
    view: thick slice ``j`` is centred at fine voxel ``(j + 0.5) * factor - 0.5`` (:func:`sr_affine`)."""
    other = (axis + 1) % 3
    return sr_affine(affine, (1.0 / factor, 1.0), axes=(axis, other))


def thick_volume(hr: Volume, axis: int, profile: SliceProfile) -> Volume:
    """A multi-slice acquisition of ``hr`` with thick slices along ``axis``: the trailing fine slices that do not
    fill a thick one are dropped, then every ``profile.factor`` slices become one, with its exact affine.

    Args:
        hr: the high-resolution volume.
        axis: the voxel axis that becomes thick.
        profile: slice spacing (factor), profile and thickness.
    """
    n = hr.data.shape[axis] // profile.factor * profile.factor
    if n == 0:
        raise ValueError(f"'{hr.path}' has {hr.data.shape[axis]} slices along axis {axis}, fewer than {profile.factor}")
    kept = np.take(hr.data, np.arange(n), axis=axis)
    return Volume(along_axis(kept, axis, "down", profile), thick_affine(hr.affine, axis, profile.factor), hr.path)
