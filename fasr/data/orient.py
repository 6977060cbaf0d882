"""Slice stacks from volumes: reorient (axis flips/swaps only, no resampling) so each slice displays the way
radiologists read it, and go back from a stack of 2-D slices to a volume.

Convention: the slice axis is the last voxel axis as stored (the acquisition axis of NIfTI/DICOM/fastMRI
files). The two in-plane axes are flipped/swapped so that, with ``stack[z] = data[:, :, z].T``, rows run
top to bottom and columns left to right as below (patient's right on the image left, "radiological"):

=========  ================================  ==================
plane      rows (top -> bottom)              columns (-> right)
=========  ================================  ==================
axial      anterior -> posterior             right -> left
coronal    superior -> inferior              right -> left
sagittal   superior -> inferior              anterior -> posterior
=========  ================================  ==================
"""

from __future__ import annotations

import numpy as np
from nibabel import orientations as nio

from fasr.data.types import Volume

__all__ = ["DISPLAY_AFFINE", "display_codes", "display_volume", "slice_stack", "stack_to_volume"]

# Voxel -> world (RAS mm) of a 2-D image taken as displayed: x = column (to the patient's left),
# y = row (to posterior), z = slice (to superior), 1 mm voxels. Display reorientation leaves it unchanged.
DISPLAY_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])

# World axis nearest the slice axis (0: L-R, 1: A-P, 2: I-S) -> axis codes of the display orientation.
_DISPLAY_CODES: dict[int, tuple[str, str, str]] = {
    2: ("L", "P", "S"),  # axial
    1: ("L", "I", "A"),  # coronal
    0: ("P", "I", "L"),  # sagittal
}


def display_codes(affine: np.ndarray) -> tuple[str, str, str]:
    """Axis codes (nibabel letters, e.g. ``("L", "P", "S")``) that :func:`display_volume` reorients to.

    Args:
        affine: (4, 4) voxel -> world matrix.
    """
    slice_world_axis = int(nio.io_orientation(affine)[2, 0])
    return _DISPLAY_CODES[slice_world_axis]


def display_volume(volume: Volume) -> Volume:
    """Flip/swap voxel axes (exact, no interpolation) into the display orientation; the affine follows.

    Args:
        volume: a volume as read (any orientation).

    Returns:
        The same voxels on the same world positions, axes ordered per :func:`display_codes`.
    """
    current = nio.io_orientation(volume.affine)
    transform = nio.ornt_transform(current, nio.axcodes2ornt(display_codes(volume.affine)))
    if np.array_equal(transform, [[0, 1], [1, 1], [2, 1]]):
        return volume
    data = np.ascontiguousarray(nio.apply_orientation(volume.data, transform))
    affine = volume.affine @ nio.inv_ornt_aff(transform, volume.data.shape)
    return Volume(data=data, affine=affine, path=volume.path)


def slice_stack(volume: Volume) -> np.ndarray:
    """(Z, H, W) slices of a display-oriented volume: ``stack[z] = data[:, :, z].T``.

    Args:
        volume: output of :func:`display_volume` (or any volume whose slices should be taken as stored).
    """
    return np.ascontiguousarray(volume.data.transpose(2, 1, 0))  # (X, Y, Z) -> (Z, Y=H, X=W)


def stack_to_volume(stack: np.ndarray, affine: np.ndarray, path: str) -> Volume:
    """Inverse of :func:`slice_stack`.

    Args:
        stack: (Z, H, W) slices.
        affine: (4, 4) voxel -> world matrix of the (X=W, Y=H, Z) grid.
        path: name recorded on the volume.
    """
    data = np.ascontiguousarray(np.asarray(stack, dtype=np.float32).transpose(2, 1, 0))  # (Z, H, W) -> (X, Y, Z)
    return Volume(data=data, affine=np.asarray(affine, dtype=np.float64), path=path)
