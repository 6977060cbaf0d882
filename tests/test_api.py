"""The Python API: ``fasr.super_resolve`` gives exactly what ``fasr infer`` writes, from paths, nibabel images or
numpy arrays (with an affine, or a bare 2-D slice), and ``fasr.load_model`` loads a model once."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

import fasr
from fasr.errors import FasrError
from test_infer import lr_and_ref
from test_infer_support import run_cli, write_checkpoint


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt")


def assert_same_image(img: nib.Nifti1Image, path, ref_label: str = "ref.nii.gz") -> None:
    """Bit for bit: header bytes (qform, sform, data type, descrip naming ``ref_label``) and voxel bytes."""
    written = nib.load(path)
    header = written.header.copy()
    descrip = header["descrip"].item().decode()
    assert descrip.endswith(" ref=ref.nii.gz")
    header["descrip"] = descrip.replace("ref.nii.gz", ref_label).encode()
    assert img.header.binaryblock == header.binaryblock
    data, expected = np.asanyarray(img.dataobj), np.asanyarray(written.dataobj)
    assert data.dtype == expected.dtype and data.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("zooms", "shape"), [((4.0, 4.0, 2.0), (10, 8, 4)), ((2.0, 4.0, 4.0), (4, 10, 8))], ids=["axial", "slices-first"]
)
def test_super_resolve_equals_fasr_infer_bit_for_bit(tmp_path, probe, zooms, shape):
    lr, ref, affine = lr_and_ref(tmp_path, zooms, shape)  # oblique int16 LR, differently rotated float reference
    out, conf = tmp_path / "infer.nii.gz", tmp_path / "infer_conf.nii.gz"
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", out,
                    "--confidence", conf, "--no-progress"]) == 0

    lr_img, ref_img = nib.load(lr), nib.load(ref)
    model = fasr.load_model(probe, device="cpu")
    sources = [  # (inputs, affines, the reference's name in the header's descrip)
        ((lr, ref), {}, "ref.nii.gz"),
        ((lr_img, ref_img), {}, "ref.nii.gz"),
        ((np.asanyarray(lr_img.dataobj), ref_img.get_fdata(dtype=np.float32)),
         {"lr_affine": lr_img.affine, "ref_affine": ref_img.affine}, "<ref array>"),
    ]
    for inputs, affines, label in sources:
        result = fasr.super_resolve(*inputs, model=model, **affines)
        assert_same_image(result.sr, out, label)
        assert_same_image(result.confidence, conf, label)
        assert result.metadata["grid"] == json.loads((tmp_path / "infer.json").read_text())["grid"]
    assert result.metadata["target"] == "<lr array>" and result.metadata["outputs"]["sr"] is None

    # save() writes what `fasr infer` writes.
    written = result.save(tmp_path / "api.nii.gz", confidence=tmp_path / "api_conf.nii.gz")
    assert [p.name for p in written] == ["api.nii.gz", "api_conf.nii.gz", "api.json"]
    assert_same_image(nib.load(tmp_path / "api.nii.gz"), out, "<ref array>")
    assert_same_image(nib.load(tmp_path / "api_conf.nii.gz"), conf, "<ref array>")
    with pytest.raises(FasrError, match="already exists; pass force=True"):
        result.save(tmp_path / "api.nii.gz")


def test_a_bare_2d_array_is_a_slice_of_the_references_field_of_view(tmp_path, probe):
    rows, cols = np.mgrid[0:12, 0:16]
    lr = (40 + 6 * rows + 5 * cols).astype(np.uint8)  # (H, W)
    ref = (200 - np.mgrid[0:48, 0:64][0]).astype(np.uint8)
    result = fasr.super_resolve(lr, ref, model=probe)
    assert result.sr.shape == (64, 48, 1) and result.sr.get_data_dtype() == np.uint8
    sr = np.asanyarray(result.sr.dataobj)[:, :, 0].T  # (H', W') = (48, 64)
    r, c = (np.mgrid[8:40, 8:56] + 0.5) / 4 - 0.5  # bicubic reproduces the ramp away from the borders
    np.testing.assert_allclose(sr[8:40, 8:56], 40 + 6 * r + 5 * c, atol=1.0)

    # The same arrays saved as .npy slice files through `fasr infer`: the same bytes.
    np.save(tmp_path / "lr.npy", lr)
    np.save(tmp_path / "ref.npy", ref)
    out = tmp_path / "sr.nii.gz"
    assert run_cli(["infer", "--lr", tmp_path / "lr.npy", "--ref", tmp_path / "ref.npy", "--checkpoint", probe,
                    "--out", out, "--no-progress"]) == 0
    assert np.asanyarray(nib.load(out).dataobj).tobytes() == np.asanyarray(result.sr.dataobj).tobytes()
    np.testing.assert_array_equal(nib.load(out).affine, result.sr.affine)


def test_simulate_scores_against_the_input(tmp_path, probe):
    lr, ref, _ = lr_and_ref(tmp_path, (1.0, 1.0, 2.0), (16, 16, 3))
    result = fasr.super_resolve(lr, ref, model=probe, simulate=True)
    assert result.sr.shape == (16, 16, 3)
    scores = result.metadata["scores"]
    assert scores["probe"] == pytest.approx(scores["bicubic"], rel=1e-6)  # the probe is bicubic
    assert result.prediction.bicubic.shape == (16, 16, 3) and result.mean_confidence is not None


def test_input_errors_are_one_line_and_come_before_the_model(tmp_path, probe):
    lr, ref, affine = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (8, 8, 2))
    volume = np.asanyarray(nib.load(lr).dataobj)
    missing_model = tmp_path / "missing.pt"  # never loaded: the inputs fail first
    cases = [
        ((volume, ref), {}, "without an affine; pass lr_affine="),
        ((np.zeros((12, 16)) + np.eye(12, 16), ref), {}, "2-D slice without scanner geometry"),
        ((lr, ref), {"lr_affine": affine}, "lr_affine is only for numpy arrays"),
        ((volume, ref), {"lr_affine": np.eye(3)}, "lr_affine has shape (3, 3)"),
        (([1, 2, 3], ref), {}, "lr is a list; give a file path, a nibabel image or a numpy array"),
        ((lr, ref), {"batch_size": 0}, "batch size must be >= 1"),
    ]
    for inputs, kwargs, message in cases:
        with pytest.raises(FasrError) as info:
            fasr.super_resolve(*inputs, model=missing_model, **kwargs)
        assert message in str(info.value) and "\n" not in str(info.value)


def test_load_model_once(probe):
    model = fasr.load_model(probe)
    assert fasr.load_model(model) is model and model.scale == 4 and model.label == "probe.pt"
    with pytest.raises(FasrError, match="trained for x4, not x2"):
        fasr.load_model(model, scale=2)
    with pytest.raises(FasrError, match="neither a file nor a shipped model"):
        fasr.load_model("brats-x8")
    assert fasr.super_resolve is fasr.api.super_resolve and fasr.load_model is fasr.api.load_model


def test_register_none_is_the_engine_on_the_headers_placement(tmp_path, probe):
    """``register="none"`` runs exactly the path without registration: the volume engine on the reference as its
    header places it (bit for bit); the default registers first and records the transform."""
    from fasr.inference.engine.slices import RunSettings
    from fasr.inference.engine.volumes import super_resolve_volume
    from fasr.inference.inputs import read_inputs

    lr, ref, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (10, 8, 4))
    model = fasr.load_model(probe, device="cpu")
    result = fasr.super_resolve(lr, ref, model=model, register="none")
    assert result.metadata["registration"] is None
    inputs = read_inputs(lr, ref, None, None)
    engine = super_resolve_volume(
        model.model, inputs.target, inputs.ref, model.scale, norm_percentiles=model.config.data.norm_percentiles,
        batch_size=4, device=model.device, progress=False,
        settings=RunSettings.for_model(model.config.model, model.precision, model.max_memory_gib),
    )
    assert np.array_equal(result.prediction.result.sr, engine.sr)
    assert np.array_equal(result.prediction.result.confidence, engine.confidence)


def test_a_job_reads_its_checkpoint_once_and_plans_once(tmp_path, probe, monkeypatch):
    """`fasr infer`: the checkpoint is read once (its config plans the job, its weights build the model) and the
    job is planned once (plan warnings are printed by the CLI, never again by the run)."""
    import fasr.checkpoint
    import fasr.inference.job
    import fasr.inference.plan

    reads, plans = [], []
    real_read, real_plan = fasr.checkpoint.load_checkpoint, fasr.inference.plan.plan_inference
    monkeypatch.setattr(fasr.inference.plan, "load_checkpoint", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    monkeypatch.setattr(fasr.checkpoint, "load_checkpoint", lambda *a, **k: reads.append(a) or real_read(*a, **k))
    monkeypatch.setattr(fasr.inference.job, "plan_inference", lambda *a, **k: plans.append(a) or real_plan(*a, **k))
    lr, ref, _ = lr_and_ref(tmp_path, (4.0, 4.0, 2.0), (10, 8, 4))
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", probe, "--out", tmp_path / "o.nii.gz",
                    "--no-progress"]) == 0
    assert len(reads) == 1 and len(plans) == 1
