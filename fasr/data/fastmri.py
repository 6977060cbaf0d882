"""fastMRI HDF5 files (Zbontar et al., 2018): the magnitude image of every slice.

A file holds ``kspace`` ((slices, coils, H, W) multi-coil or (slices, H, W) single-coil, complex) and, in the
training/validation releases, ``reconstruction_rss`` (multi-coil) or ``reconstruction_esc`` (single-coil),
(slices, 320, 320). Attributes include ``acquisition`` (``CORPD_FBK``: proton density, ``CORPDFS_FBK``: fat
suppressed) and ``max``. The stored reconstruction is preferred; without one the image is the centred inverse
FFT of k-space, root-sum-of-squares over coils.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from fasr.errors import FasrError

__all__ = ["ACQUISITIONS", "RECONSTRUCTION_KEYS", "ifft2c", "kspace_magnitude", "read_acquisition", "read_fastmri"]

# Contrast name used in configs -> fastMRI ``acquisition`` attribute.
ACQUISITIONS: dict[str, str] = {"pd": "CORPD_FBK", "pdfs": "CORPDFS_FBK"}
RECONSTRUCTION_KEYS = ("reconstruction_rss", "reconstruction_esc")


def ifft2c(kspace: np.ndarray) -> np.ndarray:
    """Centred, orthonormal 2-D inverse FFT over the last two axes (DC at the array centre, as fastMRI stores it).

    Args:
        kspace: (..., H, W) complex k-space.
    """
    shifted = np.fft.ifftshift(kspace, axes=(-2, -1))
    return np.fft.fftshift(np.fft.ifft2(shifted, axes=(-2, -1), norm="ortho"), axes=(-2, -1))


def kspace_magnitude(kspace: np.ndarray) -> np.ndarray:
    """Magnitude image of one slice: root-sum-of-squares over coils for (C, H, W), ``|.|`` for (H, W).

    Args:
        kspace: one slice of k-space, multi-coil (C, H, W) or single-coil (H, W).
    """
    images = ifft2c(kspace)
    if images.ndim == 3:
        return np.sqrt((np.abs(images) ** 2).sum(axis=0)).astype(np.float32)  # (C, H, W) -> (H, W)
    return np.abs(images).astype(np.float32)


def read_acquisition(path: str | Path) -> str | None:
    """The ``acquisition`` attribute of a fastMRI file (e.g. ``CORPD_FBK``), or None when absent."""
    with h5py.File(path, "r") as f:
        value = f.attrs.get("acquisition")
    return value.decode() if isinstance(value, bytes) else value


def read_fastmri(path: str | Path) -> np.ndarray:
    """(slices, H, W) float32 magnitude images of a fastMRI file.

    Args:
        path: ``.h5`` file.

    Raises:
        FasrError: when the file holds neither k-space nor a reconstruction.
    """
    with h5py.File(path, "r") as f:
        for key in RECONSTRUCTION_KEYS:
            if key in f:
                return np.asarray(f[key][()], dtype=np.float32)
        if "kspace" in f:
            kspace = f["kspace"]
            if kspace.ndim not in (3, 4):
                raise FasrError(
                    f"'{path}': 'kspace' has shape {kspace.shape}; expected (slices, [coils,] H, W) as in fastMRI"
                )
            # One slice at a time: multi-coil k-space of a whole volume can be ~1 GB.
            return np.stack([kspace_magnitude(kspace[s]) for s in range(kspace.shape[0])])
        keys = ", ".join(sorted(f.keys())) or "none"
    raise FasrError(
        f"'{path}' has neither 'kspace' nor a reconstruction ({' / '.join(RECONSTRUCTION_KEYS)}); keys found: "
        f"{keys}; give an unmodified fastMRI file"
    )
