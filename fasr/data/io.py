"""Readers: MRI volumes and 2-D slices as float32 arrays, volumes with their voxel -> world geometry.

Formats: NIfTI (``.nii``, ``.nii.gz``), a DICOM series folder, fastMRI HDF5 (``.h5``; slices become the Z axis),
and 2-D slice files (PNG/TIFF 8/16-bit, NPY, MATLAB ``.mat`` v5 or v7.3; complex data as magnitude). Every
read is checked: unreadable files, NaN/inf and empty (constant) images raise :class:`FasrError`.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import scipy.io
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from PIL import Image

from fasr.data.dicom import read_dicom_series, usable_thickness
from fasr.data.fastmri import read_fastmri
from fasr.data.orient import DISPLAY_AFFINE, stack_to_volume
from fasr.data.types import Volume
from fasr.errors import FasrError

__all__ = [
    "NIFTI_SUFFIXES",
    "SLICE_SUFFIXES",
    "HDF5_SUFFIXES",
    "read_volume",
    "read_slice",
    "slice_array",
    "array_volume",
    "check_image",
    "sidecar_slice_thickness",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
HDF5_SUFFIXES = (".h5", ".hdf5")
SLICE_SUFFIXES = (".png", ".tif", ".tiff", ".npy", ".mat")
_DEFLATE_MAX_RATIO = 1032  # most bytes one compressed byte of a deflate stream can expand to
# Errors the NIfTI/image/MAT libraries raise for truncated, corrupt or mislabelled files.
_READ_ERRORS = (
    OSError, EOFError, ValueError, OverflowError, zlib.error, ImageFileError, HeaderDataError, NotImplementedError,
    TypeError,
)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def _unreadable(path: Path, what: str, exc: Exception) -> FasrError:
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return FasrError(f"cannot read '{path}' as {what} ({detail}); check that the file is complete and in that format")


def check_image(data: np.ndarray, path: str | Path) -> None:
    """Reject empty images and NaN/inf values.

    Args:
        data: the image or volume.
        path: file name for the message.
    """
    if data.size == 0:
        raise FasrError(f"'{path}' is empty (shape {data.shape}); give a file with image data")
    bad = int(data.size - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise FasrError(
            f"'{path}' has {bad} NaN/inf voxels; replace them (e.g. with 0, nibabel/numpy nan_to_num) and retry"
        )
    if float(data.max()) == float(data.min()):
        raise FasrError(f"'{path}' is empty (every voxel is {float(data.min()):g}); give a scan with image content")


def _as_real(data: np.ndarray) -> np.ndarray:
    """float32 magnitude of complex data, float32 of anything else."""
    return (np.abs(data) if np.iscomplexobj(data) else data).astype(np.float32, copy=False)


def array_volume(data: np.ndarray, affine: np.ndarray, path: str) -> Volume:
    """A voxel array with its affine as a float32 volume: trailing singleton axes dropped, 2-D as one slice.

    Args:
        data: (X, Y[, Z[, 1...]]) voxels as stored (e.g. a NIfTI image's ``dataobj``).
        affine: (4, 4) voxel -> world matrix.
        path: file name or label for messages.
    """
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim > 3:
        raise FasrError(f"'{path}' is {data.ndim}-D {data.shape}; extract one 3-D volume (e.g. fslroi) and retry")
    if data.ndim == 2:
        data = data[:, :, None]
    return Volume(data=_as_real(data), affine=np.asarray(affine, dtype=np.float64), path=str(path))


def _check_nifti_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse a header that claims more voxel bytes than the file can hold, before they are allocated.

    Uncompressed files are measured exactly; gzip files by deflate's largest expansion (1032:1), which never
    refuses a complete file (a truncated one fails when read).
    """
    header = image.header
    voxels = int(np.prod(image.shape, dtype=np.float64))
    needed = int(header.get_data_offset()) + voxels * header.get_data_dtype().itemsize
    held = path.stat().st_size * (_DEFLATE_MAX_RATIO if path.name.lower().endswith(".gz") else 1)
    if held < needed:
        raise FasrError(
            f"'{path}' is truncated: its header claims {'x'.join(map(str, image.shape))} {header.get_data_dtype()} "
            f"voxels ({needed} bytes with the header) but the file is {path.stat().st_size} bytes; copy the complete "
            "file again"
        )


def _read_nifti(path: Path) -> Volume:
    try:
        image = nib.load(str(path))
        _check_nifti_size(path, image)
        data = np.asanyarray(image.dataobj)
    except _READ_ERRORS as exc:
        raise _unreadable(path, "NIfTI", exc) from None
    volume = array_volume(data, image.affine, str(path))
    return dataclasses.replace(volume, slice_thickness=sidecar_slice_thickness(path))


def sidecar_slice_thickness(path: Path) -> float | None:
    """``SliceThickness`` (mm) of the BIDS JSON sidecar beside a NIfTI file (``scan.nii.gz`` -> ``scan.json``, as
    dcm2niix writes it): None without a sidecar, without that field, or with an unusable one
    (:func:`usable_thickness`; a sidecar that is not a JSON object is ignored too)."""
    name = path.name
    stem = next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.lower().endswith(s)), path.stem)
    sidecar = path.with_name(stem + ".json")
    if not sidecar.is_file():
        return None
    try:
        fields = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return None
    return usable_thickness(fields.get("SliceThickness")) if isinstance(fields, dict) else None


def _read_picture(path: Path) -> np.ndarray:
    """(H, W) pixels of a grayscale PNG/TIFF (8/16/32-bit or float); colour only when all channels agree."""
    try:
        with Image.open(path) as image:
            if getattr(image, "n_frames", 1) > 1:
                raise FasrError(f"'{path}' holds {image.n_frames} pages; give one slice per file")
            if image.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F"):
                return np.asarray(image)
            rgb = np.asarray(image.convert("RGB"))  # (H, W, 3)
    except _READ_ERRORS as exc:
        raise _unreadable(path, "an image", exc) from None
    if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
        raise FasrError(f"'{path}' is a colour image; save the slice as grayscale (8/16-bit PNG/TIFF or NPY)")
    return rgb[..., 0]


def _pick_key(names: list[str], key: str | None, path: Path) -> str:
    if key is not None:
        if key not in names:
            raise FasrError(f"'{path}' has no variable '{key}'; variables: {', '.join(names) or 'none'}")
        return key
    if len(names) != 1:
        raise FasrError(
            f"'{path}' holds {len(names)} variables ({', '.join(names) or 'none'}); name the one to read "
            "(fasr infer --lr-key/--ref-key, a dataset's data.slice_key)"
        )
    return names[0]


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    """One variable of a MATLAB file: v7.3 (HDF5, stored column-major) or older (scipy)."""
    try:
        if h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                names = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset) and not k.startswith("#"))
                data = f[_pick_key(names, key, path)][()]
            if data.dtype.names and {"real", "imag"} <= set(data.dtype.names):
                data = data["real"] + 1j * data["imag"]
            return data.T  # MATLAB column-major -> row-major
        contents = scipy.io.loadmat(path)
    except _READ_ERRORS as exc:
        raise _unreadable(path, "MATLAB .mat", exc) from None
    names = sorted(k for k, v in contents.items() if not k.startswith("__") and isinstance(v, np.ndarray))
    return contents[_pick_key(names, key, path)]


def read_slice(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read a 2-D slice file as displayed: (H, W) float32 (rows top to bottom).

    Args:
        path: PNG/TIFF (8/16-bit), NPY or MATLAB ``.mat`` file.
        key: variable name in a ``.mat`` file (needed when it holds several).
    """
    path = Path(path)
    if not path.is_file():
        raise FasrError(f"'{path}' not found; check the path")
    suffix = _suffix(path)
    if suffix in (".png", ".tif", ".tiff"):
        data = _read_picture(path)
    elif suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except _READ_ERRORS as exc:
            raise _unreadable(path, "NPY", exc) from None
    elif suffix == ".mat":
        data = _read_mat(path, key)
    else:
        raise FasrError(f"'{path}': unsupported slice format '{suffix}'; use one of {', '.join(SLICE_SUFFIXES)}")
    return slice_array(data, path)


def slice_array(data: np.ndarray, path: str | Path) -> np.ndarray:
    """A 2-D slice as read from a slice file: singleton axes dropped, float32 (magnitude if complex), checked.

    Args:
        data: (H, W) pixels as displayed, possibly with singleton axes.
        path: file name or label for messages.
    """
    data = np.squeeze(data)
    if data.ndim != 2:
        raise FasrError(f"'{path}' holds a {data.ndim}-D array {data.shape}, not a 2-D slice; save one slice per file")
    data = _as_real(data)
    check_image(data, path)
    return data


def read_volume(path: str | Path, *, require_3d: bool = False, key: str | None = None) -> Volume:
    """Read a volume (or a 2-D slice as a one-slice volume) with its voxel -> world affine (RAS mm).

    Args:
        path: NIfTI file, DICOM series folder, fastMRI ``.h5`` file, or a 2-D slice file (Z = 1, the
            display affine of :data:`fasr.data.orient.DISPLAY_AFFINE`; fastMRI stacks get it too).
        require_3d: reject inputs with a single slice (where a volume is needed).
        key: variable to read from a ``.mat`` slice file (see :func:`read_slice`).
    """
    path = Path(path)
    suffix = _suffix(path)
    if path.is_dir():
        volume = read_dicom_series(path)
    elif not path.is_file():
        raise FasrError(f"'{path}' not found; check the path")
    elif suffix in NIFTI_SUFFIXES:
        volume = _read_nifti(path)
    elif suffix in HDF5_SUFFIXES:
        try:
            stack = read_fastmri(path)
        except _READ_ERRORS as exc:
            raise _unreadable(path, "fastMRI HDF5", exc) from None
        volume = stack_to_volume(_as_real(stack), DISPLAY_AFFINE, str(path))
    elif suffix in SLICE_SUFFIXES:
        volume = stack_to_volume(read_slice(path, key)[None], DISPLAY_AFFINE, str(path))
    else:
        formats = ", ".join((*NIFTI_SUFFIXES, *HDF5_SUFFIXES, *SLICE_SUFFIXES))
        raise FasrError(f"'{path}': unknown file type; give a DICOM folder or one of {formats}")
    check_image(volume.data, path)
    if require_3d and volume.data.shape[2] == 1:
        x, y, _ = volume.data.shape
        raise FasrError(
            f"'{path}' is a 2-D image ({y}x{x}); a 3-D volume is needed here: give a NIfTI volume, a DICOM series "
            "folder or a fastMRI .h5 file (2-D slices go in a 'folder' dataset)"
        )
    return volume
