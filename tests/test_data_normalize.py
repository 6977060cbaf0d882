"""Normalisation: foreground percentiles, the [-1, 1] round trip, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fasr.data.normalize import foreground_fraction, normalize_clipped, robust_stats
from fasr.data.types import NormStats, Volume
from fasr.errors import FasrError


def test_low_is_the_background_level_and_high_a_foreground_percentile() -> None:
    volume = np.zeros((10, 10, 10), np.float32)
    volume[:5] = np.arange(1, 501, dtype=np.float32).reshape(5, 10, 10)  # foreground 1..500, half is background
    volume[9, 9, :3] = -50.0  # interpolation undershoot
    stats = robust_stats(volume, low_pct=1.0, high_pct=90.0)
    assert stats.low == 0.0
    assert stats.high == pytest.approx(np.percentile(np.arange(1, 501), 90))  # independent of the background
    assert robust_stats(Volume(volume, np.eye(4), "v"), 1.0, 90.0) == stats
    bigger_background = np.concatenate([volume, np.zeros_like(volume)])
    assert robust_stats(bigger_background, 1.0, 90.0) == stats


def test_round_trip_restores_original_intensities() -> None:
    rng = np.random.default_rng(0)
    volume = rng.uniform(0, 3000, size=(8, 8, 4)).astype(np.float32)
    stats = robust_stats(volume, 0.5, 99.5)
    normalised = stats.normalize(volume)
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(stats.denormalize(normalised), volume, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(stats.normalize(np.array([stats.low, stats.high])), [-1.0, 1.0], atol=1e-6)
    clipped = normalize_clipped(volume, stats)
    assert clipped.min() == -1.0 and clipped.max() == 1.0


def test_foreground_fraction_per_slice() -> None:
    stack = np.full((2, 4, 4), -1.0, np.float32)
    stack[1, :2] = 0.5
    np.testing.assert_allclose(foreground_fraction(stack), [0.0, 0.5])


def test_errors() -> None:
    with pytest.raises(FasrError, match="no content above its background"):
        robust_stats(np.full((4, 4), 3.0))
    with pytest.raises(FasrError, match="percentiles"):
        robust_stats(np.ones((4, 4)), 100.0, 10.0)
    mostly_one_value = np.ones((10, 10)) * 5
    mostly_one_value[0, :2] = (0.0, 6.0)
    assert robust_stats(mostly_one_value, 0.0, 50.0) == NormStats(0.0, 5.0)
    assert robust_stats(np.array([0.0, 5.0, 5.0, 5.0, 6.0]), 0.0, 10.0) == NormStats(0.0, 5.0)


def test_training_intensity_jitter_scales_target_about_background() -> None:
    """With intensity_jitter the HR and LR of a training sample share one random gain about -1; Ref is untouched."""
    import torch

    from fasr.data.degrade import Bicubic
    from fasr.data.samples import RawSlice, SampleMaker
    from fasr.data.types import NormStats

    hr = np.full((32, 32), 0.5, np.float32)
    raw = RawSlice(hr, hr.copy(), None, "s", 0, NormStats(0.0, 1.0), NormStats(0.0, 1.0))
    maker = SampleMaker(scale=4, degradation=Bicubic(), noise="none", snr=30.0, slice_size=0, patch_size=16,
                        train=True, augment=False, misalign=(0.0, 0.0, 0.0), min_foreground=0.0,
                        intensity_jitter=0.2)
    torch.manual_seed(0)
    gains = []
    for i in range(20):
        s = maker(raw, i)
        gain = float((s.hr + 1).mean() / 1.5)
        assert torch.allclose((s.lr + 1) / 1.5, torch.full_like(s.lr, gain), atol=1e-4)
        assert torch.allclose(s.ref, torch.full_like(s.ref, 0.5))
        gains.append(gain)
    assert 0.8 <= min(gains) < 0.95 and 1.05 < max(gains) <= 1.2


def test_signed_data_keep_their_negative_values() -> None:
    """A z-scored brain (background -3.6, tissue partly negative) is signed and scaled by the same affine map as
    the scan it came from; a magnitude image with the undershoot of k-space downsampling is not signed."""
    import torch

    from fasr.data.degrade import KSpace
    from fasr.data.normalize import intensity_floor, is_signed, robust_stats

    rng = np.random.default_rng(0)
    raw = np.zeros((64, 64), np.float32)
    raw[16:48, 16:48] = 300 + 80 * rng.standard_normal((32, 32))
    ringing = KSpace().down(torch.from_numpy(raw)[None, None], 4)[0, 0].numpy()
    assert ringing.min() < 0 and not is_signed(ringing)
    brain = raw > 0
    z = (raw - raw[brain].mean()) / raw[brain].std()
    assert is_signed(z) and (z[brain] < 0).mean() > 0.3
    a, b = robust_stats(raw), robust_stats(z)
    np.testing.assert_allclose(a.normalize(raw), b.normalize(z), atol=1e-4)
    # Downsampled by k-space truncation, both undershoot below their background; each floor is about its background
    # (the raw one's 0, the z-scored one's its background z-value), so the two LRs still normalise alike.
    def down(x: np.ndarray) -> np.ndarray:
        return KSpace().down(torch.from_numpy(x.astype(np.float32))[None, None], 4)[0, 0].numpy()

    lr_raw, lr_z = down(raw), down(z)
    assert intensity_floor(lr_raw) == 0.0 and intensity_floor(lr_z) == pytest.approx(float(z.min()), abs=0.2)
    c, d = robust_stats(lr_raw), robust_stats(lr_z)
    np.testing.assert_allclose(c.normalize(np.maximum(lr_raw, 0)), d.normalize(np.maximum(lr_z, intensity_floor(lr_z))),
                               atol=0.06)
