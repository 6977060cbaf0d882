"""Reading the target and reference for inference from files, nibabel images or numpy arrays: geometry for 2-D
slices and the data type results are written in."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Union

import nibabel as nib
import numpy as np

from fasr.data.geometry import sr_affine
from fasr.data.io import NIFTI_SUFFIXES, SLICE_SUFFIXES, array_volume, check_image, read_volume, slice_array
from fasr.data.orient import DISPLAY_AFFINE, stack_to_volume
from fasr.data.types import Volume
from fasr.errors import FasrError, UsageError

__all__ = ["ImageInput", "InputPair", "is_slice_file", "image_dtype", "stored_dtype", "read_input", "read_inputs"]

# What the Python API accepts for a target or reference: a file/DICOM folder, a nibabel image, or a numpy
# array (with an affine; a 2-D array may go without, as a slice without scanner geometry).
ImageInput = Union[str, os.PathLike, nib.spatialimages.SpatialImage, np.ndarray]

# Integer types an integer-valued input without a stored type is written back as, smallest first.
_INTEGER_TYPES = (np.uint8, np.int16, np.uint16, np.int32)


class InputPair(NamedTuple):
    """A target and its reference, read and placed.

    Attributes:
        target: the LR target (or the HR target to simulate from).
        ref: the high-resolution reference.
        dtype: data type the SR volume is written in (the target's).
    """

    target: Volume
    ref: Volume
    dtype: np.dtype


class _Read(NamedTuple):
    volume: Volume
    flat: bool  # a 2-D slice without scanner geometry
    dtype: np.dtype


def is_slice_file(path: str | Path) -> bool:
    """Whether ``path`` is a 2-D slice file (PNG/TIFF/NPY/MAT): pixels without scanner geometry."""
    return Path(path).suffix.lower() in SLICE_SUFFIXES


def image_dtype(image: nib.spatialimages.SpatialImage) -> np.dtype:
    """The data type an image stores, float32 if it scales intensities (``scl_slope`` / ``scl_inter``, which
    nibabel moves from a loaded header into the image's array proxy), which an unscaled integer output could not
    reproduce (an int16 volume with slope 1/30000 holds values in [0, 1]).

    Args:
        image: a NIfTI (or other nibabel) image.
    """
    slope = getattr(image.dataobj, "slope", None)
    inter = getattr(image.dataobj, "inter", None)
    if slope is None and hasattr(image.header, "get_slope_inter"):
        slope, inter = image.header.get_slope_inter()  # an image built in memory keeps them in its header
    unscaled = (slope is None or np.isnan(slope) or slope == 1.0) and (inter is None or np.isnan(inter) or inter == 0.0)
    return np.dtype(image.header.get_data_dtype()) if unscaled else np.dtype(np.float32)


def stored_dtype(volume: Volume) -> np.dtype:
    """The data type results are written in, matching the input.

    NIfTI: :func:`image_dtype`. Other formats (DICOM, slice files): the smallest of uint8, int16, uint16,
    int32 that holds integer-valued data, else float32.

    Args:
        volume: a volume read by :func:`fasr.data.io.read_volume`.
    """
    path = Path(volume.path)
    if path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        return image_dtype(nib.load(str(path)))
    data = volume.data
    if np.array_equal(data, np.rint(data)):
        low, high = float(data.min()), float(data.max())
        for dtype in _INTEGER_TYPES:
            info = np.iinfo(dtype)
            if info.min <= low and high <= info.max:
                return np.dtype(dtype)
    return np.dtype(np.float32)


def read_input(source: ImageInput, affine: np.ndarray | None, role: str, key: str | None = None) -> _Read:
    """Read one input the way ``fasr infer`` reads a file of the same content.

    Args:
        source: a path (NIfTI, DICOM folder, slice file, ...), a nibabel image, or a numpy array.
        affine: (4, 4) voxel -> world matrix of a numpy array; None for a 2-D array without geometry.
        role: ``lr`` or ``ref`` (names in-memory inputs in messages and the sidecar).
        key: the variable to read from a ``.mat`` file holding several (``--lr-key`` / ``--ref-key``).
    """
    if key is not None and not (isinstance(source, (str, os.PathLike)) and str(source).lower().endswith(".mat")):
        raise UsageError(f"--{role}-key names a variable of a .mat file; the {role} input is not one")
    if isinstance(source, (str, os.PathLike)):
        if affine is not None:
            raise FasrError(f"{role}_affine is only for numpy arrays; '{source}' carries its own geometry")
        volume = read_volume(source, key=key)
        return _Read(volume, is_slice_file(source), stored_dtype(volume))
    if isinstance(source, nib.spatialimages.SpatialImage):
        if affine is not None:
            raise FasrError(f"{role}_affine is only for numpy arrays; the {role} image carries its own affine")
        name = source.get_filename() or f"<{role} image>"
        volume = array_volume(np.asanyarray(source.dataobj), source.affine, name)
        check_image(volume.data, name)
        return _Read(volume, False, image_dtype(source))
    if isinstance(source, np.ndarray):
        name = f"<{role} array>"
        dtype = source.dtype if source.dtype.kind in "iuf" else np.dtype(np.float32)
        if affine is None:
            if np.squeeze(source).ndim != 2:
                raise FasrError(
                    f"the {role} array is {source.ndim}-D {source.shape} without an affine; pass {role}_affine= "
                    "(its 4x4 voxel-to-world matrix, e.g. from nibabel) or a nibabel image"
                )
            return _Read(stack_to_volume(slice_array(source, name)[None], DISPLAY_AFFINE, name), True, dtype)
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise FasrError(f"{role}_affine has shape {affine.shape}; give the 4x4 voxel-to-world matrix")
        volume = array_volume(source, affine, name)
        check_image(volume.data, name)
        return _Read(volume, False, dtype)
    raise FasrError(
        f"{role} is a {type(source).__name__}; give a file path, a nibabel image or a numpy array"
    )


def read_inputs(
    target: ImageInput,
    ref: ImageInput,
    target_affine: np.ndarray | None = None,
    ref_affine: np.ndarray | None = None,
    target_key: str | None = None,
    ref_key: str | None = None,
) -> InputPair:
    """Read a target (LR, or HR to simulate from) and its reference.

    Volumes (NIfTI, DICOM, nibabel images, arrays with an affine) carry their scanner geometry. 2-D slices
    (slice files, 2-D arrays without an affine) carry none: when both are such slices they are taken to show
    the same field of view, so the target's pixel grid is laid over the reference's (any pixel counts); a
    slice without geometry with a volume cannot be placed and is refused.

    Args:
        target: target image (see :func:`read_input`).
        ref: reference image.
        target_affine, ref_affine: affines of numpy inputs.
        target_key, ref_key: variables to read from ``.mat`` inputs holding several.
    """
    t, r = read_input(target, target_affine, "lr", target_key), read_input(ref, ref_affine, "ref", ref_key)
    if t.flat != r.flat:
        flat, other = (t, r) if t.flat else (r, t)
        raise FasrError(
            f"'{flat.volume.path}' is a 2-D slice without scanner geometry, so it cannot be placed against "
            f"'{other.volume.path}'; give both as 2-D slices (same field of view) or both with geometry"
        )
    target_volume = t.volume
    if t.flat:
        (nx, ny, _), (rx, ry, _) = t.volume.data.shape, r.volume.data.shape
        # Tile the reference's field of view with the target's pixels: a grid refined by n_target / n_ref.
        affine = sr_affine(r.volume.affine, (nx / rx, ny / ry), axes=(0, 1))
        target_volume = Volume(data=t.volume.data, affine=affine, path=t.volume.path)
    return InputPair(target=target_volume, ref=r.volume, dtype=t.dtype)
