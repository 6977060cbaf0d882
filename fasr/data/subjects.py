"""Loading one subject: read target and reference, put the reference on the target grid, normalise both
(per volume, :mod:`fasr.data.normalize`) and find the slices with content."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fasr.data.io import read_slice, read_volume
from fasr.data.layouts import PairSource
from fasr.data.normalize import foreground_fraction, normalize_clipped, robust_stats
from fasr.data.orient import display_volume, slice_stack
from fasr.data.samples import RawSlice
from fasr.data.types import NormStats, Volume
from fasr.errors import FasrError

__all__ = ["Subject", "load_subject", "plane_family"]


def plane_family(subject: str, axis: int) -> str:
    """The id of a subject's thick planes across in-plane axis ``axis`` (1 or 2): ``<subject>:across<axis>``."""
    return f"{subject}:across{axis}"


@dataclass(frozen=True)
class Subject:
    """One subject's normalised slice stacks on the target grid (display orientation, ``fasr.data.orient``).

    Attributes:
        subject: subject id.
        target: (Z, H, W) HR target on [-1, 1].
        reference: (Z, H, W) HR reference resampled onto the target grid, on [-1, 1].
        lr: (Z, H / s, W / s) stored LR target on the target's scale (folder datasets with ``lr/``), or None.
        target_stats / ref_stats: normalisation of each volume.
        slices: (K,) indices of the slices with content in both target and reference.
        spacing: (dz, dy, dx) voxel size of the stacks in mm.
    """

    subject: str
    target: np.ndarray
    reference: np.ndarray
    lr: np.ndarray | None
    target_stats: NormStats
    ref_stats: NormStats
    slices: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def raw_slice(self, z: int) -> RawSlice:
        """Slice ``z`` as fresh (writable) arrays."""
        return RawSlice(
            target=self.target[z].copy(), reference=self.reference[z].copy(),
            lr=None if self.lr is None else self.lr[z].copy(), subject=self.subject, slice_index=int(z),
            target_stats=self.target_stats, ref_stats=self.ref_stats, spacing=self.spacing,
            ref_volume=self.reference if self.reference.shape[0] > 1 else None,  # a 2-D slice has no volume to move
        )

    def across(self, axis: int, min_foreground: float) -> Subject:
        """The planes that contain the slice axis, as a subject whose stacks run along ``axis`` (1: rows, 2:
        columns of the slices) with the slice axis as rows: (H, Z, W) or (W, Z, H) views of the stacks, named
        ``<subject>:across<axis>``.

        Args:
            axis: 1 or 2, the in-plane axis the new stacks step along.
            min_foreground: content fraction a plane needs in target and reference.
        """
        if axis not in (1, 2) or self.lr is not None:
            raise FasrError(f"subject '{self.subject}': thick planes are taken across axis 1 or 2 of a volume pair "
                            "without a stored LR")
        order = (1, 0, 2) if axis == 1 else (2, 0, 1)
        target, reference = self.target.transpose(order), self.reference.transpose(order)
        content = np.minimum(foreground_fraction(target), foreground_fraction(reference))
        spacing = tuple(self.spacing[a] for a in order)
        # Each plane family is its own volume for scoring: the two are not one stack.
        return Subject(plane_family(self.subject, axis), target, reference, None, self.target_stats, self.ref_stats,
                       np.flatnonzero(content >= min_foreground), spacing)  # type: ignore[arg-type]


def _centred_overlap(target: Volume, reference: Volume) -> tuple[Volume, Volume]:
    """Crop both volumes to their common shape, centred on each (slices paired by index)."""
    shape = np.minimum(target.data.shape, reference.data.shape)

    def crop(volume: Volume) -> Volume:
        starts = [(n - m) // 2 for n, m in zip(volume.data.shape, shape)]
        index = tuple(slice(a, a + m) for a, m in zip(starts, shape))
        return Volume(data=np.ascontiguousarray(volume.data[index]), affine=volume.affine, path=volume.path)

    return crop(target), crop(reference)


def _reference_on_target(target: Volume, reference: Volume, pairing: str) -> np.ndarray:
    """(X, Y, Z) reference intensities on the target's voxel grid."""
    same_grid = reference.data.shape == target.data.shape and np.allclose(reference.affine, target.affine, atol=1e-3)
    if same_grid or pairing in ("index", "grid"):
        if reference.data.shape != target.data.shape:
            raise FasrError(
                f"'{reference.path}' is {reference.data.shape[:2]} but '{target.path}' is {target.data.shape[:2]}; "
                "slices of a folder dataset must share one grid"
            )
        return reference.data
    from fasr.data.geometry import check_coverage, resample_to_grid

    check_coverage(
        reference.data.shape, reference.affine, target.data.shape, target.affine, reference.path, target.path
    )
    return resample_to_grid(reference.data, reference.affine, target.data.shape, target.affine, order=1)


def load_subject(
    source: PairSource, *, percentiles: tuple[float, float], min_foreground: float, slice_key: str | None
) -> Subject:
    """Read, align and normalise one subject.

    Args:
        source: the subject's files.
        percentiles: (low, high) percentiles of :func:`fasr.data.normalize.robust_stats`.
        min_foreground: content fraction a slice needs in target and reference (volumes only; every 2-D slice
            of a folder dataset is kept).
        slice_key: variable to read from ``.mat`` slices.
    """
    two_d = source.pairing == "grid"
    target = display_volume(read_volume(source.target, require_3d=not two_d, key=slice_key))
    reference = display_volume(read_volume(source.reference, require_3d=not two_d, key=slice_key))
    if two_d and target.data.shape[2] > 1:
        raise FasrError(f"'{source.target}' is a volume; a folder dataset takes 2-D slices (use brats/ixi for volumes)")
    if source.pairing == "index":
        target, reference = _centred_overlap(target, reference)
    ref_data = _reference_on_target(target, reference, source.pairing)
    target_stats, ref_stats = robust_stats(target.data, *percentiles), robust_stats(reference.data, *percentiles)
    target_stack = normalize_clipped(slice_stack(target), target_stats)  # (Z, H, W)
    ref_stack = normalize_clipped(slice_stack(Volume(ref_data, target.affine, reference.path)), ref_stats)
    lr = None
    if source.lr is not None:
        lr = normalize_clipped(read_slice(source.lr, key=slice_key), target_stats)[None]  # (1, h, w)
    if two_d:
        slices = np.arange(target_stack.shape[0])
    else:
        content = np.minimum(foreground_fraction(target_stack), foreground_fraction(ref_stack))  # (Z,)
        slices = np.flatnonzero(content >= min_foreground)
    sx, sy, sz = target.voxel_size
    return Subject(source.subject, target_stack, ref_stack, lr, target_stats, ref_stats, slices, (sz, sy, sx))
