"""Writers of small synthetic files in each real layout, for the data-layer tests (no tests here): NIfTI
volumes, BraTS and IXI folders, DICOM series, fastMRI HDF5 files and 2-D slice folders."""

from __future__ import annotations

import uuid
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from conftest import write_nifti
from fasr.errors import FasrError

__all__ = [
    "LPS",
    "as_ras",
    "phantom",
    "write_ixi",
    "write_dicom_series",
    "fft2c",
    "write_fastmri",
]

# 1 mm voxel -> world matrix of most BraTS files (LPS storage order).
LPS = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 239.0], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def as_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored in the opposite x/y order (RAS for an LPS input), with its affine."""
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [data.shape[0] - 1, data.shape[1] - 1]  # new voxel i holds old voxel n - 1 - i
    return np.ascontiguousarray(data[::-1, ::-1]), affine @ flip


def phantom(shape: tuple[int, int, int], seed: int, empty_slices: int = 0) -> np.ndarray:
    """(X, Y, Z) int16 'head': an ellipse of random blobs, smooth in-plane, with ``empty_slices`` zero
    slices at each end of Z (slices without content)."""
    rng = np.random.default_rng(seed)
    x, y = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape[:2]], indexing="ij")
    volume = np.zeros(shape, np.float32)
    for z in range(empty_slices, shape[2] - empty_slices):
        tissue = np.zeros(shape[:2], np.float32)
        for _ in range(6):
            cx, cy, r = rng.uniform(-0.4, 0.4, 2).tolist() + [rng.uniform(0.1, 0.3)]
            tissue += rng.uniform(0.2, 1.0) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r**2)
        volume[:, :, z] = (x**2 / 0.7 + y**2 / 0.8 < 1) * (200 + 600 * tissue)
    return volume.astype(np.int16)


def write_ixi(root: Path, subjects: list[str], contrasts: tuple[str, ...], shape: tuple[int, int, int]) -> None:
    """IXI release layout: ``root/IXI-T2/IXI012-HH-1211-T2.nii.gz``; PD = 1.5 x T2 (dual echo, one grid)."""
    # IXI T2/PD: 0.9375 mm in-plane, 1.2 mm slices, stored right-to-left / anterior-to-posterior.
    affine = np.diag([-0.9375, -0.9375, 1.2, 1.0])
    affine[:3, 3] = [120.0, 120.0, -70.0]
    for i, subject in enumerate(subjects):
        t2 = phantom(shape, seed=i, empty_slices=1)
        for contrast in contrasts:
            data = t2 if contrast == "T2" else (1.5 * t2).astype(np.int16)
            write_nifti(root / f"IXI-{contrast}" / f"{subject}-{contrast}.nii.gz", data, affine)


def write_dicom_series(
    folder: Path, data: np.ndarray, row_cosine, col_cosine, spacing: tuple[float, float, float], origin_lps,
    slope: float = 1.0, intercept: float = 0.0, series_uid: str | None = None, thickness: float | None = None,
) -> None:
    """Write (cols, rows, slices) ``data`` as single-frame MR images in random file order.

    Args:
        row_cosine / col_cosine: ImageOrientationPatient (direction of increasing column / row index, LPS).
        spacing: (column spacing, row spacing, slice spacing) in mm.
        origin_lps: ImagePositionPatient of slice 0.
        thickness: SliceThickness in mm (default: the slice spacing).
    """
    folder.mkdir(parents=True, exist_ok=True)
    row_cosine, col_cosine = np.asarray(row_cosine, float), np.asarray(col_cosine, float)
    normal = np.cross(row_cosine, col_cosine)
    series_uid = series_uid or generate_uid()
    stored = np.round((data - intercept) / slope).astype(np.int16)
    for k in np.random.default_rng(1).permutation(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID = "MR", series_uid
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelSpacing = [spacing[1], spacing[0]]  # [row spacing, column spacing]
        ds.SliceThickness = spacing[2] if thickness is None else thickness
        ds.ImageOrientationPatient = [*row_cosine.tolist(), *col_cosine.tolist()]
        ds.ImagePositionPatient = (np.asarray(origin_lps, float) + k * spacing[2] * normal).tolist()
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T).tobytes()  # (rows, cols)
        pydicom.dcmwrite(folder / f"{uuid.uuid4().hex}.dcm", ds, enforce_file_format=True)


def fft2c(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT over the last two axes (fastMRI's k-space convention)."""
    shifted = np.fft.ifftshift(image, axes=(-2, -1))
    return np.fft.fftshift(np.fft.fft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def write_fastmri(
    path: Path, images: np.ndarray, acquisition: str, store: str = "reconstruction_rss"
) -> Path:
    """A fastMRI-style file from (slices, H, W) magnitude ``images``.

    Args:
        store: ``reconstruction_rss`` (plus multi-coil k-space), ``kspace_multicoil`` (two coils whose
            sensitivities' squares sum to 1, so the RSS is ``images``), ``kspace_singlecoil`` or ``none``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sensitivities = np.array([0.6, 0.8j])  # |0.6|^2 + |0.8|^2 = 1
    phase = np.exp(1j * np.linspace(0, 1, images.shape[-1]))  # a smooth phase: the magnitude is what counts
    with h5py.File(path, "w") as f:
        f.attrs["acquisition"] = acquisition
        f.attrs["max"] = float(images.max())
        f.attrs["patient_id"] = "synthetic"
        if store in ("reconstruction_rss", "kspace_multicoil"):
            coil_images = images[:, None] * phase * sensitivities[None, :, None, None]  # (S, C, H, W)
            f["kspace"] = fft2c(coil_images).astype(np.complex64)
        if store == "reconstruction_rss":
            f["reconstruction_rss"] = images.astype(np.float32)
        if store == "kspace_singlecoil":
            f["kspace"] = fft2c(images * phase).astype(np.complex64)
    return path


def one_line_error(match: str, func, *args, **kwargs) -> str:
    """Call ``func``; it must raise a one-line :class:`FasrError` matching ``match``. Returns the message."""
    with pytest.raises(FasrError, match=match) as info:
        func(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)
