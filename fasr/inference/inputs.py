"""Reading the target and reference for inference: geometry for 2-D slice files and the data type on disk."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from fasr.data.geometry import sr_affine
from fasr.data.io import NIFTI_SUFFIXES, SLICE_SUFFIXES, read_volume
from fasr.data.types import Volume
from fasr.errors import FasrError

__all__ = ["is_slice_file", "stored_dtype", "read_pair"]

# Integer types an integer-valued input without a stored type is written back as, smallest first.
_INTEGER_TYPES = (np.uint8, np.int16, np.uint16, np.int32)


def is_slice_file(path: str | Path) -> bool:
    """Whether ``path`` is a 2-D slice file (PNG/TIFF/NPY/MAT): pixels without scanner geometry."""
    return Path(path).suffix.lower() in SLICE_SUFFIXES


def stored_dtype(volume: Volume) -> np.dtype:
    """The data type results are written in, matching the input.

    NIfTI: the header's type (float32 if it scales intensities with ``scl_slope``/``scl_inter``, which an
    unscaled integer output could not reproduce). Other formats (DICOM, slice files): the smallest of uint8,
    int16, uint16, int32 that holds integer-valued data, else float32.

    Args:
        volume: a volume read by :func:`fasr.data.io.read_volume`.
    """
    path = Path(volume.path)
    if path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        header = nib.load(str(path)).header
        slope, inter = header.get_slope_inter()
        if (slope is None or slope == 1.0) and (inter is None or inter == 0.0):
            return np.dtype(header.get_data_dtype())
        return np.dtype(np.float32)
    data = volume.data
    if np.array_equal(data, np.rint(data)):
        low, high = float(data.min()), float(data.max())
        for dtype in _INTEGER_TYPES:
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return np.dtype(dtype)
    return np.dtype(np.float32)


def read_pair(target_path: str | Path, ref_path: str | Path) -> tuple[Volume, Volume]:
    """Read a target (LR, or HR to simulate from) and its reference.

    Volumes (NIfTI, DICOM) carry their scanner geometry. 2-D slice files carry none: when both are slice
    files they are taken to show the same field of view, so the target's pixel grid is laid over the
    reference's (any pixel counts); a slice file with a volume cannot be placed and is refused.

    Args:
        target_path: target image (file or DICOM folder).
        ref_path: reference image.
    """
    target, ref = read_volume(target_path), read_volume(ref_path)
    flat_target, flat_ref = is_slice_file(target_path), is_slice_file(ref_path)
    if flat_target != flat_ref:
        flat, other = (target_path, ref_path) if flat_target else (ref_path, target_path)
        raise FasrError(
            f"'{flat}' is a 2-D slice file without scanner geometry, so it cannot be placed against '{other}'; "
            "give both as slice files (same field of view) or both as NIfTI/DICOM"
        )
    if flat_target:
        (nx, ny, _), (rx, ry, _) = target.data.shape, ref.data.shape
        # Tile the reference's field of view with the target's pixels: a grid refined by n_target / n_ref.
        affine = sr_affine(ref.affine, (nx / rx, ny / ry), axes=(0, 1))
        target = Volume(data=target.data, affine=affine, path=target.path)
    return target, ref
