"""The super-resolution grid of a volume: which voxel axes are in-plane, and the refined shape and affine.

Slice-axis rule (``docs/inference.md``): the in-plane axes are the two voxel axes of the low-resolution (LR)
target along which it is ``scale`` times coarser than the reference; the remaining axis is the slice axis and
keeps its slices (thickness and positions). Ties (e.g. an isotropic LR) are broken by the finer reference
spacing, then by the larger field-of-view extent. A volume with a single slice (2-D input) is always sliced
along that axis.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fasr.data.geometry import sr_affine
from fasr.data.thick import thick_affine

__all__ = ["SRGrid", "voxel_sizes", "spacing_along_axes", "choose_inplane_axes", "plan_sr_grid", "plan_thick_grid"]

# Relative differences below these count as ties in the slice-axis rule.
_RATIO_TOL = math.log(1.25)
_SPACING_TOL = 0.1


@dataclass(frozen=True)
class SRGrid:
    """The grid a volume is super-resolved onto.

    Attributes:
        shape: (X', Y', Z') voxel counts: the LR shape times ``scale`` along the in-plane axes.
        affine: (4, 4) voxel -> world matrix (:func:`fasr.data.geometry.sr_affine` of the LR affine).
        slice_axis: voxel axis whose slices are kept.
        inplane_axes: the two refined voxel axes, ascending.
        scale: in-plane refinement factor.
        ref_ratio: LR voxel size / reference spacing along each in-plane axis (``scale`` when they match).
        thick_axis: through-plane grids (ours): the thick voxel axis refined ``scale`` times (then also
            ``slice_axis``; ``inplane_axes`` are the two axes kept); None for in-plane grids.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    slice_axis: int
    inplane_axes: tuple[int, int]
    scale: int
    ref_ratio: tuple[float, float]
    thick_axis: int | None = None


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """(3,) voxel size along each voxel axis (column norms of the affine)."""
    return np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)


def spacing_along_axes(axes_affine: np.ndarray, grid_affine: np.ndarray) -> np.ndarray:
    """(3,) sample spacing of ``grid_affine`` measured along each voxel-axis direction of ``axes_affine``.

    A unit step along direction ``u`` moves ``R^-1 u`` voxels of the grid; its spacing along ``u`` is the
    distance that moves one voxel along the fastest-changing grid axis (the grid's voxel size when aligned).

    Args:
        axes_affine: (4, 4) affine whose voxel axes give the directions.
        grid_affine: (4, 4) affine of the grid being measured.
    """
    directions = np.asarray(axes_affine, dtype=np.float64)[:3, :3] / voxel_sizes(axes_affine)  # (3, 3) unit cols
    steps = np.linalg.inv(np.asarray(grid_affine, dtype=np.float64)[:3, :3]) @ directions  # voxels per mm
    return 1.0 / np.abs(steps).max(axis=0)


def choose_inplane_axes(
    shape: Sequence[int], affine: np.ndarray, ref_affine: np.ndarray, scale: float
) -> tuple[int, int]:
    """The two in-plane voxel axes of a volume by the module's slice-axis rule.

    Args:
        shape: (X, Y, Z) shape of the LR volume.
        affine: its (4, 4) affine.
        ref_affine: (4, 4) affine of the reference.
        scale: in-plane factor between the LR and the reference (1 for a high-resolution volume).
    """
    singleton = [a for a in range(3) if shape[a] == 1]
    if singleton:
        return tuple(a for a in range(3) if a != singleton[0])  # type: ignore[return-value]
    sizes = voxel_sizes(affine)
    ref_spacing = spacing_along_axes(affine, ref_affine)
    mismatch = np.abs(np.log(sizes / ref_spacing / scale))  # 0: refined exactly by `scale`
    extent = sizes * np.asarray(shape, dtype=np.float64)

    def inplane_first(a: int, b: int) -> int:
        if abs(mismatch[a] - mismatch[b]) > _RATIO_TOL:
            return -1 if mismatch[a] < mismatch[b] else 1
        if abs(ref_spacing[a] - ref_spacing[b]) > _SPACING_TOL * min(ref_spacing[a], ref_spacing[b]):
            return -1 if ref_spacing[a] < ref_spacing[b] else 1
        return -1 if extent[a] > extent[b] else (1 if extent[a] < extent[b] else a - b)

    order = sorted(range(3), key=functools.cmp_to_key(inplane_first))
    return tuple(sorted(order[:2]))  # type: ignore[return-value]


def plan_sr_grid(
    shape: Sequence[int],
    affine: np.ndarray,
    ref_affine: np.ndarray,
    scale: int,
    inplane_axes: Sequence[int] | None = None,
) -> SRGrid:
    """The super-resolution grid of an LR volume.

    Args:
        shape: (X, Y, Z) shape of the LR volume.
        affine: its (4, 4) affine.
        ref_affine: (4, 4) affine of the reference (decides the in-plane axes).
        scale: in-plane upsampling factor.
        inplane_axes: the two in-plane voxel axes when known (e.g. a simulated LR); None applies the rule.
    """
    if inplane_axes is None:
        inplane = choose_inplane_axes(shape, affine, ref_affine, scale)
    else:
        inplane = tuple(sorted(int(a) for a in inplane_axes))  # type: ignore[assignment]
    slice_axis = 3 - sum(inplane)
    sr_shape = tuple(int(n) * scale if a in inplane else int(n) for a, n in enumerate(shape))
    ratio = voxel_sizes(affine) / spacing_along_axes(affine, ref_affine)
    return SRGrid(
        shape=sr_shape,  # type: ignore[arg-type]
        affine=sr_affine(affine, (scale, scale), axes=inplane),
        slice_axis=slice_axis,
        inplane_axes=inplane,
        scale=scale,
        ref_ratio=(float(ratio[inplane[0]]), float(ratio[inplane[1]])),
    )


def plan_thick_grid(shape: Sequence[int], affine: np.ndarray, ref_affine: np.ndarray, axis: int, factor: int) -> SRGrid:
    """The grid of a through-plane model (ours): ``axis`` refined ``factor`` times over the LR's field of view, the
    other two axes kept.

    Args:
        shape: (X, Y, Z) shape of the thick-slice LR.
        affine: its (4, 4) affine.
        ref_affine: (4, 4) affine of the reference.
        axis: the thick voxel axis.
        factor: slice spacing over the reference's spacing, rounded.
    """
    kept = tuple(a for a in range(3) if a != axis)
    ratio = voxel_sizes(affine) / spacing_along_axes(affine, ref_affine)
    return SRGrid(
        shape=tuple(int(n) * factor if a == axis else int(n) for a, n in enumerate(shape)),  # type: ignore[arg-type]
        affine=thick_affine(affine, axis, 1.0 / factor),
        slice_axis=axis,
        inplane_axes=kept,  # type: ignore[arg-type]
        scale=factor,
        ref_ratio=(float(ratio[kept[0]]), float(ratio[kept[1]])),
        thick_axis=axis,
    )
