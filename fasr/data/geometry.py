"""Voxel grids in world space: resampling one volume onto another's grid, coverage checks, SR-grid affines.

Conventions: an ``affine`` is the 4x4 voxel -> world (scanner mm) matrix of a NIfTI header; voxel ``i`` of an
axis is centred at coordinate ``i`` and covers ``[i - 0.5, i + 0.5]``, so a grid of ``n`` voxels spans the field
of view ``[-0.5, n - 0.5]`` in voxel coordinates.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from scipy import ndimage

from fasr.errors import FasrError

__all__ = ["resample_to_grid", "check_coverage", "sr_affine", "voxel_to_world", "world_to_voxel"]

# Slack (in voxels) when deciding whether a point is inside a field of view: absorbs float round-off of
# affine products so that a grid's own border voxels count as inside.
_FOV_TOL = 1e-4
# dst voxels mapped per chunk (bounds the (3, N) float64 coordinate array to ~50 MB).
_CHUNK_VOXELS = 2_000_000


def voxel_to_world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Map voxel coordinates to world coordinates.

    Args:
        affine: (4, 4) voxel -> world matrix.
        ijk: (..., 3) voxel coordinates.

    Returns:
        (..., 3) world coordinates in mm.
    """
    ijk = np.asarray(ijk, dtype=np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(affine: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Map world coordinates to (fractional) voxel coordinates; the inverse of :func:`voxel_to_world`.

    Args:
        affine: (4, 4) voxel -> world matrix.
        xyz: (..., 3) world coordinates in mm.
    """
    return voxel_to_world(np.linalg.inv(affine), xyz)


def _dst_to_src(src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """(4, 4) matrix taking dst voxel coordinates to src voxel coordinates (dst -> world -> src)."""
    return np.linalg.inv(np.asarray(src_affine, dtype=np.float64)) @ np.asarray(dst_affine, dtype=np.float64)


def _src_coords(
    dst_shape: Sequence[int], dst_to_src: np.ndarray
) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (dst slab along the last axis, (3, X, Y, k) src voxel coordinates of its voxel centres)."""
    nx, ny, nz = (int(n) for n in dst_shape)
    step = max(1, _CHUNK_VOXELS // max(1, nx * ny))
    for z0 in range(0, nz, step):
        z1 = min(nz, z0 + step)
        grid = np.mgrid[0:nx, 0:ny, z0:z1].astype(np.float64)  # (3, X, Y, k)
        coords = np.tensordot(dst_to_src[:3, :3], grid, axes=1) + dst_to_src[:3, 3, None, None, None]
        yield slice(z0, z1), coords


def _inside(coords: np.ndarray, src_shape: Sequence[int]) -> np.ndarray:
    """(X, Y, k) bool: which coordinates (3, X, Y, k) lie inside the src field of view."""
    inside = np.ones(coords.shape[1:], dtype=bool)
    for axis, n in enumerate(src_shape):
        inside &= (coords[axis] >= -0.5 - _FOV_TOL) & (coords[axis] <= n - 0.5 + _FOV_TOL)
    return inside


def resample_to_grid(
    data: np.ndarray,
    src_affine: np.ndarray,
    dst_shape: Sequence[int],
    dst_affine: np.ndarray,
    order: int = 1,
) -> np.ndarray:
    """Resample a 3-D volume onto another voxel grid through the world coordinates of both.

    Each dst voxel centre is mapped dst voxel -> world -> src voxel and interpolated with
    ``scipy.ndimage.map_coordinates``. Points inside the src field of view but beyond the outermost voxel
    centres (the outer half voxel) take the edge value; points outside the field of view are 0.

    Args:
        data: (X, Y, Z) source volume.
        src_affine: (4, 4) voxel -> world matrix of ``data``.
        dst_shape: (X', Y', Z') shape of the target grid.
        dst_affine: (4, 4) voxel -> world matrix of the target grid.
        order: spline order (0 nearest, 1 trilinear, 3 cubic).

    Returns:
        (X', Y', Z') float32 volume on the target grid.
    """
    if data.ndim != 3 or len(dst_shape) != 3:
        raise ValueError(f"expected 3-D data and dst_shape, got {data.shape} and {tuple(dst_shape)}")
    src = np.asarray(data, dtype=np.float32)
    if order > 1:
        # Prefilter once for the whole volume instead of per chunk.
        src = ndimage.spline_filter(src, order=order, mode="nearest", output=np.float32)
    out = np.zeros(tuple(int(n) for n in dst_shape), dtype=np.float32)
    for slab, coords in _src_coords(dst_shape, _dst_to_src(src_affine, dst_affine)):
        values = ndimage.map_coordinates(src, coords, order=order, mode="nearest", prefilter=False)
        out[:, :, slab] = np.where(_inside(coords, src.shape), values, 0.0)
    return out


def check_coverage(
    src_shape: Sequence[int],
    src_affine: np.ndarray,
    dst_shape: Sequence[int],
    dst_affine: np.ndarray,
    src_name: str,
    dst_name: str,
    min_fraction: float = 0.9,
) -> float:
    """Fraction of the dst grid's voxel centres that fall inside the src field of view.

    Args:
        src_shape, src_affine: grid of the volume that will be resampled (e.g. the reference).
        dst_shape, dst_affine: grid it must cover (e.g. the super-resolution grid of the target).
        src_name, dst_name: file names used in the error message.
        min_fraction: smallest acceptable coverage.

    Returns:
        The covered fraction in [0, 1].

    Raises:
        FasrError: when the coverage is below ``min_fraction`` (different patient, session or broken header).
    """
    dst_to_src = _dst_to_src(src_affine, dst_affine)
    covered = sum(int(_inside(coords, src_shape).sum()) for _, coords in _src_coords(dst_shape, dst_to_src))
    fraction = covered / float(np.prod([int(n) for n in dst_shape]))
    if fraction < min_fraction:
        raise FasrError(
            f"'{src_name}' covers only {fraction:.0%} of the field of view of '{dst_name}' (need at least "
            f"{min_fraction:.0%}); give scans of the same patient and session whose headers place them in one "
            "scanner space (register them first if they were moved)"
        )
    return fraction


def sr_affine(affine: np.ndarray, scale_xy: tuple[float, float], axes: tuple[int, int] = (0, 1)) -> np.ndarray:
    """Affine of the grid refined by ``scale_xy`` along two voxel axes, keeping the field of view exactly.

    New voxel ``i'`` along a refined axis with factor ``s`` is centred at old voxel coordinate
    ``(i' + 0.5) / s - 0.5``, so the ``n * s`` new voxels tile the same extent ``[-0.5, n - 0.5]`` as the ``n``
    old ones and the field-of-view centre is unchanged. (``nibabel.affines.rescale_affine`` instead keeps
    voxel 0's centre, which shifts the field of view by ``(1 - 1/s) / 2`` old voxels.)

    Args:
        affine: (4, 4) voxel -> world matrix of the coarse grid.
        scale_xy: refinement factors along ``axes`` (e.g. ``(4, 4)``).
        axes: the two refined (in-plane) voxel axes; the remaining axis keeps its slices.

    Returns:
        (4, 4) voxel -> world matrix of the refined grid.
    """
    fine_to_coarse = np.eye(4)
    for axis, s in zip(axes, scale_xy):
        fine_to_coarse[axis, axis] = 1.0 / s
        fine_to_coarse[axis, 3] = 0.5 / s - 0.5
    return np.asarray(affine, dtype=np.float64) @ fine_to_coarse
