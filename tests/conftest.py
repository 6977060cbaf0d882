"""Suite-wide settings and the shared writers of small synthetic files (import them: ``from conftest import ...``).

One intra-op thread per test process: the tests use tiny tensors, where a second OpenMP thread buys nothing, and
on a 2-core machine shared with pytest-xdist workers or other jobs spinning threads slowed single tests 5-30x.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch

__all__ = ["write_nifti", "write_brats_subject", "brats_phantom", "write_brats"]


def pytest_configure(config) -> None:  # noqa: ARG001 - pytest hook signature
    torch.set_num_threads(1)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """Save ``data`` with ``affine`` as NIfTI at ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def write_brats_subject(root: Path, subject: str, contrasts: dict[str, np.ndarray], affine: np.ndarray) -> Path:
    """``root/subject/<contrast>.nii.gz`` for each contrast."""
    for name, data in contrasts.items():
        write_nifti(root / subject / f"{name}.nii.gz", data, affine)
    return root / subject


def brats_phantom(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two co-registered int16 'contrasts' of one random blob phantom: T2-like and T1-like (inverted tissue order)."""
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    brain = (x**2 + y**2 < 0.7).astype(np.float32)
    tissue = np.zeros(shape, np.float32)
    for _ in range(12):
        cx, cy, r = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.05, 0.25)
        tissue += rng.uniform(0.3, 1.0) * ((x - cx) ** 2 + (y - cy) ** 2 < r**2) * (1 + 0.2 * z)
    t2 = brain * (300 + 600 * tissue) + rng.normal(0, 5, shape)
    t1 = brain * (900 - 400 * tissue) + rng.normal(0, 5, shape)
    return t2.astype(np.int16), t1.astype(np.int16)


def write_brats(root: Path, subjects: list[str], shape: tuple[int, int, int] = (48, 48, 6), seed: int = 0) -> Path:
    """Write a synthetic BraTS-layout dataset ``root/<subject>/{t1,t2}.nii.gz`` (int16, 1 mm, LPS axes).

    Args:
        root: dataset folder to create.
        subjects: subject ids.
        shape: volume shape (x, y, slices).
        seed: phantom seed.
    """
    rng = np.random.default_rng(seed)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    for subject in subjects:
        t2, t1 = brats_phantom(shape, rng)
        write_brats_subject(root, subject, {"t2": t2, "t1": t1}, affine)
    return root


def head_phantom(shape: tuple[int, int, int] = (96, 96, 48), seed: int = 0) -> np.ndarray:
    """A head-like volume: an ellipsoid with 25 ellipsoidal 'structures' of other intensities, sharp edges
    slightly smoothed (3-D structure along every axis, for registration)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    head = np.sum((grid / [0.85, 0.9, 0.8]) ** 2, -1) < 1
    image = np.where(head, 100.0, 0.0)
    for _ in range(25):
        c, r = rng.uniform(-0.55, 0.55, 3), rng.uniform(0.06, 0.25, 3)
        image[(np.sum(((grid - c) / r) ** 2, -1) < 1) & head] = rng.uniform(20, 200)
    return ndimage.gaussian_filter(image, 0.7).astype(np.float32)
