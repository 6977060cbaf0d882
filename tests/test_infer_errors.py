"""One test per row of the issue "Inputs checked before any work": impossible jobs refused up front (before the
model is built), wrong references flagged, every user error one line naming the file or flag and the fix."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

import fasr.checkpoint
from conftest import write_nifti
from fasr.errors import FasrError
from fasr.scoring.metrics import NMSE
from test_infer_support import run_cli, write_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt")


@pytest.fixture
def no_model(monkeypatch):
    """Any attempt to build a model fails the test (the refusals must come before it)."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(fasr.checkpoint, "build_model", refuse)


def volume(tmp_path: Path, name: str, zooms: tuple[float, float, float], shape: tuple[int, int, int], seed: int = 0):
    """A smooth random int16 'scan' with the given voxel sizes (axis-aligned, origin at the field-of-view corner)."""
    rng = np.random.default_rng(seed)
    data = 500 + 100 * ndimage.gaussian_filter(rng.normal(size=shape), 2.0) / 0.05
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = (np.array(zooms) - 1) / 2  # every grid spans [-0.5, extent - 0.5] mm
    return write_nifti(tmp_path / name, np.clip(data, 1, None).astype(np.int16), affine)


def refused(argv: list, capsys, *parts: str, seconds: float | None = None, status: int = 1) -> str:
    """``fasr <argv>`` exits with ``status`` (1: the job failed on its inputs; 2: a usage error) and one error
    line containing every part (within ``seconds``)."""
    start = time.perf_counter()
    assert run_cli(argv) == status
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err.strip()
    assert err.startswith("fasr: error: ") and "\n" not in err and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    if seconds is not None:
        assert elapsed < seconds
    return err


def infer(lr, ref, checkpoint, out, *extra) -> list:
    return ["infer", "--lr", lr, "--ref", ref, "--checkpoint", checkpoint, "--out", out, "--no-progress", *extra]


def test_thick_slice_lr_is_refused_before_the_model(tmp_path, probe, capsys, no_model):
    lr = volume(tmp_path, "lr.nii.gz", (1.0, 1.0, 4.0), (48, 40, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 32))
    refused(
        infer(lr, ref, probe, tmp_path / "sr.nii.gz"), capsys,
        "thick-slice", "voxel axis 2 (inferior-superior)", "through-plane super-resolution is not what this model does",
        seconds=5,
    )
    assert not (tmp_path / "sr.nii.gz").exists()


def test_same_file_as_lr_and_ref_is_refused(tmp_path, probe, capsys, no_model):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    refused(infer(lr, lr, probe, tmp_path / "sr.nii.gz"), capsys, "--lr and --ref are the same file", seconds=5)


def test_swapped_inputs_are_refused_before_the_model(tmp_path, probe, capsys, no_model):
    t1 = volume(tmp_path, "t1.nii.gz", (1.0, 1.0, 1.0), (240, 240, 24))  # what the swap would refine to 960x960
    t2 = volume(tmp_path, "t2.nii.gz", (4.0, 4.0, 1.0), (60, 60, 24))
    refused(infer(t1, t2, probe, tmp_path / "sr.nii.gz"), capsys, "look swapped", f"--lr '{t1}'", seconds=5)


def qa_phantom(tmp_path: Path, name: str, seed: int, shift_mm: float = 0.0) -> tuple[Path, Path]:
    """A patient: a x4 LR 'T2' and a 1 mm 'T1' of one random tissue field (no structure shared between seeds)."""
    rng = np.random.default_rng(seed)
    tissue = ndimage.gaussian_filter(rng.normal(size=(96, 96, 16)), 3.0)
    tissue /= tissue.std()
    t2, t1 = 600 + 150 * tissue, 700 - 60 * tissue - 20 * tissue**2
    hr = np.eye(4)
    ref_affine = hr.copy()
    ref_affine[0, 3] = shift_mm
    lr_affine = np.diag([4.0, 4.0, 1.0, 1.0])
    lr_affine[:2, 3] = 1.5
    lr = t2.reshape(24, 4, 24, 4, 16).mean(axis=(1, 3))  # (24, 24, 16): 4x4 mm in-plane
    return (
        write_nifti(tmp_path / f"{name}_t2.nii.gz", lr.astype(np.float32), lr_affine),
        write_nifti(tmp_path / f"{name}_t1.nii.gz", t1.astype(np.float32), ref_affine),
    )


def test_reference_of_another_patient_is_flagged(tmp_path, probe, capsys):
    lr, own = qa_phantom(tmp_path, "a", seed=0)
    _, other = qa_phantom(tmp_path, "b", seed=1)
    _, moved = qa_phantom(tmp_path, "c", seed=0, shift_mm=5.0)
    assert run_cli(infer(lr, own, probe, tmp_path / "own.nii.gz")) == 0
    assert "warning: reference" not in capsys.readouterr().err
    own_qa = json.loads((tmp_path / "own.json").read_text())["reference_qa"]
    assert own_qa["flagged"] is False and own_qa["alignment"] > own_qa["threshold"]
    assert own_qa["mean_confidence"] is not None and 0 <= own_qa["mean_confidence"] <= 1
    for ref, name in ((other, "other"), (moved, "moved")):  # QA on the headers' placement
        assert run_cli(infer(lr, ref, probe, tmp_path / f"{name}.nii.gz", "--register", "none")) == 0
        err = capsys.readouterr().err
        assert f"warning: reference '{ref}' does not look like a registered scan" in err
        assert json.loads((tmp_path / f"{name}.json").read_text())["reference_qa"]["flagged"] is True
        refused(infer(lr, ref, probe, tmp_path / f"{name}_strict.nii.gz", "--strict", "--register", "none"), capsys,
                "drop --strict")
        assert not (tmp_path / f"{name}_strict.nii.gz").exists()


def test_registration_brings_a_moved_reference_back_before_qa(tmp_path, probe, capsys):
    """The same patient's reference 5 mm off: registered by default (the sidecar holds the fitted shift), it passes
    QA; with --register none it is flagged (previous test)."""
    lr, _ = qa_phantom(tmp_path, "a", seed=0)
    _, moved = qa_phantom(tmp_path, "c", seed=0, shift_mm=5.0)
    assert run_cli(infer(lr, moved, probe, tmp_path / "sr.nii.gz")) == 0
    assert "warning" not in capsys.readouterr().err
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["reference_qa"]["flagged"] is False
    registration = sidecar["registration"]
    assert registration["translation_mm"][0] == pytest.approx(5.0, abs=0.3)  # LR point -> reference point
    assert abs(registration["rotation_deg"]) < 0.3


@pytest.mark.parametrize("where", ["/proc/fasr-test/sr.nii.gz", "/proc/sr.nii.gz"], ids=["cannot-make", "read-only"])
def test_unwritable_output_is_refused_before_the_model(tmp_path, probe, capsys, no_model, where):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    refused(infer(lr, ref, probe, where), capsys, f"--out '{where}' cannot be written", "no file can be created in",
            seconds=5)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused(tmp_path, probe, capsys, no_model):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    refused(infer(lr, ref, probe, locked / "sr.nii.gz"), capsys, "cannot be written", seconds=5)


@pytest.mark.parametrize("lr_mm", [5.5, 3.0], ids=["x5.5", "x3"])  # 37.5 % and 25 % off a x4 model: warned
def test_spacing_ratio_warning_comes_before_the_model(tmp_path, probe, capsys, monkeypatch, lr_mm):
    def stop(*_args, **_kwargs):
        raise FasrError("stopped at the model")

    monkeypatch.setattr(fasr.checkpoint, "build_model", stop)
    lr = volume(tmp_path, "lr.nii.gz", (lr_mm, lr_mm, 1.0), (16, 16, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (88, 88, 8))
    assert run_cli(infer(lr, ref, probe, tmp_path / "sr.nii.gz")) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("plan: x4 16x16x8") and "estimated" in captured.out
    warning, error = captured.err.strip().splitlines()
    assert f"{lr_mm:g} x {lr_mm:g} times the reference spacing, not 4" in warning
    assert error.endswith("stopped at the model")


def test_random_bytes_checkpoint_message_is_not_cut(tmp_path, capsys):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    garbage = tmp_path / "random.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    err = refused(infer(lr, ref, garbage, tmp_path / "sr.nii.gz"), capsys, f"checkpoint '{garbage}' is corrupt")
    assert "weights_only" not in err and err.endswith("use another file, e.g. last.pt of the run")


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
def test_unavailable_device_is_not_blamed_on_the_checkpoint(tmp_path, probe, capsys, no_model):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    argv = infer(lr, ref, probe, tmp_path / "sr.nii.gz", "--device", "mps")
    err = refused(argv, capsys, "--device mps", "not available")
    assert "corrupt" not in err
    with pytest.raises(FasrError, match="not available"):
        fasr.checkpoint.load_checkpoint(probe, map_location="mps")


def test_lr_with_only_negative_values_names_the_file(tmp_path, probe, capsys):
    affine = np.diag([4.0, 4.0, 1.0, 1.0])
    lr = write_nifti(tmp_path / "neg.nii.gz", -1 - np.random.default_rng(0).random((12, 10, 8), np.float32), affine)
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    refused(infer(lr, ref, probe, tmp_path / "sr.nii.gz"), capsys, f"'{lr}' has no content above its background")


def test_eval_outside_the_repository_says_data_sets_the_folder(tmp_path, probe, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(["eval", "--checkpoint", probe], capsys, "dataset folder", "not found", "pass --data ROOT")
    refused(["eval", "--checkpoint", probe, "--data", "nowhere"], capsys, "'nowhere' (--data", "pass --data ROOT")


def test_nmse_of_an_empty_slice_is_nan_without_a_warning():
    target, pred = np.zeros((8, 8)), np.ones((8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(NMSE()(pred, target, data_range=1.0))
        assert NMSE()(pred, np.full((8, 8), 2.0), data_range=1.0) == pytest.approx(0.25)


def test_sidecar_paths_are_absolute_and_unset_outputs_null(tmp_path, probe, monkeypatch):
    volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8), seed=0)
    monkeypatch.chdir(tmp_path)
    assert run_cli(infer("lr.nii.gz", "ref.nii.gz", probe, "sr.nii.gz")) == 0
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["target"] == str(tmp_path / "lr.nii.gz") and sidecar["reference"] == str(tmp_path / "ref.nii.gz")
    assert sidecar["outputs"]["sr"] == str(tmp_path / "sr.nii.gz") and sidecar["outputs"]["confidence"] is None
    assert Path(sidecar["checkpoint"]["path"]).is_absolute()
    assert set(sidecar["reference_qa"]) >= {"nmi", "alignment", "threshold", "flagged", "mean_confidence"}


def test_pyproject_license_is_spdx_without_setuptools_warnings():
    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dist = apply_configuration(Distribution(), REPO / "pyproject.toml")
    assert dist.metadata.license_expression == "Apache-2.0"
    assert not [w for w in caught if "license" in str(w.message).lower()]
    assert sys.version_info >= (3, 10)


def test_every_shipped_weights_file_is_package_data():
    """A wheel (not only an editable install) carries every file of fasr/pretrained (it once left out the .pth)."""
    from fnmatch import fnmatch

    from setuptools.config.pyprojecttoml import apply_configuration
    from setuptools.dist import Distribution

    globs = apply_configuration(Distribution(), REPO / "pyproject.toml").package_data["fasr"]
    folder = REPO / "fasr" / "pretrained"
    shipped = [p.relative_to(REPO / "fasr").as_posix() for p in folder.iterdir() if p.is_file() and p.suffix != ".tmp"]
    assert [f for f in shipped if f.endswith((".pt", ".pth", ".json"))], "nothing shipped"
    assert [f for f in shipped if not f.endswith(".py") and not any(fnmatch(f, g) for g in globs)] == []


def test_every_shipped_weights_file_is_committed():
    """A clone has what the registries name (an untracked file would pass every other test on this machine)."""
    from fasr.models.backbones import SHIPPED_WEIGHTS
    from fasr.pretrained import PRETRAINED

    listed = subprocess.run(["git", "ls-files", "fasr/pretrained"], cwd=REPO, capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    files = [*SHIPPED_WEIGHTS["mri"].values(), *(m.path for m in PRETRAINED.values())]
    assert [str(f) for f in files if f.relative_to(REPO).as_posix() not in listed.stdout.split()] == []


def test_symlink_loop_is_one_line(tmp_path, probe, capsys):
    (tmp_path / "a.nii.gz").symlink_to(tmp_path / "b.nii.gz")
    (tmp_path / "b.nii.gz").symlink_to(tmp_path / "a.nii.gz")
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 32))
    refused(infer(tmp_path / "a.nii.gz", ref, probe, tmp_path / "sr.nii.gz"), capsys, "symbolic link that loops")


def test_the_printed_estimate_sees_the_search_window(tmp_path, probe):
    """The plan that is printed is the plan that runs: ``--set model.search_window`` reaches the cost estimate."""
    from fasr.inference.plan import checkpoint_model, plan_inference

    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (160, 160, 4))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (640, 640, 4))
    window, whole_image = (checkpoint_model(probe, [f"model.search_window={w}"]).search_window for w in (4, 0))
    assert (window, whole_image) == (4, 0)
    windowed = plan_inference(lr, ref, 4, search_window=window)
    whole = plan_inference(lr, ref, 4, search_window=whole_image)
    assert whole.seconds > windowed.seconds  # global matching is quadratic in the pixels


@pytest.mark.parametrize("slope", [1 / 30000, 0.5])
def test_scaled_integers_are_read_and_written_with_their_scale(tmp_path, probe, slope):
    """An int16 NIfTI with scl_slope: its scaled values are what is super-resolved, and the output is float32
    (an unscaled int16 could not hold values in [0, 1] or half units)."""
    lr_path = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    image = nib.load(lr_path)
    raw = np.asanyarray(image.dataobj).astype(np.int16)
    scaled = nib.Nifti1Image(raw, image.affine)
    scaled.header.set_slope_inter(slope, 0.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    assert run_cli(infer(tmp_path / "scaled.nii.gz", ref, probe, tmp_path / "sr.nii.gz", "--register", "none")) == 0
    out = nib.load(tmp_path / "sr.nii.gz")
    sr = np.asanyarray(out.dataobj)
    assert out.header.get_data_dtype() == np.float32
    assert len(np.unique(sr)) > 100 and sr.max() == pytest.approx(raw.max() * slope, rel=0.5)


def test_magnitude_inputs_give_non_negative_outputs(tmp_path, probe):
    """A non-negative LR (a magnitude image) with sharp edges: the bicubic part of the output undershoots below 0
    there; the written output is clipped at 0 and the sidecar says how much; a signed input at its own background
    level."""
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    affine = nib.load(ref).affine.copy()
    affine[:2, :2] *= 4.0
    affine[:2, 3] = 1.5
    block = np.zeros((12, 10, 8), np.int16)
    block[3:9, 3:7] = 500
    for name, data in (("magnitude", block), ("signed", block - 100)):
        lr = write_nifti(tmp_path / f"{name}.nii.gz", data, affine)
        out = tmp_path / f"{name}_sr.nii.gz"
        assert run_cli(infer(lr, ref, probe, out, "--register", "none")) == 0
        sidecar = json.loads(out.with_name(f"{name}_sr.json").read_text())
        sr = np.asanyarray(nib.load(out).dataobj)
        floor = 0.0 if name == "magnitude" else -100.0  # a signed image's floor is its own background level
        assert sidecar["clipped"]["floor"] == floor and sidecar["clipped"]["voxels"] > 0
        assert sr.min() == floor and sidecar["clipped"]["min_before"] < floor


def test_truncated_checkpoint_message_is_whole(tmp_path, probe, capsys):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    cut = tmp_path / "cut.pt"
    cut.write_bytes(probe.read_bytes()[:2000])
    err = refused(infer(lr, ref, cut, tmp_path / "sr.nii.gz"), capsys, "truncated or not a zip archive")
    assert err.endswith("use another file, e.g. last.pt of the run")


def test_a_set_that_inference_ignores_is_refused(tmp_path, probe, capsys, no_model):
    lr = volume(tmp_path, "lr.nii.gz", (4.0, 4.0, 1.0), (12, 10, 8))
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    refused(infer(lr, ref, probe, tmp_path / "sr.nii.gz", "--set", "data.slice_key=kspace"), capsys,
            "--set data.slice_key has no effect on inference", "model.search_window", status=2)


def test_a_z_scored_scan_is_processed_as_the_scan_it_came_from(tmp_path, probe):
    """Standardised input (brain mean 0, std 1, background at its z-value, many tissue voxels < 0): the output is
    the raw scan's output standardised the same way, not a clipped one."""
    ref = volume(tmp_path, "ref.nii.gz", (1.0, 1.0, 1.0), (48, 40, 8))
    affine = nib.load(ref).affine.copy()
    affine[:2, :2] *= 4.0
    affine[:2, 3] = 1.5
    raw = np.zeros((12, 10, 8), np.float32)
    raw[2:10, 2:8] = 300 + 80 * np.random.default_rng(1).standard_normal((8, 6, 8))
    brain = raw > 0
    mu, sigma = raw[brain].mean(), raw[brain].std()
    outputs = {}
    for name, data in (("raw", raw), ("z", (raw - mu) / sigma)):
        out = tmp_path / f"{name}_sr.nii.gz"
        assert run_cli(infer(write_nifti(tmp_path / f"{name}.nii.gz", data.astype(np.float32), affine), ref, probe,
                             out, "--register", "none")) == 0
        outputs[name] = np.asanyarray(nib.load(out).dataobj)
    assert (outputs["z"] < 0).mean() > 0.3  # signed output, not clipped to the 'magnitude' floor
    np.testing.assert_allclose(outputs["z"], (outputs["raw"] - mu) / sigma, atol=1e-3)  # floors included
