"""Writing results: NIfTI volumes in the input's data type with provenance, a JSON sidecar, no silent overwrite."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from fasr.data.io import NIFTI_SUFFIXES
from fasr.errors import FasrError

__all__ = [
    "nifti_stem",
    "sidecar_path",
    "check_outputs",
    "resolved",
    "require_nifti",
    "cast_like",
    "nifti_image",
    "save_nifti",
    "write_json",
]

_DESCRIP_BYTES = 79  # the NIfTI-1 descrip field holds 80 bytes including the terminating NUL


def nifti_stem(path: Path) -> str:
    """File name without ``.nii`` / ``.nii.gz``."""
    for suffix in NIFTI_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def sidecar_path(path: Path) -> Path:
    """The JSON provenance file written beside a NIfTI output (BIDS style: ``sr.nii.gz`` -> ``sr.json``)."""
    return path.with_name(nifti_stem(path) + ".json")


def resolved(path: str | Path) -> Path:
    """``path`` made absolute with its links followed; a link that points back to itself is a one-line error.

    Args:
        path: a file or folder given by the user.
    """
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as exc:  # Python 3.11 raises RuntimeError for a symlink loop
        raise FasrError(f"'{path}' is a symbolic link that loops ({exc}); point it at a real file") from None


def check_outputs(
    outputs: Iterable[Path], inputs: Iterable[Path], force: bool, force_hint: str = "pass --force"
) -> None:
    """Refuse outputs that exist (unless ``force``) or that would replace an input, before any work is done.

    Args:
        outputs: files about to be written.
        inputs: files/folders read (never overwritten, even with ``force``).
        force: allow replacing existing outputs.
        force_hint: how the caller allows replacing, for the message.
    """
    sources = {resolved(p) for p in inputs}
    for out in outputs:
        out = Path(out)
        if resolved(out) in sources:
            raise FasrError(f"output '{out}' is also an input; choose another output path")
        if out.is_dir():
            raise FasrError(f"output '{out}' is a folder; give a file name such as {out / 'sr.nii.gz'}")
        if out.exists() and not force:
            raise FasrError(f"output '{out}' already exists; {force_hint} to overwrite it or choose another path")


def require_nifti(path: Path, option: str) -> None:
    """Refuse an output name that is not a NIfTI file name.

    Args:
        path: the output path.
        option: the command-line option that gave it (for the message).
    """
    if not path.name.endswith(NIFTI_SUFFIXES):
        raise FasrError(f"{option} '{path}' must be a NIfTI file name ending in .nii.gz or .nii")


def cast_like(data: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float intensities to ``dtype``: rounded and clipped to its range for integer types.

    Args:
        data: float array.
        dtype: target data type (e.g. the input's int16).
    """
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(data), info.min, info.max).astype(dtype)
    return data.astype(dtype)


def nifti_image(data: np.ndarray, affine: np.ndarray, descrip: str) -> nib.Nifti1Image:
    """A NIfTI-1 image with both qform and sform set to ``affine`` (scanner space, mm), as outputs are written.

    Args:
        data: (X, Y, Z) array, stored in its own data type without scaling.
        affine: (4, 4) voxel -> world matrix.
        descrip: header description; truncated to the field's 79 usable bytes.
    """
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code="scanner")
    img.set_sform(affine, code="scanner")
    img.header.set_xyzt_units(xyz="mm")
    img.header["descrip"] = descrip.encode("ascii", "replace")[:_DESCRIP_BYTES]
    return img


def save_nifti(path: Path, img: nib.Nifti1Image) -> Path:
    """Write ``img`` to ``path`` (``.nii`` or ``.nii.gz``; its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def write_json(path: Path, record: dict[str, Any]) -> Path:
    """Write ``record`` as indented JSON (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
