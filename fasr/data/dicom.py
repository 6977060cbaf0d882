"""DICOM series folders: slices sorted by position along the slice normal, geometry from the headers.

DICOM patient coordinates are LPS; the returned affine is RAS like nibabel's. Voxel axes: x = column
(along the first ImageOrientationPatient cosine), y = row (second cosine), z = slice (their cross product).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from fasr.data.types import Volume
from fasr.errors import FasrError

__all__ = ["read_dicom_series", "usable_thickness"]

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# Relative spread of slice gaps tolerated before calling a series unevenly spaced.
_GAP_TOL = 0.01


def _read_images(folder: Path) -> list[Dataset]:
    """Every DICOM file with pixel data in ``folder`` (non-DICOM files are ignored)."""
    images = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError):
            continue
        if "PixelData" in ds:
            images.append(ds)
    return images


def _pixels(ds: Dataset, folder: Path) -> np.ndarray:
    """(rows, cols) float32 rescaled pixel values of one image."""
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # pydicom raises several types for unsupported/compressed transfer syntaxes
        raise FasrError(
            f"'{folder}': cannot decode DICOM pixel data ({exc}); convert the series to NIfTI (e.g. dcm2niix)"
        ) from None
    if pixels.ndim != 2:
        raise FasrError(
            f"'{folder}' holds multi-frame or colour DICOM images (pixel array {pixels.shape}); convert the series "
            "to NIfTI (e.g. dcm2niix)"
        )
    slope = float(getattr(ds, "RescaleSlope", 1.0))
    intercept = float(getattr(ds, "RescaleIntercept", 0.0))
    return pixels.astype(np.float32) * slope + intercept


def usable_thickness(value: object) -> float | None:
    """A header's slice thickness in mm if it is one positive finite number (a DICOM DS, a JSON number or a
    numeric string; a DICOM multi-value gives its first), else None: the thickness only refines what the spacing
    says, so an unusable value is ignored (the plan line says whether one was used)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None  # type: ignore[index, arg-type]
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def read_dicom_series(folder: str | Path) -> Volume:
    """Read one DICOM series (a folder of single-frame images) into a volume.

    Args:
        folder: folder holding the images of exactly one series.

    Raises:
        FasrError: no images, several series, mixed orientations, repeated or uneven slice positions.
    """
    folder = Path(folder)
    images = _read_images(folder)
    if not images:
        raise FasrError(f"'{folder}' holds no DICOM images; point to the folder of one DICOM series")
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in images}
    if len(series) > 1:
        raise FasrError(f"'{folder}' mixes {len(series)} DICOM series; put each series in its own folder")
    try:
        orientations = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in images])  # (N, 6)
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in images])  # (N, 3)
        row_spacing, col_spacing = (float(v) for v in images[0].PixelSpacing)
    except AttributeError as exc:
        raise FasrError(
            f"'{folder}': DICOM geometry tag missing ({exc}); export the series with full headers"
        ) from None
    if not np.allclose(orientations, orientations[0], atol=1e-4):
        raise FasrError(f"'{folder}' mixes slice orientations; put each stack (e.g. localizers) in its own folder")
    along_row, along_col = orientations[0, :3], orientations[0, 3:]
    normal = np.cross(along_row, along_col)
    depth = positions @ normal  # (N,) slice positions along the normal
    order = np.argsort(depth)
    gaps = np.diff(depth[order])
    if len(images) > 1 and gaps.min() <= 1e-3 * max(row_spacing, col_spacing):
        raise FasrError(f"'{folder}' has several images at one slice position; keep one image per position")
    if len(images) > 1 and np.ptp(gaps) > _GAP_TOL * gaps.mean():
        raise FasrError(f"'{folder}' has unevenly spaced slices (gaps {gaps.min():.3g}-{gaps.max():.3g} mm); "
                        "convert it with dcm2niix, which resamples or splits such series")
    slice_spacing = float(gaps.mean()) if len(images) > 1 else float(getattr(images[0], "SliceThickness", 1.0))
    data = np.stack([_pixels(images[i], folder).T for i in order], axis=2)  # (cols, rows, slices) = (X, Y, Z)
    lps = np.eye(4)
    lps[:3, 0] = along_row * col_spacing  # +1 column
    lps[:3, 1] = along_col * row_spacing  # +1 row
    lps[:3, 2] = normal * slice_spacing
    lps[:3, 3] = positions[order[0]]
    thickness = usable_thickness(getattr(images[0], "SliceThickness", None))  # one series: one thickness
    return Volume(data=data, affine=_LPS_TO_RAS @ lps, path=str(folder), slice_thickness=thickness)
