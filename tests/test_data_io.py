"""Readers: NIfTI, DICOM series, fastMRI HDF5 and 2-D slice files; display orientation; bad-input errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from conftest import write_nifti
from fasr.data.geometry import voxel_to_world
from fasr.data.io import read_slice, read_volume
from fasr.data.orient import DISPLAY_AFFINE, display_codes, display_volume, slice_stack, stack_to_volume
from fasr.data.types import Volume
from test_data_support import LPS, as_ras, fft2c, one_line_error, phantom, write_dicom_series, write_fastmri

# --- NIfTI and orientation ------------------------------------------------------------------------------


def test_nifti_reads_data_affine_and_voxel_size(tmp_path: Path) -> None:
    data = phantom((12, 10, 4), seed=0)
    affine = np.diag([0.9, 0.8, 2.5, 1.0])
    volume = read_volume(write_nifti(tmp_path / "a.nii.gz", data, affine))
    assert volume.data.dtype == np.float32 and volume.data.shape == (12, 10, 4)
    np.testing.assert_array_equal(volume.data, data)
    np.testing.assert_allclose(volume.affine, affine)
    assert volume.voxel_size == pytest.approx((0.9, 0.8, 2.5))


def test_ras_and_lps_copies_give_the_same_display_slices(tmp_path: Path) -> None:
    """BraTS ships both orientations: the same head stored RAS and LPS must give identical slices."""
    lps = phantom((12, 10, 3), seed=1)
    a = display_volume(read_volume(write_nifti(tmp_path / "lps.nii", lps, LPS)))
    b = display_volume(read_volume(write_nifti(tmp_path / "ras.nii", *as_ras(lps, LPS))))
    assert display_codes(a.affine) == ("L", "P", "S") and display_codes(b.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(slice_stack(a), slice_stack(b))
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-9)


def test_display_volume_keeps_every_voxel_at_its_world_position() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(5, 6, 7)).astype(np.float32)
    # Voxel axes: x -> superior, y -> right, z -> posterior (a permuted, flipped grid).
    affine = np.array([[0, 2.0, 0, 1], [0, 0, -3.0, 2], [1.5, 0, 0, 3], [0, 0, 0, 1]])
    out = display_volume(Volume(data, affine, "x"))
    assert display_codes(affine) == ("L", "I", "A")  # slice axis closest to A-P: coronal display
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in data.shape], indexing="ij"), -1).reshape(-1, 3)
    world = voxel_to_world(affine, ijk)
    out_ijk = np.rint(voxel_to_world(np.linalg.inv(out.affine), world)).astype(int)
    np.testing.assert_array_equal(out.data[tuple(out_ijk.T)], data[tuple(ijk.T)])


def test_slice_stack_round_trip() -> None:
    stack = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)  # (Z, H, W)
    volume = stack_to_volume(stack, DISPLAY_AFFINE, "s")
    assert volume.data.shape == (4, 3, 2)
    np.testing.assert_array_equal(slice_stack(volume), stack)


def test_four_d_nifti_with_one_volume_is_read_and_many_volumes_rejected(tmp_path: Path) -> None:
    data = phantom((8, 8, 3), seed=2)
    assert read_volume(write_nifti(tmp_path / "one.nii.gz", data[..., None], np.eye(4))).data.shape == (8, 8, 3)
    many = np.stack([data, data], axis=-1)
    one_line_error("extract one 3-D volume", read_volume, write_nifti(tmp_path / "two.nii.gz", many, np.eye(4)))


# --- DICOM ----------------------------------------------------------------------------------------------


def test_dicom_series_sorted_by_position_with_header_geometry(tmp_path: Path) -> None:
    data = phantom((10, 8, 5), seed=3).astype(np.float32) * 2 - 10  # (cols, rows, slices)
    data[2, 3, 1] = 4000.0  # a landmark
    origin = (-30.0, 20.0, 5.0)  # LPS mm
    write_dicom_series(tmp_path / "ser", data, (1, 0, 0), (0, 1, 0), (0.8, 0.9, 2.5), origin, slope=2.0,
                       intercept=-10.0)
    volume = read_volume(tmp_path / "ser")
    np.testing.assert_allclose(volume.data, data)  # slices sorted although files were written shuffled
    expected = np.array([[-0.8, 0, 0, 30.0], [0, -0.9, 0, -20.0], [0, 0, 2.5, 5.0], [0, 0, 0, 1]])  # RAS
    np.testing.assert_allclose(volume.affine, expected)
    landmark = voxel_to_world(volume.affine, np.array([2, 3, 1]))
    np.testing.assert_allclose(landmark, [30.0 - 1.6, -20.0 - 2.7, 5.0 + 2.5])  # LPS (-31.6, 22.7, 7.5)


def test_coronal_dicom_keeps_its_slices_in_display_orientation(tmp_path: Path) -> None:
    data = phantom((10, 8, 4), seed=4).astype(np.float32)
    # Columns run to the patient's left, rows to inferior: a coronal series (normal = posterior).
    write_dicom_series(tmp_path / "cor", data, (1, 0, 0), (0, 0, -1), (1.0, 1.0, 3.0), (0.0, 0.0, 0.0))
    volume = display_volume(read_volume(tmp_path / "cor"))
    assert display_codes(volume.affine) == ("L", "I", "A")
    stack = slice_stack(volume)  # slices stay the acquired coronal images (order reversed: A is up)
    np.testing.assert_allclose(stack[::-1], np.transpose(data, (2, 1, 0)))


def test_dicom_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not dicom")
    one_line_error("no DICOM images", read_volume, tmp_path / "empty")
    data = phantom((6, 6, 2), seed=5).astype(np.float32)
    write_dicom_series(tmp_path / "two", data, (1, 0, 0), (0, 1, 0), (1, 1, 1), (0, 0, 0))
    write_dicom_series(tmp_path / "two", data, (1, 0, 0), (0, 1, 0), (1, 1, 1), (0, 0, 50))
    one_line_error("mixes 2 DICOM series", read_volume, tmp_path / "two")


# --- fastMRI --------------------------------------------------------------------------------------------


def _knee(slices: int = 3, size: int = 16) -> np.ndarray:
    return np.stack([phantom((size, size, 1), seed=s)[:, :, 0] for s in range(slices)]).astype(np.float32)


@pytest.mark.parametrize("store", ["reconstruction_rss", "kspace_multicoil", "kspace_singlecoil"])
def test_fastmri_magnitude_from_reconstruction_or_kspace(tmp_path: Path, store: str) -> None:
    images = _knee()  # (slices, H, W)
    volume = read_volume(write_fastmri(tmp_path / "file1000001.h5", images, "CORPD_FBK", store=store))
    assert volume.data.shape == (16, 16, 3)  # (W, H, slices): slices are the Z axis
    np.testing.assert_allclose(slice_stack(display_volume(volume)), images, atol=1e-3)


def test_fastmri_without_kspace_or_reconstruction(tmp_path: Path) -> None:
    path = write_fastmri(tmp_path / "bad.h5", _knee(), "CORPD_FBK", store="none")
    message = one_line_error("neither 'kspace' nor a reconstruction", read_volume, path)
    assert str(path) in message


def test_fft2c_convention_matches_reader() -> None:
    from fasr.data.fastmri import ifft2c

    image = np.random.default_rng(0).normal(size=(2, 8, 6)) + 0j
    np.testing.assert_allclose(ifft2c(fft2c(image)), image, atol=1e-12)


# --- 2-D slice files ------------------------------------------------------------------------------------


def test_png_8_and_16_bit_and_tiff(tmp_path: Path) -> None:
    image = (np.arange(12 * 10).reshape(12, 10) % 250).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_slice(tmp_path / "a.png"), image)
    deep = (np.arange(12 * 10).reshape(12, 10) * 500).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "b.png")
    Image.fromarray(deep).save(tmp_path / "b.tif")
    np.testing.assert_array_equal(read_slice(tmp_path / "b.png"), deep)
    np.testing.assert_array_equal(read_slice(tmp_path / "b.tif"), deep)
    volume = read_volume(tmp_path / "b.png")  # a slice as a one-slice volume, taken as displayed
    assert volume.data.shape == (10, 12, 1)
    np.testing.assert_array_equal(slice_stack(display_volume(volume))[0], deep)


def test_npy_complex_is_magnitude_and_mat_by_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    complex_slice = rng.normal(size=(6, 5)) + 1j * rng.normal(size=(6, 5))
    np.save(tmp_path / "c.npy", complex_slice)
    np.testing.assert_allclose(read_slice(tmp_path / "c.npy"), np.abs(complex_slice), rtol=1e-6)
    image = rng.uniform(1, 2, size=(6, 5))
    scipy.io.savemat(tmp_path / "v5.mat", {"img": image, "other": image[:2]})
    np.testing.assert_allclose(read_slice(tmp_path / "v5.mat", key="img"), image, rtol=1e-6)
    one_line_error("holds 2 variables", read_slice, tmp_path / "v5.mat")
    one_line_error("no variable 'x'", read_slice, tmp_path / "v5.mat", key="x")
    with h5py.File(tmp_path / "v73.mat", "w") as f:  # MATLAB v7.3 is HDF5, stored column-major
        f["img"] = image.T
    np.testing.assert_allclose(read_slice(tmp_path / "v73.mat"), image, rtol=1e-6)


# --- bad inputs -----------------------------------------------------------------------------------------


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "t2.nii.gz", phantom((8, 8, 3), seed=0), np.eye(4))
    path.write_bytes(path.read_bytes()[:200])  # truncated download
    assert str(path) in one_line_error("cannot read", read_volume, path)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    one_line_error("cannot read", read_slice, tmp_path / "junk.png")
    one_line_error("not found", read_volume, tmp_path / "missing.nii.gz")
    (tmp_path / "notes.txt").write_text("t2")
    one_line_error("unknown file type", read_volume, tmp_path / "notes.txt")


def test_nan_inf_and_empty_volumes(tmp_path: Path) -> None:
    data = phantom((8, 8, 3), seed=0).astype(np.float32)
    data[1, 1, 1], data[2, 2, 2] = np.nan, np.inf
    path = write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4))
    assert str(path) in one_line_error("2 NaN/inf voxels", read_volume, path)
    one_line_error("is empty", read_volume, write_nifti(tmp_path / "zeros.nii.gz", np.zeros((8, 8, 3)), np.eye(4)))
    np.save(tmp_path / "flat.npy", np.full((4, 4), 7.0))
    one_line_error("is empty", read_slice, tmp_path / "flat.npy")


def test_two_d_file_where_a_volume_is_needed(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "slice.nii.gz", phantom((8, 8, 1), seed=0)[:, :, 0], np.eye(4))
    assert read_volume(path).data.shape == (8, 8, 1)
    one_line_error("is a 2-D image .* a 3-D volume is needed", read_volume, path, require_3d=True)
    np.save(tmp_path / "vol.npy", np.ones((3, 4, 5)))
    one_line_error("not a 2-D slice", read_slice, tmp_path / "vol.npy")
