"""Make the bundled demo subject: a small brain crop of one TCGA-LGG case (T1 + T2), int16, original geometry.

Used once to write ``fasr/assets/demo/`` (kept for reproducibility)::

    python -m fasr.inference.demo_subject ../shared/data/brats/TCGA-DU-7294 fasr/assets/demo \
        --first-slice 92 --n-slices 12

The crop is a box around the brain in a run of axial slices, padded to a multiple of ``multiple`` voxels
in-plane so that any x2/x4 simulation divides it; nibabel's slicer keeps the data type and shifts the affine
so every kept voxel has its original world position.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["brain_box", "crop_subject", "main"]


def brain_box(mask: np.ndarray, multiple: int, margin: int) -> tuple[slice, slice]:
    """In-plane (x, y) box around a 3-D foreground mask, grown by ``margin`` and to a multiple of ``multiple``.

    Args:
        mask: (X, Y, Z) foreground.
        multiple: box sides are rounded up to a multiple of this (and fit in the volume).
        margin: voxels added on each side before rounding.
    """
    boxes = []
    for axis in (0, 1):
        n = mask.shape[axis]
        profile = mask.any(axis=tuple(a for a in range(3) if a != axis))
        lo, hi = np.flatnonzero(profile)[[0, -1]]
        lo, hi = max(0, lo - margin), min(n, hi + 1 + margin)
        size = min(n - n % multiple, -(-(hi - lo) // multiple) * multiple)
        start = int(np.clip((lo + hi - size) // 2, 0, n - size))
        boxes.append(slice(start, start + size))
    return boxes[0], boxes[1]


def crop_subject(
    src: Path,
    dst: Path,
    contrasts: Sequence[str],
    first_slice: int,
    n_slices: int,
    multiple: int = 16,
    margin: int = 4,
) -> list[Path]:
    """Crop ``<src>/<contrast>.nii.gz`` for each contrast to one brain box and slice run; write them to ``dst``.

    Args:
        src: subject folder of co-registered volumes.
        dst: output folder.
        contrasts: file stems, e.g. ``("t1", "t2")``; the brain box is the union of their foregrounds.
        first_slice, n_slices: the run of slices (last voxel axis) kept.
        multiple, margin: see :func:`brain_box`.
    """
    images = {c: nib.load(src / f"{c}.nii.gz") for c in contrasts}
    zs = slice(first_slice, first_slice + n_slices)
    mask = np.zeros(next(iter(images.values())).shape[:2] + (n_slices,), dtype=bool)
    for img in images.values():
        mask |= np.asanyarray(img.dataobj)[:, :, zs] > 0
    xs, ys = brain_box(mask, multiple, margin)
    dst.mkdir(parents=True, exist_ok=True)
    written = []
    for contrast, img in images.items():
        crop = img.slicer[xs, ys, zs]
        out = dst / f"{contrast}.nii.gz"
        nib.save(crop, out)
        written.append(out)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path, help="subject folder with t1.nii.gz, t2.nii.gz")
    parser.add_argument("dst", type=Path, help="output folder")
    parser.add_argument("--first-slice", type=int, required=True)
    parser.add_argument("--n-slices", type=int, default=10)
    parser.add_argument("--contrasts", nargs="+", default=["t1", "t2"])
    args = parser.parse_args(argv)
    for path in crop_subject(args.src, args.dst, args.contrasts, args.first_slice, args.n_slices):
        print(f"{path}  {path.stat().st_size / 1024:.0f} KiB  shape {nib.load(path).shape}")


if __name__ == "__main__":
    main()
