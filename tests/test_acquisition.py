"""Scans as scanners make them: degradation specs and randomisation, per-sample Ref-down-up, the grid convention
of every degradation, 3-D reference motion, and rigid registration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import head_phantom
from fasr.config import RunConfig
from fasr.data.augment import random_motion, rigid_plane
from fasr.data.config import DataConfig, DegradationConfig
from fasr.data.degrade import (
    Bicubic,
    KSpace,
    PerSample,
    add_noise,
    build_degradation,
    degradation_from_spec,
    draw_degradation,
    nominal_spec,
)
from fasr.data.samples import INVALID_COORD, RawSlice, SampleMaker
from fasr.data.types import NormStats, Volume
from fasr.errors import FasrError
from fasr.inference.register import motion_of, register_rigid, registered_volume, rigid_matrix
from fasr.models import ModelConfig, build_model

SPECS = ["bicubic", "kspace", "kspace:hamming", "kspace:tukey:0.5", "kspace:tukey:0.25"]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trip(spec: str) -> None:
    assert degradation_from_spec(spec).spec == spec


@pytest.mark.parametrize("spec", ["gauss", "kspace:hann", "bicubic:hamming", "kspace:hamming:0.5", "kspace:tukey:x"])
def test_unknown_specs_are_refused(spec: str) -> None:
    with pytest.raises(FasrError, match="degradation"):
        degradation_from_spec(spec)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("scale", [2, 4])
def test_a_shifted_delta_lands_where_the_lr_grid_says(spec: str, scale: int) -> None:
    """LR pixel j sits at HR coordinate (j + 0.5) * scale - 0.5 (the convention of ``sr_affine``): a smooth bump
    centred between HR pixels peaks at the LR pixel whose centre lies nearest, with the sub-pixel offset preserved
    (the centroid of the LR image equals the bump's centre in LR units)."""
    n = 64
    centre = (21.3, 40.7)  # HR pixel coordinates (y, x)
    y, x = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    sigma = 1.5 * scale  # wide enough to be band-limited on the LR grid (no ringing to bias the centroid)
    bump = torch.exp(-((y - centre[0]) ** 2 + (x - centre[1]) ** 2) / (2 * sigma**2))[None, None].float()
    lr = degradation_from_spec(spec).down(bump, scale)[0, 0].double()
    j = torch.arange(n // scale, dtype=torch.float64)
    weights = lr
    cy = float((weights.sum(1) * j).sum() / weights.sum())
    cx = float((weights.sum(0) * j).sum() / weights.sum())
    expected = [(c + 0.5) / scale - 0.5 for c in centre]  # HR coordinate -> LR pixel coordinate
    assert cy == pytest.approx(expected[0], abs=0.02) and cx == pytest.approx(expected[1], abs=0.02)


def test_nominal_degradation_keeps_the_window() -> None:
    cfg = DegradationConfig(kind="kspace", window="tukey", tukey_alpha=0.3)
    assert nominal_spec(cfg) == "kspace:tukey:0.3"
    assert nominal_spec(dataclasses.replace(cfg, kind="random")) == "kspace:tukey:0.3"  # what a scanner does
    assert nominal_spec(DegradationConfig()) == "bicubic"
    # The model's Ref-down-up follows the LR's whole degradation, window included.
    run = RunConfig(data=DataConfig(degradation=cfg))
    assert run.model.ref_degradation == "kspace:tukey:0.3"
    with pytest.raises(FasrError, match="degradation"):
        RunConfig(model=ModelConfig(ref_degradation="sinc"))


def test_random_draws_cover_the_kinds_and_the_snr_range() -> None:
    cfg = DegradationConfig(kind="random", noise="rician", snr_range=(10.0, 100.0), noise_prob=0.5)
    generator = torch.Generator().manual_seed(0)
    draws = [draw_degradation(cfg, True, generator) for _ in range(400)]
    assert {d.degradation.spec for d in draws} == {"bicubic", "kspace", "kspace:hamming", "kspace:tukey:0.5"}
    noisy = [d.snr for d in draws if d.noise == "rician"]
    assert 0.4 < len(noisy) / len(draws) < 0.6
    assert 10.0 <= min(noisy) and max(noisy) <= 100.0
    # log-uniform: the geometric middle (31.6) splits the draws in half
    assert 0.4 < np.mean(np.asarray(noisy) < 10 ** 1.5) < 0.6
    evaluation = draw_degradation(cfg, False, generator)
    assert (evaluation.degradation.spec, evaluation.noise, evaluation.snr) == ("kspace", "rician", 30.0)
    with pytest.raises(FasrError, match="snr_range"):
        build_degradation(DegradationConfig(snr_range=(50.0, 10.0)))


@pytest.mark.parametrize("snr", [5.0, 20.0])
def test_rician_noise_has_the_requested_snr(snr: float) -> None:
    """Sigma = mean content / snr: the complex noise's real part on a bright flat region has that std."""
    x = torch.full((1, 1, 256, 256), 0.6)  # magnitude 0.8 everywhere, all content
    generator = torch.Generator().manual_seed(1)
    noisy = add_noise(x, "gaussian", snr, generator)
    sigma = float(((noisy + 1) / 2 - 0.8).std())
    assert sigma == pytest.approx(0.8 / snr, rel=0.03)
    rician = (add_noise(x, "rician", snr, torch.Generator().manual_seed(1)) + 1) / 2
    # |m + n1 + i n2| has mean ~ sqrt(m^2 + sigma^2) at high SNR
    assert float(rician.mean()) == pytest.approx(float(np.hypot(0.8, 0.8 / snr)), rel=0.01)


def test_per_sample_ref_down_up_equals_each_lr_degradation() -> None:
    """The model's Ref-down-up for a batch of mixed degradations is each item's own down-up, window included."""
    specs = ["bicubic", "kspace:hamming", "kspace:tukey:0.5", "kspace"]
    ref = torch.rand(4, 1, 32, 32)
    batch = PerSample.of(specs).down_up(ref, 4)
    for i, spec in enumerate(specs):
        torch.testing.assert_close(batch[i : i + 1], degradation_from_spec(spec).down_up(ref[i : i + 1], 4))
    assert isinstance(PerSample.of(["kspace", "kspace"]), KSpace)
    assert isinstance(PerSample.of(["bicubic"]), Bicubic)


def test_fasrnet_makes_ref_down_up_with_the_batch_degradation() -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(n_feats=8, n_blocks=(1, 1, 1), embed_dim=8, backbone_weights=None,
                                    ref_guided=True, guide_order=2, ref_degradation="kspace")).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.01)
    torch.nn.init.normal_(model.guide_gate.weight, std=0.01)
    lr, ref = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 64, 64) * 2 - 1
    with torch.no_grad():
        own = model(lr, ref).sr
        same = model(lr, ref, degradation=KSpace()).sr
        other = model(lr, ref, degradation=PerSample.of(["bicubic", "kspace:hamming"])).sr
    torch.testing.assert_close(own, same)
    assert float((own - other).abs().max()) > 1e-4


def _sample_maker(**kw) -> SampleMaker:
    options = dict(scale=4, degradation=Bicubic(), noise="none", snr=30.0, slice_size=32, patch_size=16, train=True,
                   augment=False, misalign=(0.0, 0.0, 0.0), min_foreground=0.0)
    return SampleMaker(**{**options, **kw})


def _raw(volume: np.ndarray, z: int) -> RawSlice:
    stats = NormStats(0.0, 1.0)
    return RawSlice(target=volume[z].copy(), reference=volume[z].copy(), lr=None, subject="s", slice_index=z,
                    target_stats=stats, ref_stats=stats, ref_volume=volume, spacing=(2.0, 1.0, 1.0))


def test_randomised_training_samples_record_their_degradation() -> None:
    volume = np.random.default_rng(0).uniform(-1, 1, (6, 32, 32)).astype(np.float32)
    cfg = DegradationConfig(kind="random", random_kinds=["kspace:hamming"])
    sample = _sample_maker(randomise=cfg, patch_size=32)(_raw(volume, 2), 0)  # the crop is the whole canvas
    expected = KSpace(window="hamming").down(torch.from_numpy(volume[2])[None, None], 4)[0]
    torch.testing.assert_close(sample.lr, expected)
    assert sample.degradation == "kspace:hamming"
    evaluation = _sample_maker(train=False, randomise=cfg)(_raw(volume, 2), 0)
    assert evaluation.degradation == "bicubic"  # evaluation uses the nominal degradation it is given


def test_rigid_plane_identity_and_through_plane_shift() -> None:
    volume = torch.randn(8, 20, 24)
    zero = torch.zeros(3, dtype=torch.float64)
    plane, coords, inside = rigid_plane(volume, 3, (2.0, 1.0, 1.0), zero, zero, (24, 28), (2, 2))
    torch.testing.assert_close(plane[0, 0, 2:22, 2:26], volume[3])
    assert float(plane[0, 0, 0, 0]) == -1.0 and not bool(inside[0, 0, 0, 0])
    assert coords[0, :, 2, 2].tolist() == [2.0, 2.0]
    # 2 mm through-plane with 2 mm slices: the next slice; 1 mm along y: one row down
    shift = torch.tensor([2.0, 1.0, 0.0], dtype=torch.float64)
    plane, coords, _ = rigid_plane(volume, 3, (2.0, 1.0, 1.0), zero, shift, (20, 24), (0, 0))
    torch.testing.assert_close(plane[0, 0, :19], volume[4, 1:])
    assert coords[0, :, 0, 0].tolist() == [1.0, 0.0]


def test_motion_moves_the_training_reference_within_its_limits() -> None:
    rng = np.random.default_rng(0)
    volume = np.cumsum(np.cumsum(rng.normal(size=(10, 32, 32)), 1), 2).astype(np.float32)
    volume = (volume / np.abs(volume).max()).astype(np.float32)
    torch.manual_seed(0)
    maker = _sample_maker(motion=(2.0, 2.0), slice_size=32, patch_size=32)
    sample = maker(_raw(volume, 5), 0)
    assert not torch.equal(sample.ref, sample.hr)  # moved
    valid = (sample.ref_coords < INVALID_COORD).all(0)
    drift = (sample.ref_coords[:, valid] - sample.hr_coords[:, valid]).abs()
    # 2 mm shift plus 2 degrees per axis at most ~16 px from the centre of a 32 px slice: < 2 + 3 * 0.6 px
    assert float(drift.max()) < 4.0 and float(drift.max()) > 0.0
    rotation, shift = random_motion(2.0, 2.0, torch.Generator().manual_seed(1))
    assert float(rotation.abs().max()) <= np.radians(2.0) and float(shift.abs().max()) <= 2.0
    with pytest.raises(FasrError, match="data.motion needs the reference volume"):
        maker(_raw(volume, 5)._replace(ref_volume=None), 0)


def test_registration_recovers_a_known_motion() -> None:
    """A generated volume (LR: x2 in-plane block average; reference: another 'contrast' of it, moved by a known
    rigid motion through the affine) is registered back within 0.3 mm / 0.3 degrees (measured: 0.11 deg, 0.10 mm
    mean displacement over the head)."""
    hr = head_phantom()
    affine = np.diag([2.0, 2.0, 3.0, 1.0])  # a head-sized field of view: 192 x 192 x 144 mm
    ref_data = np.sqrt(np.clip(hr, 0, None)) * 10  # another contrast: a monotone map of the same tissues
    lr_data = hr.reshape(48, 2, 48, 2, 48).mean(axis=(1, 3))
    lr_affine = affine.copy()
    lr_affine[:3, :3] = affine[:3, :3] @ np.diag([2.0, 2.0, 1.0])
    lr_affine[:3, 3] = affine[:3, :3] @ np.array([0.5, 0.5, 0.0])  # LR pixel centres on the HR grid
    centre = affine[:3, :3] @ ((np.array(hr.shape) - 1) / 2)
    motion = rigid_matrix((1.5, -1.0, 2.0), (1.2, -0.8, 1.5), centre)
    moved = Volume(ref_data, motion @ affine, "moved")
    reg = register_rigid(Volume(lr_data.astype(np.float32), lr_affine, "lr"), moved)
    points = np.argwhere(hr > 50)[::20] @ affine[:3, :3].T
    angle, shift = motion_of(np.linalg.inv(motion) @ reg.matrix, points)  # the matrix maps LR points to K p
    assert angle < 0.3 and shift < 0.3, (angle, shift)
    back = registered_volume(moved, reg)  # the voxels go back to where the LR sees their anatomy
    middle = np.array([48.0, 48.0, 24.0, 1.0])
    assert np.linalg.norm((back.affine @ middle - affine @ middle)[:3]) < 0.3
    assert reg.to_dict()["method"] == "rigid" and reg.seconds > 0


def test_local_agreement_peaks_at_the_true_placement() -> None:
    """The LR against its reference's LR view: 1 for the same image, lower when the reference is off by a fraction
    of an LR pixel, lower still by a whole pixel; insensitive to a contrast's gain and offset."""
    from scipy import ndimage

    from fasr.inference.register import local_agreement

    hr = head_phantom((96, 96, 8))[:, :, 4]
    lr = KSpace().down(torch.from_numpy(hr.copy())[None, None], 4)[:, 0].numpy()

    def view(shift_px: float) -> np.ndarray:
        moved = ndimage.shift(hr, (0, shift_px), order=3) if shift_px else hr
        return KSpace().down(torch.from_numpy(3.0 * moved + 7.0)[None, None], 4)[:, 0].numpy()

    exact, half, whole = (local_agreement(lr, view(s)) for s in (0.0, 2.0, 4.0))
    assert exact == pytest.approx(1.0, abs=1e-6)
    assert exact > half > whole


def test_a_slice_cache_tells_the_model_how_its_lr_was_made(tmp_path) -> None:
    """``model.ref_degradation: auto`` with ``data.kind: cache`` follows the cache's own degradation (its
    manifest), window included, not the run config's ``data.degradation``."""
    from fasr.data.cache import FORMAT, VERSION, write_manifest

    degradation = dataclasses.asdict(DegradationConfig(kind="kspace", window="hamming"))
    write_manifest(tmp_path, {"format": FORMAT, "version": VERSION, "complete": True, "degradation": degradation})
    run = RunConfig(data=DataConfig(kind="cache", root=str(tmp_path)))
    assert run.model.ref_degradation == "kspace:hamming"


def test_registration_is_deterministic_on_a_volume_it_samples(monkeypatch) -> None:
    """Above the sampling limit the metric samples random voxels; the seed is fixed, so the transform is too."""
    import fasr.inference.register as register

    monkeypatch.setattr(register, "_SAMPLES", 20_000)
    monkeypatch.setattr(register, "_FULL_MAX", 20_000)
    hr = head_phantom((96, 96, 48))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    lr_data = hr.reshape(48, 2, 48, 2, 48).mean(axis=(1, 3))
    lr_affine = np.diag([4.0, 4.0, 3.0, 1.0])
    lr_affine[:3, 3] = [1.0, 1.0, 0.0]
    assert lr_data.size > register._FULL_MAX  # the random-sampling path
    ref = Volume(np.sqrt(np.clip(hr, 0, None)), affine, "ref")
    fits = [register_rigid(Volume(lr_data.astype(np.float32), lr_affine, "lr"), ref) for _ in range(2)]
    assert np.array_equal(fits[0].matrix, fits[1].matrix)
    assert (fits[0].metric, fits[0].centre_shift_mm) == (fits[1].metric, fits[1].centre_shift_mm)
    with pytest.raises(ValueError, match="seed"):
        register_rigid(Volume(lr_data.astype(np.float32), lr_affine, "lr"), ref, seed=0)


def test_bench_registration_reports_every_residual_with_exact_truth_for_both_contrast_rows(tmp_path) -> None:
    """One generated subject, one known motion: the same-contrast and the synthetic-contrast fits, whose truth is
    exact, land within 0.3 mm / 0.3 degrees; the synthetic contrast is not a monotone map of the target."""
    from conftest import write_nifti
    from fasr.bench.registration import remapped, run_registration_bench

    hr = head_phantom((64, 64, 32))
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    write_nifti(tmp_path / "s1" / "t2.nii.gz", hr, affine)
    write_nifti(tmp_path / "s1" / "t1.nii.gz", np.sqrt(np.clip(hr, 0, None)) * 10, affine)
    synthetic = remapped(Volume(hr, affine, "hr")).data
    assert synthetic[hr < 1].max() == 0  # background stays dark
    order = np.argsort(hr[hr > 10].ravel())
    steps = np.diff(synthetic[hr > 10].ravel()[order])
    assert (steps > 1e-3).any() and (steps < -1e-3).any()  # up and down: not monotone
    result = run_registration_bench([str(tmp_path)], target="t2", reference="t1", motions=1, max_mm=2.0,
                                    max_deg=2.0, scale=2, seed=0, log=lambda line: None)
    summary = result["summary"]
    assert {name: s["fits"] for name, s in summary.items()} == {
        "vs_dataset": 1, "vs_unmoved": 1, "same_contrast": 1, "synthetic_contrast": 1}
    for name in ("same_contrast", "synthetic_contrast"):
        assert summary[name]["deg"]["median"] < 0.3 and summary[name]["mm"]["median"] < 0.3, (name, summary[name])


def test_registration_metric_reads_the_lr_content_only() -> None:
    """The metric's mask: the LR's content (above 5 % of its range from the background) dilated by 3 voxels, so the
    head's edge stays in and the empty corners are out; no mask for a volume without background."""
    from fasr.inference.register import _content_mask, _image, _mask_image, _sitk

    hr = head_phantom((48, 48, 24))
    mask = _content_mask(Volume(hr, np.eye(4), "lr"))
    assert mask is not None and mask[24, 24, 12] and not mask[0, 0, 0]
    assert mask.sum() > (hr > 0.05 * np.percentile(hr, 99.5)).sum()  # the dilated edge
    assert _content_mask(Volume(hr + 100.0, np.eye(4), "lr")) is None  # no background: everything counts
    # On the LR's own grid, voxel for voxel (an asymmetric shape and affine: no axis swapped).
    lr = Volume(hr[:, :40, :16], np.diag([2.0, 3.0, 4.0, 1.0]), "lr")
    sitk = _sitk()
    fixed, mask = _image(lr, sitk), _content_mask(lr)
    image = _mask_image(mask, fixed, sitk)
    assert np.array_equal(sitk.GetArrayFromImage(image).transpose(2, 1, 0), mask)
    assert image.GetSpacing() == fixed.GetSpacing() == (2.0, 3.0, 4.0)
