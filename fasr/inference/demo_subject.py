"""The demo subject: the ICBM152 2009a template shipped in nilearn's wheel, with a simulated T2-weighted target.

Reference: the template's T1-weighted image (skull-stripped, 1 mm, as nilearn stores it: uint8 0-255).
Target: a T2-weighted spin-echo image simulated from the template's grey- and white-matter probability maps,
with cerebrospinal fluid = 1 - GM - WM inside the brain (the template's non-zero voxels)::

    S = sum over tissues of p_tissue * PD (1 - exp(-TR / T1)) exp(-TE / T2)

with the 3 T relaxation times below. The ground truth of the demo is therefore simulated (a smooth population
average, no noise), not a scan of a patient. Both images keep the template's grid (MNI space, RAS, 1 mm) and are
cropped without resampling to a brain box and a run of axial slices, so the demo is small and fast.

Terms of the data (not stored in this repository; read from the installed nilearn package at run time):
nilearn is BSD-3-Clause; the ICBM 2009a Nonlinear Symmetric template (Fonov et al., NeuroImage 47 S102, 2009;
NeuroImage 54:313-327, 2011) carries the notice "Copyright (C) 1993-2004 Louis Collins, McConnell Brain Imaging
Centre, Montreal Neurological Institute, McGill University", with permission to use, copy, modify and distribute
it for any purpose without fee provided the notice appears in all copies, and no warranty.

Write the pair to files (e.g. to try ``fasr infer --simulate-from`` on it)::

    python -m fasr.inference.demo_subject demo-subject/
"""

from __future__ import annotations

import argparse
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from fasr.errors import FasrError

__all__ = [
    "TEMPLATE",
    "Tissue",
    "TISSUES_3T",
    "TR_MS",
    "TE_MS",
    "template_dir",
    "brain_box",
    "spin_echo",
    "simulate_t2w",
    "demo_pair",
    "main",
]

# The nilearn files used (nilearn/datasets/data/): the template T1 and the tissue probability maps, 0-255.
TEMPLATE = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}


@dataclass(frozen=True)
class Tissue:
    """Spin-echo parameters of one tissue.

    Attributes:
        pd: relative proton density (CSF = 1).
        t1_ms, t2_ms: longitudinal and transverse relaxation times in ms.
    """

    pd: float
    t1_ms: float
    t2_ms: float


# Relaxation times at 3 T. GM and WM: Stanisz et al., "T1, T2 relaxation and magnetization transfer in tissue
# at 3T", Magn Reson Med 54:507-512, 2005 (in vitro, 37 C: GM 1820 / 99 ms, WM 1084 / 69 ms). CSF: the
# subarachnoid values (4309 / 1886 ms; frontal horns 4454 / 2373 ms) of "Quantification of T1 and T2 of
# subarachnoid CSF: implications for water exchange between CSF and brain tissues", Magn Reson Med
# (PMC10696635). Proton densities (water content): the usual GM 0.8, WM 0.7, CSF 1.0 (our choice, rounded).
TISSUES_3T = {
    "gm": Tissue(pd=0.8, t1_ms=1820.0, t2_ms=99.0),
    "wm": Tissue(pd=0.7, t1_ms=1084.0, t2_ms=69.0),
    "csf": Tissue(pd=1.0, t1_ms=4309.0, t2_ms=1886.0),
}
# A clinical T2-weighted turbo spin echo (our choice): long TR (little T1 weighting), TE near the tissue T2s.
TR_MS = 5000.0
TE_MS = 100.0
# Crop of the demo (our choice): 12 axial slices through the lateral ventricles, basal ganglia and cortex
# (template voxels z = 82..93, MNI z = 10..21 mm); in-plane box sides a multiple of 16 so x2/x4 divide it.
FIRST_SLICE = 82
N_SLICES = 12
BOX_MULTIPLE = 16
BOX_MARGIN = 4
T2W_SCALE = 1000.0  # simulated signal (PD units) -> stored value, float32


def template_dir() -> Path:
    """Folder of nilearn's packaged data (found without importing nilearn, which is slow to import).

    Raises:
        FasrError: nilearn is not installed, or its wheel lacks the template files.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise FasrError("the demo subject is made from nilearn's ICBM152 template; install it: pip install nilearn")
    folder = Path(spec.origin).parent / "datasets" / "data"
    missing = [name for name in TEMPLATE.values() if not (folder / name).is_file()]
    if missing:
        raise FasrError(f"nilearn at {folder.parent.parent} lacks {missing[0]}; reinstall it: pip install -U nilearn")
    return folder


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


def spin_echo(tissue: Tissue, tr_ms: float, te_ms: float) -> float:
    """Spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` of one tissue (full recovery between echoes).

    Args:
        tissue: its PD, T1, T2.
        tr_ms, te_ms: repetition and echo time in ms.
    """
    return tissue.pd * (1.0 - np.exp(-tr_ms / tissue.t1_ms)) * np.exp(-te_ms / tissue.t2_ms)


def simulate_t2w(
    gm: np.ndarray,
    wm: np.ndarray,
    brain: np.ndarray,
    tissues: dict[str, Tissue] = TISSUES_3T,
    tr_ms: float = TR_MS,
    te_ms: float = TE_MS,
) -> np.ndarray:
    """T2-weighted image of a voxel-wise tissue mixture: the spin-echo signals weighted by the probabilities.

    Args:
        gm, wm: grey- and white-matter probabilities in [0, 1], any shape.
        brain: boolean mask (same shape); CSF = 1 - GM - WM inside it, nothing outside.
        tissues: parameters of ``gm``, ``wm`` and ``csf``.
        tr_ms, te_ms: sequence timing.
    """
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0) * brain
    fractions = {"gm": gm * brain, "wm": wm * brain, "csf": csf}
    return sum(fractions[name] * spin_echo(tissues[name], tr_ms, te_ms) for name in ("gm", "wm", "csf"))


def demo_pair(
    first_slice: int = FIRST_SLICE, n_slices: int = N_SLICES
) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """The demo's (T2-weighted target, T1-weighted reference), cropped to the brain box of a run of axial slices.

    Args:
        first_slice, n_slices: the template's axial slices (last voxel axis) kept.

    Returns:
        The simulated T2w (float32) and the template T1 (uint8), same grid, affine shifted to the crop.
    """
    folder = template_dir()
    images = {name: nib.load(folder / filename) for name, filename in TEMPLATE.items()}
    zs = slice(first_slice, first_slice + n_slices)
    t1 = images["t1"].slicer[:, :, zs]
    brain = np.asanyarray(t1.dataobj) > 0  # the template is skull-stripped: non-zero = brain and CSF
    xs, ys = brain_box(brain, BOX_MULTIPLE, BOX_MARGIN)
    t1 = t1.slicer[xs, ys]
    gm, wm = (np.asanyarray(images[n].dataobj)[xs, ys, zs] / 255.0 for n in ("gm", "wm"))
    t2w = (simulate_t2w(gm, wm, brain[xs, ys]) * T2W_SCALE).astype(np.float32)
    target = nib.Nifti1Image(t2w, t1.affine)
    target.set_qform(t1.affine, code="mni")
    target.set_sform(t1.affine, code="mni")
    return target, t1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dst", type=Path, help="output folder for t2w.nii.gz (simulated) and t1.nii.gz")
    args = parser.parse_args(argv)
    args.dst.mkdir(parents=True, exist_ok=True)
    for name, image in zip(("t2w", "t1"), demo_pair()):
        path = args.dst / f"{name}.nii.gz"
        nib.save(image, path)
        print(f"{path}  shape {image.shape}  {image.get_data_dtype()}")


if __name__ == "__main__":
    main()
