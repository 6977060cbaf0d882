"""Thick-slice scans: the slice profile and its affine, thick planes for training, the through-plane inference job
(CLI, API, BIDS, the two-plane combination, --adapt) and the refusals."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import fasr
from conftest import write_brats, write_nifti
from fasr.checkpoint import save_checkpoint
from fasr.config import RunConfig
from fasr.data.config import DataConfig, DegradationConfig
from fasr.data.degrade import PerSample, SliceProfile, degradation_from_spec, profile_weights
from fasr.data.geometry import voxel_to_world
from fasr.data.thick import along_axis, thick_volume
from fasr.data.types import Volume
from fasr.errors import FasrError
from fasr.inference.engine.slices import RunSettings
from fasr.inference.engine.volumes import super_resolve_thick
from fasr.models import build_model
from fasr.models.config import ModelConfig
from test_geometry import oblique_affine
from test_infer_support import run_cli, world_field, write_tiny_fasr

HR_AFFINE = oblique_affine(zooms=(1.0, 1.0, 1.0), angles=(0.2, -0.1, 0.3), origin=(-10.0, 5.0, 2.0))
FIELD = (800.0, 6.0, -4.0, 9.0)  # intensity c0 + c1 x + c2 y + c3 z in world mm


def tiny_thick_config() -> RunConfig:
    return RunConfig(model=ModelConfig(name="fasr", scale=1, n_feats=8, n_blocks=(1, 1, 1), embed_dim=8,
                                       backbone_weights=None),
                     data=DataConfig(degradation=DegradationConfig(kind="slice", slice_factor=4)))


@pytest.fixture(scope="module")
def thick_model(tmp_path_factory) -> Path:
    """An untrained through-plane FASR-Net: its zero-initialised output is its input, the interpolated scan."""
    torch.manual_seed(0)
    cfg = tiny_thick_config()
    path = tmp_path_factory.mktemp("ckpt") / "thick.pt"
    return save_checkpoint(path, {"model": build_model(cfg.model).state_dict(), "config": asdict(cfg)})


def thick_pair(tmp_path: Path, factor: int = 4, shape=(20, 18, 24)) -> tuple[Path, Path, Volume]:
    """A thick-slice LR along voxel axis 2 of an oblique 1 mm volume and a 1 mm reference on the HR grid."""
    hr = Volume(world_field(HR_AFFINE, shape, FIELD).astype(np.float32), HR_AFFINE, "hr")
    lr = thick_volume(hr, 2, SliceProfile(factor))
    ref = world_field(HR_AFFINE, shape, (300.0, -2.0, 5.0, 1.0)).astype(np.float32)
    return (write_nifti(tmp_path / "lr.nii.gz", lr.data, lr.affine),
            write_nifti(tmp_path / "ref.nii.gz", ref, HR_AFFINE), hr)


@pytest.mark.parametrize("profile", ["boxcar", "gaussian"])
@pytest.mark.parametrize("thickness", [1.0, 0.8])
def test_slice_weights_sum_to_one_and_centre_on_the_slice(profile, thickness):
    w = profile_weights(24, 4, profile, thickness)  # (6, 24)
    assert w.shape == (6, 24) and torch.allclose(w.sum(1), torch.ones(6, dtype=w.dtype))
    centroid = (w * torch.arange(24.0, dtype=w.dtype)).sum(1)
    expected = (torch.arange(6.0, dtype=w.dtype) + 0.5) * 4 - 0.5
    assert torch.allclose(centroid[2:-2], expected[2:-2], atol=1e-9)  # away from the edges: on their centre
    if profile == "boxcar" and thickness == 1.0:
        assert torch.equal(w[1, 4:8], torch.full((4,), 0.25, dtype=w.dtype)) and w[1, :4].sum() == 0
    if thickness < 1.0:  # a gap: rows between two slices are seen less
        assert w[:, 3].sum() < w[:, 5].sum()


def test_slice_specs_read_back():
    for spec in ("slice:4:boxcar", "slice:6:gaussian", "slice:5:boxcar:0.8"):
        assert degradation_from_spec(spec).spec == spec
    assert degradation_from_spec("slice:3").spec == "slice:3:boxcar"
    with pytest.raises(FasrError, match="slice:FACTOR"):
        degradation_from_spec("slice:four")
    with pytest.raises(FasrError, match="mixes slice profiles"):
        RunConfig(model=ModelConfig(scale=1), data=DataConfig(degradation=DegradationConfig(
            kind="random", random_kinds=["slice:4", "kspace"])))


def test_mixed_factors_per_sample_down_up_item_by_item():
    x = torch.randn(2, 1, 60, 8)
    both = PerSample([SliceProfile(3), SliceProfile(5)]).down_up(x, 1)
    assert torch.allclose(both[1:], SliceProfile(5).down_up(x[1:], 1))


def test_a_thick_volume_lands_where_its_affine_says(tmp_path):
    """A world-linear volume: a boxcar slice's value is the field at the slice's centre, which its affine gives."""
    shape = (6, 5, 24)
    hr = Volume(world_field(HR_AFFINE, shape, FIELD).astype(np.float32), HR_AFFINE, "hr")
    lr = thick_volume(hr, 2, SliceProfile(4))
    assert lr.data.shape == (6, 5, 6)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in lr.data.shape], indexing="ij"), -1).reshape(-1, 3)
    world = voxel_to_world(lr.affine, ijk)
    expected = FIELD[0] + world @ np.array(FIELD[1:])
    np.testing.assert_allclose(lr.data.reshape(-1), expected, atol=1e-2)
    np.testing.assert_allclose(np.linalg.norm(lr.affine[:3, :3], axis=0), (1.0, 1.0, 4.0), atol=1e-9)


def test_thick_planes_have_the_slice_axis_as_rows_and_a_consistent_ref_down_up(tmp_path):
    """Training samples of data.planes: thick: crops start at a thick slice's edge, flips keep rows as rows, and the
    LR is exactly the model's Ref-down-up of the target (no noise)."""
    from fasr.data.datasets import build_dataset

    root = write_brats(tmp_path / "d", ["a", "b"], shape=(40, 40, 24))
    bad = DataConfig(root=str(root), val_subjects=["b"], patch_size=12, slice_size=40, planes="thick",
                     degradation=DegradationConfig(kind="slice", slice_factor=3))
    with pytest.raises(FasrError, match="multiples of every slice factor"):
        build_dataset(bad, "train", 1, train=True)
    cfg = DataConfig(root=str(root), val_subjects=["b"], patch_size=36, slice_size=48, planes="thick",
                     min_foreground=0.0, degradation=DegradationConfig(kind="random", random_kinds=["slice:3",
                                                                                                   "slice:4"]))
    train = build_dataset(cfg, "train", 1, train=True)
    assert len(train) == 80  # 40 coronal + 40 sagittal planes of subject a
    torch.manual_seed(0)
    for i in range(6):
        sample = train[i]
        profile = degradation_from_spec(sample.degradation)
        assert sample.lr.shape == sample.hr.shape == (1, 36, 36)
        inner = slice(2 * profile.factor, -2 * profile.factor)  # the crop's edge changes the cubic interpolation
        assert torch.allclose(sample.lr[:, inner], profile.down_up(sample.hr[None], 1)[0, :, inner], atol=1e-5)
    val = build_dataset(cfg, "val", 1, train=False)
    plane = val[0]
    assert plane.hr.shape == (1, 48, 48) and plane.degradation == "slice:4:boxcar"
    # Scoring takes each plane family as its own volume, not one stack of coronal and sagittal planes.
    from fasr.scoring.volumes import predict_volumes

    volumes = predict_volumes({}, val, range(len(val)), batch_size=8, device=torch.device("cpu"))
    assert sorted(volumes) == ["b:across1", "b:across2"]
    assert {subject for subject, _ in val.source.items()} == {"b:across1", "b:across2"}  # the same ids
    assert all(len(v.slices) == 40 and len(set(v.slices.tolist())) == 40 for v in volumes.values())


def test_two_plane_combination_is_exact_when_there_is_nothing_to_correct(thick_model):
    """An untrained model adds nothing: each plane family returns the interpolated scan, and so does their average;
    on a volume constant along the thick axis that is the truth itself."""
    loaded = fasr.load_model(str(thick_model), "cpu")
    shape = (16, 12, 20)
    xy = world_field(np.eye(4), (16, 12, 1), (400.0, 20.0, -9.0, 0.0)).astype(np.float32)
    hr = np.repeat(xy, shape[2], axis=2)  # constant along the thick axis
    lr = thick_volume(Volume(hr, np.eye(4), "hr"), 2, SliceProfile(4))
    ref = Volume(hr * 0.5 + 10, np.eye(4), "ref")
    result = super_resolve_thick(loaded.model, lr, ref, SliceProfile(4), 2, norm_percentiles=(0.5, 99.5),
                                 batch_size=4, device=torch.device("cpu"), progress=False, settings=RunSettings())
    np.testing.assert_allclose(result.sr, hr, rtol=1e-5, atol=1e-3)
    varying = Volume(world_field(np.eye(4), shape, FIELD).astype(np.float32) ** 1.5, np.eye(4), "hr")
    lr = thick_volume(varying, 2, SliceProfile(4))
    result = super_resolve_thick(loaded.model, lr, ref, SliceProfile(4), 2, norm_percentiles=(0.5, 99.5),
                                 batch_size=4, device=torch.device("cpu"), progress=False, settings=RunSettings())
    np.testing.assert_allclose(result.sr, along_axis(lr.data, 2, "up", SliceProfile(4)), rtol=1e-5, atol=1e-2)


def test_the_scans_own_factor_makes_the_models_ref_down_up(thick_model, monkeypatch):
    """A 3 mm scan with a model whose nominal profile is 4 mm: the model (and --adapt) get the scan's profile."""
    from fasr.models.fasrnet import FASRNet

    seen = []
    real = FASRNet.forward
    monkeypatch.setattr(FASRNet, "forward", lambda self, lr, ref, *a, degradation=None, **k: seen.append(
        degradation.spec) or real(self, lr, ref, *a, degradation=degradation, **k))
    loaded = fasr.load_model(str(thick_model), "cpu")
    shape = (14, 12, 18)  # 18 rows: not a multiple of the nominal 4
    hr = Volume(world_field(np.eye(4), shape, FIELD).astype(np.float32), np.eye(4), "hr")
    lr = thick_volume(hr, 2, SliceProfile(3))
    ref = Volume(hr.data * 0.5 + 10, np.eye(4), "ref")
    result = super_resolve_thick(loaded.model, lr, ref, SliceProfile(3), 2, norm_percentiles=(0.5, 99.5),
                                 batch_size=4, device=torch.device("cpu"), progress=False, settings=RunSettings(),
                                 adapt=1)
    assert result.sr.shape == shape and set(seen) == {"slice:3:boxcar"}


def test_cli_api_and_bids_run_a_thick_pair_onto_the_reference_spacing(tmp_path, thick_model, capsys):
    lr, ref, hr = thick_pair(tmp_path)
    out = tmp_path / "sr.nii.gz"
    assert run_cli(["infer", "--lr", lr, "--ref", ref, "--checkpoint", thick_model, "--out", out,
                    "--confidence", tmp_path / "conf.nii.gz", "--no-progress"]) == 0
    assert "x4 through-plane along voxel axis 2" in capsys.readouterr().out
    img = nib.load(out)
    assert img.shape == hr.data.shape and np.allclose(img.affine, HR_AFFINE, atol=1e-5)
    sidecar = json.loads((tmp_path / "sr.json").read_text())
    assert sidecar["grid"]["thick_axis"] == 2 and sidecar["grid"]["scale"] == 4
    assert nib.load(tmp_path / "conf.nii.gz").shape == hr.data.shape
    api = fasr.super_resolve(str(lr), str(ref), str(thick_model))
    np.testing.assert_array_equal(np.asanyarray(api.sr.dataobj), np.asanyarray(img.dataobj))
    bids = tmp_path / "ds"
    for name, source in (("T2w", lr), ("T1w", ref)):
        (bids / "sub-01/anat").mkdir(parents=True, exist_ok=True)
        (bids / f"sub-01/anat/sub-01_{name}.nii.gz").write_bytes(Path(source).read_bytes())
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.8.0"}))
    assert run_cli(["infer", "--bids", bids, "--target", "T2w", "--ref", "T1w", "--checkpoint", thick_model,
                    "--no-progress"]) == 0
    written = list((bids / "derivatives").rglob("*.nii.gz"))
    assert written and all(nib.load(p).shape == hr.data.shape for p in written)


def test_adapt_fine_tunes_a_copy_and_reports_it(tmp_path, thick_model):
    lr, ref, _ = thick_pair(tmp_path, shape=(24, 24, 24))
    loaded = fasr.load_model(str(thick_model), "cpu")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    result = fasr.super_resolve(str(lr), str(ref), loaded, adapt=3)
    assert result.metadata["throughput"]["adapt"]["steps"] == 3
    assert all(torch.equal(before[k], v) for k, v in loaded.model.state_dict().items())  # the original untouched


def test_thick_input_with_an_in_plane_model_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    lr, ref, _ = thick_pair(tmp_path)
    in_plane = write_tiny_fasr(tmp_path / "x4.pt")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("fasr.inference.job.load_for_inference", no_loading)
    with pytest.raises(FasrError, match="thick-slice scan.*through-plane model"):
        fasr.super_resolve(str(lr), str(ref), str(in_plane))


def test_a_through_plane_model_refuses_what_is_not_thick(tmp_path, thick_model):
    shape = (12, 12, 12)
    iso = write_nifti(tmp_path / "iso.nii.gz", world_field(HR_AFFINE, shape, FIELD).astype(np.float32), HR_AFFINE)
    ref = write_nifti(tmp_path / "ref.nii.gz", world_field(HR_AFFINE, shape, FIELD).astype(np.float32) + 1, HR_AFFINE)
    with pytest.raises(FasrError, match="no thick-slice axis"):
        fasr.super_resolve(str(iso), str(ref), str(thick_model))
    with pytest.raises(FasrError, match="adapt fine-tunes a through-plane model"):
        fasr.super_resolve(str(iso), str(ref), write_tiny_fasr(tmp_path / "x4.pt"), simulate=True, adapt=2)


def test_bench_thick_scores_every_row_on_the_fine_grid(tmp_path, thick_model):
    """`fasr bench thick` on a generated dataset: every row, the true volume's grid, and an untrained model that
    equals its own input (the no-reference row is the interpolated scan the network starts from)."""
    from fasr.bench.thick import run_thick_bench

    root = write_brats(tmp_path / "d", ["a", "b", "c"], shape=(32, 32, 24))
    sets = (f"data.root={root}", "data.val_subjects=[b]", "data.test_subjects=[c]")
    result = run_thick_bench(str(thick_model), thicknesses=(4,), adapt=2, overrides=sets, log=lambda _: None)
    rows = result["thickness"]["4"]
    assert list(rows) == ["cubic", "no reference", "true reference", "another subject", "true reference, --adapt 2"]
    assert result["subject"] == "b" and "a/" in result["wrong_reference"]
    assert abs(rows["no reference"]["psnr"] - rows["true reference"]["psnr"]) < 1e-6  # untrained: no reference effect
    assert all(0 < r["psnr"] < 80 and 0 < r["ssim"] <= 1 for r in rows.values())


def test_planes_too_large_to_run_whole_are_refused_not_cut(thick_model, monkeypatch):
    """Through-plane planes are never tiled (a tile would cut thick slices): when the memory plan would tile them,
    one clear line instead."""
    import fasr.inference.engine.slices as volume

    real_plan = volume._plan
    monkeypatch.setattr(volume, "_plan", lambda *a, **k: (real_plan(*a, **k)[0]._replace(tile=16), 1.0))
    loaded = fasr.load_model(str(thick_model), "cpu")
    shape = (4, 12, 16)
    hr = Volume(world_field(np.eye(4), shape, FIELD).astype(np.float32), np.eye(4), "hr")
    lr = thick_volume(hr, 2, SliceProfile(4))
    with pytest.raises(FasrError, match="do not tile planes"):
        super_resolve_thick(loaded.model, lr, hr, SliceProfile(4), 2, norm_percentiles=(0.5, 99.5), batch_size=4,
                            device=torch.device("cpu"), progress=False, settings=RunSettings())


@pytest.mark.parametrize("bad", [{"planes": "axial"}, {"slice_size": 0}])
def test_a_slice_profile_needs_thick_planes_on_a_fixed_canvas(tmp_path, bad):
    from fasr.data.datasets import build_dataset

    root = write_brats(tmp_path / "d", ["a", "b"], shape=(24, 24, 12))
    cfg = DataConfig(**{"root": str(root), "val_subjects": ["b"], "patch_size": 12, "slice_size": 24,
                        "planes": "thick", "degradation": DegradationConfig(kind="slice"), **bad})
    with pytest.raises(FasrError, match="data.planes: thick and data.slice_size"):
        build_dataset(cfg, "train", 1, train=True)


def test_the_headers_slice_thickness_shapes_the_profile_the_model_assumes(tmp_path, thick_model, capsys):
    """4 mm apart, 3.2 mm thick (a 20 % gap, from a BIDS sidecar): the plan says so and the model's Ref-down-up
    uses it; without a usable field the model's own profile is used, and the plan says that."""
    lr, ref, _ = thick_pair(tmp_path)
    out = tmp_path / "sr.nii.gz"
    argv = ["infer", "--lr", lr, "--ref", ref, "--checkpoint", thick_model, "--out", out, "--no-progress",
            "--register", "none", "--force"]
    assert run_cli(argv) == 0
    assert "the model's own slice profile (no usable SliceThickness in the header)" in capsys.readouterr().out
    assert json.loads((tmp_path / "sr.json").read_text())["throughput"]["slice_profile"] == "slice:4:boxcar"
    (tmp_path / "lr.json").write_text(json.dumps({"SliceThickness": 3.2, "EchoTime": 0.1}))
    assert run_cli(argv) == 0
    assert "slices 3.2 mm thick every 4 mm (header)" in capsys.readouterr().out
    assert json.loads((tmp_path / "sr.json").read_text())["throughput"]["slice_profile"] == "slice:4:boxcar:0.8"
    for unusable in ({"SliceThickness": "thick"}, {"SliceThickness": -1}, ["not", "an", "object"]):
        (tmp_path / "lr.json").write_text(json.dumps(unusable))  # ignored, and the plan says so
        assert run_cli(argv) == 0
        assert "no usable SliceThickness" in capsys.readouterr().out


def test_a_dicom_series_keeps_its_slice_thickness(tmp_path):
    from fasr.data.io import read_volume
    from test_data_support import write_dicom_series

    data = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3) * 10
    write_dicom_series(tmp_path / "t2", data, (1, 0, 0), (0, 1, 0), (0.9, 0.9, 5.0), (0, 0, 0), thickness=4.0)
    volume = read_volume(tmp_path / "t2")
    assert volume.slice_thickness == 4.0 and volume.voxel_size[2] == pytest.approx(5.0)
    from fasr.data.dicom import usable_thickness

    assert [usable_thickness(v) for v in ("3.5", [2.0, 3.0], 0, "x", float("inf"), True, None)] == [
        3.5, 2.0, None, None, None, None, None]
    assert read_volume(write_nifti(tmp_path / "plain.nii.gz", data, np.eye(4))).slice_thickness is None
