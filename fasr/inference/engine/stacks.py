"""Volumes to slice stacks and back, in the display orientation the models were trained on.

The data layer (``fasr.data.orient``) trains on slices along the last stored voxel axis, flipped/swapped so that
they display the radiological way. Inference slices along the axis chosen by :mod:`fasr.inference.grid`, which
may be any voxel axis; :class:`Slicer` moves it last, applies the same display flips/swaps (exact, no
interpolation), and undoes both on the way back, so a model sees target and reference slices as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from nibabel import orientations as nio

from fasr.data.orient import display_codes

__all__ = ["Slicer"]


@dataclass(frozen=True)
class Slicer:
    """Stack/unstack the slices of any volume whose axes point the same way as ``affine``'s.

    Build with :meth:`for_grid`. Grids that differ only by voxel size (an LR grid and its SR grid) share one
    slicer: the flips and swaps depend only on the axis directions.

    Attributes:
        order: stored voxel axes as (in-plane, in-plane, slice).
        to_display: nibabel orientation transform from the slice-last volume to display orientation.
        from_display: its inverse.
    """

    order: tuple[int, int, int]
    to_display: np.ndarray
    from_display: np.ndarray

    @classmethod
    def for_grid(cls, affine: np.ndarray, slice_axis: int) -> Slicer:
        """Slicer for volumes on ``affine``'s axes, slicing along ``slice_axis``.

        Args:
            affine: (4, 4) voxel -> world matrix.
            slice_axis: voxel axis whose slices are taken.
        """
        order = tuple(a for a in range(3) if a != slice_axis) + (slice_axis,)
        permute = np.eye(4)[:, [*order, 3]]  # new voxel axis k is stored axis order[k]
        slices_last = np.asarray(affine, dtype=np.float64) @ permute
        current = nio.io_orientation(slices_last)
        display = nio.axcodes2ornt(display_codes(slices_last))
        return cls(
            order=order,  # type: ignore[arg-type]
            to_display=nio.ornt_transform(current, display),
            from_display=nio.ornt_transform(display, current),
        )

    def to_stack(self, volume: np.ndarray) -> np.ndarray:
        """(X, Y, Z) stored volume -> (N, H, W) display-oriented slices (``stack[z] = display[:, :, z].T``)."""
        display = nio.apply_orientation(np.transpose(volume, self.order), self.to_display)
        return np.ascontiguousarray(display.transpose(2, 1, 0))  # (X', Y', N) -> (N, H=Y', W=X')

    def from_stack(self, stack: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_stack`: (N, H, W) -> (X, Y, Z) in the stored axis order."""
        display = stack.transpose(2, 1, 0)  # (N, H, W) -> (X', Y', N)
        slices_last = nio.apply_orientation(display, self.from_display)
        return np.ascontiguousarray(np.transpose(slices_last, np.argsort(self.order)))
