"""``fasr infer`` end to end on small generated scans: geometry through oblique affines, the reference slice
given to each target slice, DICOM and 2-D inputs, the confidence map, provenance, and the user errors."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_nifti
from fasr import __version__
from fasr.data.degrade import Bicubic
from fasr.data.geometry import sr_affine, voxel_to_world
from fasr.data.normalize import robust_stats
from fasr.data.orient import DISPLAY_AFFINE
from fasr.errors import FasrError
from fasr.pretrained import PRETRAINED, list_pretrained, resolve_checkpoint
from test_data_support import write_dicom_series
from test_geometry import oblique_affine
from test_infer_support import run_cli, world_field, write_checkpoint, write_tiny_fasr

T2_FIELD = (1000.0, 5.0, 3.0, -2.0)  # LR target intensity: c0 + c1 x + c2 y + c3 z (world mm)
T1_FIELD = (600.0, 4.0, -6.0, 1.5)  # reference intensity


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt")


def lr_affine(zooms: tuple[float, float, float]) -> np.ndarray:
    return oblique_affine(zooms=zooms, angles=(0.3, -0.2, 0.45), origin=(-20.0, 10.0, 5.0))


def covering_reference(tmp_path: Path, target_affine: np.ndarray, target_shape: tuple[int, int, int]) -> Path:
    """A 1 mm reference on a differently rotated grid whose field of view contains the target's."""
    affine = oblique_affine(zooms=(1.0, 1.0, 1.0), angles=(-0.1, 0.35, 0.2), origin=(0.0, 0.0, 0.0))
    shape = (56, 56, 56)
    centre = voxel_to_world(target_affine, (np.array(target_shape) - 1) / 2.0)
    affine[:3, 3] += centre - voxel_to_world(affine, (np.array(shape) - 1) / 2.0)
    return write_nifti(tmp_path / "ref.nii.gz", world_field(affine, shape, T1_FIELD).astype(np.float32), affine)


def lr_and_ref(tmp_path: Path, zooms: tuple[float, float, float], shape: tuple[int, int, int]):
    """An int16 LR target (world-linear intensities, oblique grid) and a covering reference; (lr, ref, affine)."""
    affine = lr_affine(zooms)
    data = np.rint(world_field(affine, shape, T2_FIELD)).astype(np.int16)
    return write_nifti(tmp_path / "lr.nii.gz", data, affine), covering_reference(tmp_path, affine, shape), affine


def interior(shape: tuple[int, ...], inplane: tuple[int, int], scale: int, margin_lr: int) -> tuple[slice, ...]:
    """SR voxels at least ``margin_lr`` LR voxels away from the in-plane borders."""
    index = [slice(None)] * 3
    for axis in inplane:
        index[axis] = slice(margin_lr * scale, shape[axis] - margin_lr * scale)
    return tuple(index)


@pytest.mark.parametrize(
    ("zooms", "shape", "inplane"),
    [((4.0, 4.0, 2.0), (10, 8, 4), (0, 1)), ((2.0, 4.0, 4.0), (4, 10, 8), (1, 2))],
    ids=["axial-last", "slices-first"],
)
def test_round_trip_keeps_world_geometry_with_oblique_affines(tmp_path, probe, zooms, shape, inplane):
    lr, ref, affine = lr_and_ref(tmp_path, zooms, shape)
    out, conf = tmp_path / "sr.nii.gz", tmp_path / "conf.nii.gz"
    args = ["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", out, "--confidence", conf]
    assert run_cli([*args, "--batch-size", "3"]) == 0  # a full and a partial batch

    sr_img, conf_img = nib.load(out), nib.load(conf)
    expected_shape = tuple(n * 4 if a in inplane else n for a, n in enumerate(shape))
    expected_affine = sr_affine(affine, (4, 4), axes=inplane)
    assert sr_img.shape == conf_img.shape == expected_shape
    for img in (sr_img, conf_img):
        np.testing.assert_allclose(img.affine, expected_affine, atol=1e-5)
        np.testing.assert_allclose(img.header.get_sform(), expected_affine, atol=1e-5)
        np.testing.assert_allclose(img.header.get_qform(), expected_affine, atol=1e-4)
    # World positions: SR voxel (i', j') is LR voxel coordinate ((i' + 0.5) / 4 - 0.5, ...).
    sr_ijk = np.array([[0.0, 0.0, 0.0], [5.0, 7.0, 1.0], [17.0, 3.0, 2.0]])
    lr_ijk = sr_ijk.copy()
    lr_ijk[:, list(inplane)] = (sr_ijk[:, list(inplane)] + 0.5) / 4 - 0.5
    np.testing.assert_allclose(voxel_to_world(sr_img.affine, sr_ijk), voxel_to_world(affine, lr_ijk), atol=1e-4)

    # Intensities sit at the right world positions: away from the borders bicubic (a = -0.75) reproduces the
    # linear field up to 0.041 x its step per LR voxel on each in-plane axis, plus int16 rounding; a grid shifted
    # like nibabel's rescale_affine (3/8 LR voxel) would miss by ~10 times more.
    assert sr_img.get_data_dtype() == np.int16
    sr = np.asarray(sr_img.dataobj, dtype=np.float64)
    inner = interior(expected_shape, inplane, 4, margin_lr=2)
    steps = np.abs(np.array(T2_FIELD[1:]) @ affine[:3, list(inplane)])  # intensity change per LR voxel
    tolerance = 0.041 * steps.sum() + 1.5
    np.testing.assert_allclose(sr[inner], world_field(expected_affine, expected_shape, T2_FIELD)[inner], atol=tolerance)

    # The reference each slice was paired with, resampled through both oblique affines (the probe's confidence).
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    low, high = sidecar["normalisation"]["reference"]
    confidence = np.asarray(conf_img.dataobj)
    assert conf_img.get_data_dtype() == np.float32
    seen_ref = low + confidence * (high - low)
    unclipped = (confidence > 1e-3) & (confidence < 1 - 1e-3)
    assert unclipped.mean() > 0.9
    np.testing.assert_allclose(
        seen_ref[unclipped], world_field(expected_affine, expected_shape, T1_FIELD)[unclipped], atol=0.05, rtol=1e-4
    )


def test_header_and_sidecar_record_provenance(tmp_path, probe):
    lr, ref, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (10, 8, 4))
    out = tmp_path / "sr.nii.gz"
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", out, "--no-progress"]) == 0
    descrip = nib.load(out).header["descrip"].item().decode()
    assert descrip == f"fasr {__version__} SR ckpt=probe.pt ref=ref.nii.gz"
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["tool"] == "fasr" and sidecar["version"] == __version__
    assert sidecar["checkpoint"]["path"] == str(probe) and sidecar["checkpoint"]["model"]["name"] == "probe"
    assert sidecar["reference"] == str(ref) and sidecar["target"] == str(lr)
    assert sidecar["grid"]["shape"] == [40, 32, 4] and sidecar["grid"]["slice_axis"] == 2
    np.testing.assert_allclose(sidecar["grid"]["voxel_size_mm"], [1.0, 1.0, 2.0], atol=1e-6)
    assert sidecar["reference_coverage"] == 1.0 and sidecar["scores"] is None


def test_dicom_series_input_matches_nifti_input(tmp_path, probe):
    row_cosine, col_cosine = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(0.2), np.sin(0.2)])
    spacing, origin_lps = (4.0, 4.0, 2.0), np.array([-15.0, -12.0, 3.0])
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = row_cosine * spacing[0], col_cosine * spacing[1]
    lps[:3, 2], lps[:3, 3] = np.cross(row_cosine, col_cosine) * spacing[2], origin_lps
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # RAS, like nibabel
    data = np.rint(world_field(affine, (8, 6, 3), T2_FIELD)).astype(np.int16)
    write_dicom_series(tmp_path / "dicom", data, row_cosine, col_cosine, spacing, origin_lps)
    nifti = write_nifti(tmp_path / "lr.nii.gz", data, affine)
    ref = covering_reference(tmp_path, affine, (8, 6, 3))
    for source, out in ((tmp_path / "dicom", "from_dicom.nii.gz"), (nifti, "from_nifti.nii.gz")):
        assert run_cli(["infer", "--lr", source, "--ref", ref, "--checkpoint", probe, "--out", tmp_path / out]) == 0
    dicom_img, nifti_img = nib.load(tmp_path / "from_dicom.nii.gz"), nib.load(tmp_path / "from_nifti.nii.gz")
    assert dicom_img.shape == (32, 24, 3) and dicom_img.get_data_dtype() == np.int16
    np.testing.assert_allclose(dicom_img.affine, sr_affine(affine, (4, 4)), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(dicom_img.dataobj), np.asarray(nifti_img.dataobj))


def test_2d_slice_files(tmp_path, probe):
    rows, cols = np.mgrid[0:12, 0:16]
    lr = (40 + 6 * rows + 5 * cols).astype(np.uint8)  # (H, W) = (12, 16)
    Image.fromarray(lr).save(tmp_path / "lr.png")
    ref = (200 - np.mgrid[0:48, 0:64][0]).astype(np.uint8)  # (H, W) = (48, 64)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    out = tmp_path / "sr.nii.gz"
    assert run_cli(["infer", "--lr", tmp_path / "lr.png", "--ref", tmp_path / "ref.png", "--checkpoint", probe,
                    "--out", out]) == 0
    img = nib.load(out)
    assert img.shape == (64, 48, 1) and img.get_data_dtype() == np.uint8  # (X = columns, Y = rows, 1)
    sr = np.asarray(img.dataobj)[:, :, 0].T  # back to (rows, cols)
    # Bicubic reproduces the linear ramp away from the borders: SR pixel (r', c') is LR ((r' + .5)/4 - .5, ...).
    r, c = (np.mgrid[8:40, 8:56] + 0.5) / 4 - 0.5
    np.testing.assert_allclose(sr[8:40, 8:56], 40 + 6 * r + 5 * c, atol=1.0)
    # Slice files share one field of view: the target's 4x coarser pixels tile the reference's, so the SR grid
    # is the reference's pixel grid (1 mm display geometry).
    np.testing.assert_allclose(img.affine, DISPLAY_AFFINE, atol=1e-9)


def test_2d_target_with_a_volume_reference_is_refused(tmp_path, probe, capsys):
    Image.fromarray(np.arange(192, dtype=np.uint8).reshape(12, 16)).save(tmp_path / "lr.png")
    ref = write_nifti(tmp_path / "ref.nii.gz", np.arange(64 * 48 * 3, dtype=np.float32).reshape(64, 48, 3), np.eye(4))
    assert run_cli(["infer", "--lr", tmp_path / "lr.png", "--ref", ref, "--checkpoint", probe,
                    "--out", tmp_path / "sr.nii.gz"]) == 1
    assert "without scanner geometry" in capsys.readouterr().err


def test_confidence_of_fasrnet_is_on_the_sr_grid(tmp_path):
    checkpoint = write_tiny_fasr(tmp_path / "fasr.pt")
    lr, ref, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (8, 8, 2))
    out, conf = tmp_path / "sr.nii.gz", tmp_path / "conf.nii.gz"
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", checkpoint, "--out", out,
                    "--confidence", conf]) == 0
    sr_img, conf_img = nib.load(out), nib.load(conf)
    assert sr_img.shape == conf_img.shape == (32, 32, 2)
    np.testing.assert_array_equal(conf_img.affine, sr_img.affine)
    confidence = np.asarray(conf_img.dataobj)
    assert confidence.dtype == np.float32 and 0.0 <= confidence.min() and confidence.max() <= 1.0
    assert confidence.std() > 0  # an actual map, not a constant
    assert "conf ckpt=fasr.pt" in conf_img.header["descrip"].item().decode()


def test_simulate_from_hr_scores_and_keeps_the_hr_grid(tmp_path, probe, capsys):
    affine = lr_affine((1.0, 1.0, 2.0))
    hr_data = np.rint(world_field(affine, (18, 16, 3), T2_FIELD)).astype(np.int16)  # 18 is cropped to 16 for x4
    hr = write_nifti(tmp_path / "hr.nii.gz", hr_data, affine)
    ref = covering_reference(tmp_path, affine, (18, 16, 3))
    out = tmp_path / "sr.nii.gz"
    assert run_cli(["infer", "--simulate-from", hr, "--ref", ref, "--checkpoint", probe, "--out", out]) == 0
    img = nib.load(out)
    assert img.shape == (16, 16, 3)
    np.testing.assert_allclose(img.affine, affine, atol=1e-5)  # cropping the far end keeps the origin
    scores = json.loads((tmp_path / "sr.json").read_text())["scores"]
    assert scores["probe"] == pytest.approx(scores["bicubic"], rel=1e-6)  # the probe is bicubic upsampling
    assert scores["bicubic"]["psnr"] > 30 and 0.9 < scores["bicubic"]["ssim"] <= 1.0
    assert "| bicubic |" in capsys.readouterr().out


def test_existing_output_is_not_overwritten_without_force(tmp_path, probe, capsys):
    lr, ref, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (8, 8, 2))
    out = tmp_path / "sr.nii.gz"
    out.write_bytes(b"user data")
    args = ["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", out]
    assert run_cli(args) == 1
    assert "already exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"user data"
    assert run_cli([*args, "--force"]) == 0 and nib.load(out).shape == (32, 32, 2)
    # An input is never an output, even with --force.
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", lr, "--force"]) == 1
    assert "is also an input" in capsys.readouterr().err


def test_reference_not_covering_the_target_is_a_clear_error(tmp_path, probe, capsys):
    lr, _, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (8, 8, 2))
    far = np.eye(4)
    far[:3, 3] = 200.0  # another patient position
    ref = write_nifti(tmp_path / "ref.nii.gz", np.arange(32**3, dtype=np.float32).reshape(32, 32, 32), far)
    out = tmp_path / "sr.nii.gz"
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", out]) == 1
    err = capsys.readouterr().err
    assert f"'{ref}' covers only 0% of the field of view of '{lr}'" in err and "\n" not in err.strip()
    assert not out.exists()


def test_wrong_checkpoints_are_clear_errors(tmp_path, probe, capsys):
    lr, ref, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (8, 8, 2))
    garbage = tmp_path / "notes.pt"
    garbage.write_text("not a checkpoint")
    base = ["infer", "--lr", lr, "--ref", ref, "--out", tmp_path / "sr.nii.gz", "--checkpoint"]
    cases = [
        ([garbage], "is corrupt or not a fasr checkpoint"),
        (["brats-x8"], "neither a file nor a shipped model; pass a .pt file or one of: brats-x4, brats-x2"),
        ([probe, "--scale", "2"], "is trained for x4, not x2"),
        ([tmp_path], "is a folder"),
    ]
    for extra, message in cases:
        assert run_cli([*base, *extra]) == 1
        assert message in capsys.readouterr().err
    assert not (tmp_path / "sr.nii.gz").exists()


def test_pretrained_registry(tmp_path, probe):
    assert resolve_checkpoint(probe) == probe
    assert [m.name for m in list_pretrained()] == ["brats-x4", "brats-x2", "brats-thick"]
    assert {m.name: m.scale for m in list_pretrained()} == {"brats-x4": 4, "brats-x2": 2, "brats-thick": 1}
    for model in list_pretrained():
        assert model.path.name == f"{model.name}.pt"
        if model.available:
            assert resolve_checkpoint(model.name) == model.path
        else:
            with pytest.raises(FasrError, match=f"shipped model '{model.name}' is not installed"):
                resolve_checkpoint(model.name)
    with pytest.raises(FasrError, match="one of: brats-x4, brats-x2"):
        resolve_checkpoint("nonexistent")
    assert set(PRETRAINED) == {"brats-x4", "brats-x2", "brats-thick"}


def test_normalisation_puts_the_background_of_a_ringing_lr_at_minus_one():
    rows, cols = np.mgrid[0:64, 0:64]
    disc = (rows - 32) ** 2 + (cols - 32) ** 2 < 24**2
    hr = np.repeat(np.where(disc, 400 + 300 * (np.sin(cols / 2) > 0.5), 0)[None], 4, 0).astype(np.float32)
    lr = Bicubic().down(torch.from_numpy(hr)[:, None], 4)[:, 0].numpy()  # (4, 16, 16), negative shell
    assert np.percentile(lr, 0.5) < -10  # the undershoot would become the background level if kept
    stats = robust_stats(lr, 0.5, 99.5)
    assert stats.low == 0.0 and stats.normalize(np.zeros(1))[0] == -1.0
    assert stats.high == pytest.approx(robust_stats(hr).high, rel=0.1)


def test_mat_slices_holding_several_variables_take_lr_and_ref_keys(tmp_path, probe, capsys):
    """fastMRI-style .mat slices with several arrays: --lr-key / --ref-key pick the variables."""
    import scipy.io

    rows, cols = np.mgrid[0:48, 0:40]
    hr = (200 + 60 * np.sin(rows / 5.0) * np.cos(cols / 7.0)).astype(np.float32)
    lr = hr.reshape(12, 4, 10, 4).mean(axis=(1, 3))
    scipy.io.savemat(tmp_path / "lr.mat", {"image": lr, "mask": np.ones((3, 3))})
    scipy.io.savemat(tmp_path / "ref.mat", {"image": 500 - hr, "kspace": np.ones((3, 3))})
    out = tmp_path / "sr.nii.gz"
    argv = ["infer", "--lr", tmp_path / "lr.mat", "--ref", tmp_path / "ref.mat", "--checkpoint", probe, "--out", out,
            "--no-progress"]
    assert run_cli(argv) == 1 and "--lr-key" in capsys.readouterr().err
    assert run_cli([*argv, "--lr-key", "image", "--ref-key", "image"]) == 0
    assert nib.load(out).shape[:2] == (40, 48)


def test_listed_scores_are_the_model_cards():
    """The scores `fasr models` prints are the ones the model card's evaluation JSON holds."""
    root = Path(__file__).resolve().parents[1]
    for model in list_pretrained():
        card = json.loads((root / model.card).read_text())
        assert round(card["fasr"]["psnr"], 2) == model.test_psnr, model.name
        assert round(card["bicubic"]["psnr"], 2) == model.test_bicubic_psnr, model.name
