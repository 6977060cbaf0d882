"""Fuzz: random NIfTI headers through the readers and the planner never crash and never write a file.

Each case writes a target and a reference with random dimensions (2-5, sizes 1..2000), zooms, affines (oblique,
singular, NaN/inf), data types, intensity scaling (``scl_slope`` / ``scl_inter``, zero and NaN included),
magnitude, negative-only or standardised (z-scored, signed) intensities and, sometimes, corrupted header bytes, a
header that claims more voxels than the file holds (an honest file of that size would not fit the test), or a
symbolic link in place of the file (to it, to nothing, or in a loop). ``fasr.data.io.read_volume``,
``fasr.data.normalize.robust_stats``, ``fasr.inference.plan.read_geometry``, ``plan_inference`` and
``check_output_paths`` must either succeed or raise a one-line :class:`FasrError`, and leave the folder as it was.
More cases: ``FASR_FUZZ_CASES=5000 pytest tests/test_fuzz_inputs.py``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fasr.data.io import read_volume
from fasr.data.normalize import robust_stats
from fasr.errors import FasrError
from fasr.inference.plan import check_output_paths, plan_inference, read_geometry

N_CASES = int(os.environ.get("FASR_FUZZ_CASES", "300"))
DTYPES = (np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.float32, np.float64, np.complex64)
MAX_HONEST_VOXELS = 40_000  # larger claimed shapes are written as a header with a few bytes of data
HEADER_BYTES = 348  # NIfTI-1


def random_shape(rng: np.random.Generator) -> tuple[int, ...]:
    ndim = int(rng.integers(2, 6))
    shape = np.exp(rng.uniform(0, np.log(2000), ndim)).astype(int).clip(1, 2000)
    if rng.random() < 0.5:  # mostly-honest sizes: shrink until the file can hold them
        while np.prod(shape) > MAX_HONEST_VOXELS:
            shape[int(np.argmax(shape))] //= 2
    return tuple(int(n) for n in shape)


def random_affine(rng: np.random.Generator) -> np.ndarray:
    zooms = np.exp(rng.uniform(np.log(0.05), np.log(20), 3)) * rng.choice([-1, 1], 3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # random rotation (or reflection)
    affine = np.eye(4)
    affine[:3, :3] = q * zooms if rng.random() < 0.7 else np.diag(zooms)
    affine[:3, 3] = rng.uniform(-300, 300, 3)
    kind = rng.random()
    if kind < 0.1:
        affine[:3, int(rng.integers(3))] = 0.0  # a zero-size axis
    elif kind < 0.2:
        affine[:3, 1] = affine[:3, 0]  # two parallel axes
    elif kind < 0.3:
        affine[int(rng.integers(3)), int(rng.integers(4))] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind < 0.35:
        affine[:3, :3] = 0.0
    return affine


def write_case(path: Path, rng: np.random.Generator) -> None:
    """A NIfTI file with a random header at ``path`` (.nii or .nii.gz)."""
    shape, dtype = random_shape(rng), np.dtype(rng.choice(DTYPES))
    honest = int(np.prod(shape)) <= MAX_HONEST_VOXELS
    data = rng.normal(100, 50, shape if honest else (2,) * len(shape))
    kind = rng.random()
    if kind < 0.1:
        data = np.full(data.shape, -5.0)  # no content
    elif kind < 0.2:  # standardised: background at its z-value, tissue partly negative
        data = np.where(rng.random(data.shape) < 0.4, -3.6, rng.normal(0.0, 1.0, data.shape))
    elif kind < 0.25:
        data = -np.abs(data)  # negative only
    if rng.random() < 0.1 and dtype.kind == "f":
        data.flat[0] = np.nan
    header = nib.Nifti1Header()
    header.set_data_dtype(dtype)
    header.set_data_shape(shape)
    if rng.random() < 0.2:  # scaled integers (or floats): slope and intercept, degenerate values included
        header["scl_slope"] = rng.choice([1 / 30000, 0.5, 2.0, 0.0, np.nan, -1.0])
        header["scl_inter"] = rng.choice([0.0, -100.0, 3.5, np.nan])
    # Geometry fields written directly (nibabel's setters refuse singular and NaN matrices; files can hold them).
    affine = random_affine(rng)
    header["sform_code"], header["qform_code"] = rng.choice([0, 1, 2], 2)
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[:3]
    header["quatern_b"], header["quatern_c"], header["quatern_d"] = rng.uniform(-1.2, 1.2, 3)
    header["qoffset_x"], header["qoffset_y"], header["qoffset_z"] = affine[:3, 3]
    pixdim = header["pixdim"].copy()
    pixdim[0] = rng.choice([1.0, -1.0, 0.0])
    pixdim[1 : len(shape) + 1] = rng.choice([1.0, 0.0, -1.0], len(shape)) * np.exp(rng.uniform(-3, 3, len(shape)))
    header["pixdim"] = pixdim
    header["vox_offset"] = HEADER_BYTES + 4
    raw = header.binaryblock + b"\0" * 4 + np.ascontiguousarray(data.astype(dtype)).tobytes()
    if rng.random() < 0.2:  # corrupt a few header bytes (dims, datatype, offsets, ...)
        block = bytearray(raw)
        for at in rng.integers(0, HEADER_BYTES, int(rng.integers(1, 6))):
            block[int(at)] = int(rng.integers(256))
        raw = bytes(block)
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.name.endswith(".gz") else raw)


def allowed(call, *args, **kwargs) -> None:
    """Run ``call``: success and FasrError are fine, anything else fails the test."""
    try:
        call(*args, **kwargs)
    except FasrError as exc:
        assert "\n" not in str(exc), f"multi-line error: {exc}"


@pytest.mark.parametrize("seed", range(N_CASES))
def test_random_headers_never_crash_or_write(tmp_path, seed):
    rng = np.random.default_rng(seed)
    lr, ref = tmp_path / "lr.nii", tmp_path / "ref.nii.gz"
    if rng.random() < 0.5:
        lr = lr.with_name("lr.nii.gz")
    write_case(lr, rng)
    write_case(ref, rng)
    link = rng.random()
    if link < 0.15:  # the LR given as a symbolic link: to the file, to nothing, or in a loop
        target = lr.with_name("lr-file" + "".join(lr.suffixes))
        lr.rename(target)
        lr.symlink_to(target if link < 0.05 else tmp_path / "missing.nii" if link < 0.1 else lr)
    before = sorted(p.name for p in tmp_path.iterdir())
    for path in (lr, ref):
        allowed(read_volume, path)
        allowed(read_geometry, path)
        allowed(lambda p: robust_stats(read_volume(p)), path)
    scale = int(rng.choice([2, 4]))
    allowed(plan_inference, lr, ref, scale, simulate=bool(rng.random() < 0.3), batch_size=int(rng.integers(1, 9)))
    outputs = {"--out": tmp_path / "out" / "sr.nii.gz", "--confidence": tmp_path / "conf.nii.gz"}
    allowed(check_output_paths, outputs, [lr, ref], force=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
