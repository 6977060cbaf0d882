"""``fasr demo`` on the bundled subject (with a probe checkpoint), the bundled files, and how they were made."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from fasr.data.geometry import voxel_to_world
from fasr.inference.demo import DEMO_DIR, OUTPUTS
from fasr.inference.demo_subject import brain_box, crop_subject
from fasr.pretrained import PRETRAINED
from test_infer_support import run_cli, write_checkpoint, write_nifti

BRATS = Path(__file__).resolve().parents[1].parent / "shared/data/brats"


def test_demo_writes_every_output(tmp_path, capsys):
    probe = write_checkpoint(tmp_path / "probe.pt")  # SR = bicubic, so FASR's row must equal bicubic's
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", out, "--checkpoint", probe, "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bicubic", "fasr", "seconds"}
    assert set(metrics["bicubic"]) == set(metrics["fasr"]) == {"psnr", "ssim"}
    assert metrics["fasr"] == pytest.approx(metrics["bicubic"], rel=1e-6)
    assert 20 < metrics["bicubic"]["psnr"] < 40 and 0.5 < metrics["bicubic"]["ssim"] < 1
    assert 0 < metrics["seconds"] < 120
    printed = capsys.readouterr().out
    assert "| bicubic |" in printed and "| fasr |" in printed

    t2 = nib.load(DEMO_DIR / "t2.nii.gz")
    sr, confidence = nib.load(out / "sr.nii.gz"), nib.load(out / "confidence.nii.gz")
    assert sr.shape == confidence.shape == t2.shape  # the HR grid of the bundled T2
    np.testing.assert_allclose(sr.affine, t2.affine, atol=1e-6)
    np.testing.assert_allclose(confidence.affine, t2.affine, atol=1e-6)
    assert sr.get_data_dtype() == np.int16 and confidence.get_data_dtype() == np.float32
    with Image.open(out / "figure.png") as figure:
        assert figure.format == "PNG" and figure.width > 2 * figure.height

    # A second run refuses to overwrite; --force replaces.
    assert run_cli(["demo", "--out", out, "--checkpoint", probe, "--no-progress"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert run_cli(["demo", "--out", out, "--checkpoint", probe, "--no-progress", "--force"]) == 0


@pytest.mark.skipif(PRETRAINED["brats-x4"].available, reason="the shipped model is installed")
def test_demo_without_shipped_model_says_what_to_do(tmp_path, capsys):
    assert run_cli(["demo", "--out", tmp_path / "demo"]) == 2
    err = capsys.readouterr().err
    assert "shipped model 'brats-x4' is not installed" in err and "--checkpoint" in err
    assert not (tmp_path / "demo").exists()


def test_bundled_subject_is_small_int16_and_attributed():
    t1, t2 = nib.load(DEMO_DIR / "t1.nii.gz"), nib.load(DEMO_DIR / "t2.nii.gz")
    assert t1.shape == t2.shape and t1.shape[0] % 16 == 0 and t1.shape[1] % 16 == 0 and 8 <= t1.shape[2] <= 12
    assert t1.get_data_dtype() == t2.get_data_dtype() == np.int16
    np.testing.assert_array_equal(t1.affine, t2.affine)
    assert sum((DEMO_DIR / f).stat().st_size for f in ("t1.nii.gz", "t2.nii.gz")) < 1_000_000
    attribution = (DEMO_DIR / "ATTRIBUTION.md").read_text()
    citations = ("10.7937/K9/TCIA.2016.L4LTD3TK", "10.1007/s10278-013-9622-7")  # TCGA-LGG, TCIA
    for needed in ("TCGA-DU-7294", "TCGA-LGG", "CC BY 3.0", *citations):
        assert needed in attribution


@pytest.mark.skipif(not (BRATS / "TCGA-DU-7294").is_dir(), reason="shared BraTS data not available")
def test_bundled_subject_is_an_exact_crop_of_the_source():
    for contrast in ("t1", "t2"):
        crop = nib.load(DEMO_DIR / f"{contrast}.nii.gz")
        source = nib.load(BRATS / "TCGA-DU-7294" / f"{contrast}.nii.gz")
        corner = np.linalg.solve(source.affine, crop.affine[:, 3])[:3]  # the crop's voxel 0 in the source
        start = np.rint(corner).astype(int)
        np.testing.assert_allclose(corner, start, atol=1e-6)
        x, y, z = (slice(s, s + n) for s, n in zip(start, crop.shape))
        np.testing.assert_array_equal(np.asarray(crop.dataobj), np.asarray(source.dataobj)[x, y, z])


def test_crop_subject_keeps_world_positions_and_type(tmp_path):
    affine = np.array([[-1.0, 0, 0, 90], [0, -1.0, 0, 120], [0, 0, 2.0, -30], [0, 0, 0, 1]])
    data = np.zeros((60, 50, 12), np.int16)
    data[17:41, 9:30, :] = np.arange(24 * 21 * 12, dtype=np.int16).reshape(24, 21, 12)  # the "brain"
    for contrast in ("t1", "t2"):
        write_nifti(tmp_path / f"{contrast}.nii.gz", data, affine)
    written = crop_subject(tmp_path, tmp_path / "crop", ("t1", "t2"), first_slice=3, n_slices=4, multiple=8, margin=2)
    crop = nib.load(written[1])
    assert crop.shape == (32, 32, 4) and crop.get_data_dtype() == np.int16
    # Every cropped voxel keeps its world position: find voxel (0, 0, 0) of the crop in the source.
    start = np.rint(np.linalg.solve(affine, crop.affine[:, 3])[:3]).astype(int)
    np.testing.assert_allclose(voxel_to_world(crop.affine, [0, 0, 0]), voxel_to_world(affine, start))
    x, y, z = (slice(s, s + n) for s, n in zip(start, crop.shape))
    np.testing.assert_array_equal(np.asarray(crop.dataobj), data[x, y, z])
    assert np.asarray(crop.dataobj).astype(bool).sum() == data[:, :, 3:7].astype(bool).sum()  # whole brain kept


def test_brain_box_is_a_centred_multiple_within_bounds():
    mask = np.zeros((40, 30, 2), bool)
    mask[2:9, 20:29, 0] = True
    xs, ys = brain_box(mask, multiple=8, margin=1)
    assert (xs.start, xs.stop) == (0, 16)  # 1..10 grown to 16 and shifted inside the volume
    assert (ys.start, ys.stop) == (14, 30)  # 19..30 grown to 16, kept inside
