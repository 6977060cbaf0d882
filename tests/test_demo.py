"""``fasr demo`` (with a probe checkpoint, and once with the shipped model), the demo subject made from nilearn's
ICBM152 template, and the rule that the package ships no scan volumes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from fasr.inference import demo_subject
from fasr.inference.demo import OUTPUTS
from fasr.inference.demo_subject import TISSUES_3T, Tissue, brain_box, demo_pair, simulate_t2w, spin_echo
from fasr.pretrained import PRETRAINED
from test_infer_support import run_cli, write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# Volume formats that may not be in the package: NIfTI, DICOM, HDF5, MATLAB, NumPy, MGH/FreeSurfer, NRRD, MHA.
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".dcm", ".ima", ".h5", ".hdf5", ".mat", ".npy", ".npz", ".mgz", ".mgh",
                   ".nrrd", ".mha", ".mhd")


@pytest.fixture(scope="module")
def pair() -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    return demo_pair()


def test_demo_writes_every_output(tmp_path, capsys, pair):
    probe = write_checkpoint(tmp_path / "probe.pt")  # SR = bicubic, so FASR's row must equal bicubic's
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", out, "--checkpoint", probe, "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"bicubic", "fasr", "seconds"}
    assert set(metrics["bicubic"]) == set(metrics["fasr"]) == {"psnr", "ssim"}
    assert metrics["fasr"] == pytest.approx(metrics["bicubic"], rel=1e-6)
    assert 15 < metrics["bicubic"]["psnr"] < 40 and 0.5 < metrics["bicubic"]["ssim"] < 1
    assert metrics["seconds"] > 0
    printed = capsys.readouterr().out
    assert "| bicubic |" in printed and "| fasr |" in printed and "simulated" in printed

    target = pair[0]
    sr, confidence = nib.load(out / "sr.nii.gz"), nib.load(out / "confidence.nii.gz")
    assert sr.shape == confidence.shape == target.shape  # the HR grid of the simulated T2w
    np.testing.assert_allclose(sr.affine, target.affine, atol=1e-6)
    np.testing.assert_allclose(confidence.affine, target.affine, atol=1e-6)
    assert sr.get_data_dtype() == np.float32 and confidence.get_data_dtype() == np.float32
    sidecar = json.loads((out / "sr.json").read_text())
    assert "ICBM152" in sidecar["demo_subject"] and sidecar["scores"]["bicubic"] == metrics["bicubic"]
    with Image.open(out / "figure.png") as figure:
        assert figure.format == "PNG" and figure.width > 2 * figure.height

    # A second run refuses to overwrite; --force replaces.
    assert run_cli(["demo", "--out", out, "--checkpoint", probe, "--no-progress"]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert run_cli(["demo", "--out", out, "--checkpoint", probe, "--no-progress", "--force"]) == 0


@pytest.mark.skipif(not PRETRAINED["brats-x4"].available, reason="the shipped model is not installed")
def test_demo_with_the_shipped_model_beats_bicubic(tmp_path):
    out = tmp_path / "demo"
    assert run_cli(["demo", "--out", out, "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fasr"]["psnr"] > metrics["bicubic"]["psnr"] and metrics["fasr"]["ssim"] > metrics["bicubic"]["ssim"]


def test_demo_without_shipped_model_says_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("fasr.pretrained.PRETRAINED_DIR", tmp_path / "registry")  # a registry without weights
    assert run_cli(["demo", "--out", tmp_path / "demo"]) == 1
    err = capsys.readouterr().err
    assert "shipped model 'brats-x4' is not installed" in err and "--checkpoint" in err
    assert not (tmp_path / "demo").exists()


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_package_tree_ships_no_scan_volumes():
    files = subprocess.run(["git", "ls-files", "fasr"], cwd=ROOT, capture_output=True, text=True, check=True)
    tracked = [ROOT / name for name in files.stdout.splitlines()]
    assert tracked, "git ls-files found nothing under fasr/"
    volumes = [p for p in tracked if p.name.lower().endswith(VOLUME_SUFFIXES)]
    # DICOM files often have no suffix: the "DICM" magic at byte 128 gives them away.
    dicoms = [p for p in tracked if p.is_file() and _has_dicom_magic(p)]
    assert volumes == [] and dicoms == []


def _has_dicom_magic(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(132)[128:132] == b"DICM"


def test_spin_echo_signal_equation():
    tissue = Tissue(pd=0.8, t1_ms=1000.0, t2_ms=100.0)
    assert spin_echo(tissue, 1000.0, 100.0) == pytest.approx(0.8 * (1 - np.exp(-1)) * np.exp(-1))
    assert spin_echo(tissue, 1e9, 0.0) == pytest.approx(0.8)  # full recovery, no decay: proton density


def test_simulated_t2w_is_bright_in_csf_and_mixes_linearly():
    gm = np.array([1.0, 0.0, 0.0, 0.5, 0.3])
    wm = np.array([0.0, 1.0, 0.0, 0.5, 0.3])
    brain = np.array([True, True, True, True, False])
    signal = simulate_t2w(gm, wm, brain)
    pure = {name: spin_echo(TISSUES_3T[name], demo_subject.TR_MS, demo_subject.TE_MS) for name in TISSUES_3T}
    np.testing.assert_allclose(signal[:3], [pure["gm"], pure["wm"], pure["csf"]])  # third voxel: CSF = 1 - 0 - 0
    assert pure["csf"] > pure["gm"] > pure["wm"] > 0  # T2-weighted contrast
    assert signal[3] == pytest.approx((pure["gm"] + pure["wm"]) / 2) and signal[4] == 0.0  # outside the brain


def test_demo_pair_is_an_exact_crop_of_the_template(pair):
    target, reference = pair
    assert target.shape == reference.shape and target.shape[2] == demo_subject.N_SLICES
    assert target.shape[0] % 16 == 0 and target.shape[1] % 16 == 0
    assert target.get_data_dtype() == np.float32 and reference.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(target.affine, reference.affine)
    template = nib.load(demo_subject.template_dir() / demo_subject.TEMPLATE["t1"])
    corner = np.linalg.solve(template.affine, reference.affine[:, 3])[:3]  # the crop's voxel 0 in the template
    start = np.rint(corner).astype(int)
    np.testing.assert_allclose(corner, start, atol=1e-9)
    assert start[2] == demo_subject.FIRST_SLICE
    x, y, z = (slice(s, s + n) for s, n in zip(start, reference.shape))
    np.testing.assert_array_equal(np.asarray(reference.dataobj), np.asarray(template.dataobj)[x, y, z])
    t2w = np.asarray(target.dataobj)
    assert t2w[np.asarray(reference.dataobj) == 0].max() == 0 and t2w.max() > 0  # nothing outside the brain


def test_brain_box_is_a_centred_multiple_within_bounds():
    mask = np.zeros((40, 30, 2), bool)
    mask[2:9, 20:29, 0] = True
    xs, ys = brain_box(mask, multiple=8, margin=1)
    assert (xs.start, xs.stop) == (0, 16)  # 1..10 grown to 16 and shifted inside the volume
    assert (ys.start, ys.stop) == (14, 30)  # 19..30 grown to 16, kept inside
