"""Degradations: bicubic against PIL, exact k-space truncation of band-limited images, windows, noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fasr.data.config import DegradationConfig
from fasr.data.degrade import Bicubic, KSpace, add_noise, build_degradation, kspace_window
from fasr.errors import FasrError


def _known_image(h: int = 64, w: int = 48) -> np.ndarray:
    """Smooth texture, a sharp-edged disc and a checkerboard corner: content at every frequency."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    image = 0.5 + 0.3 * np.sin(x / 3.0) * np.cos(y / 5.0) + 0.4 * ((x - 24) ** 2 + (y - 30) ** 2 < 150)
    image[:8, :8] += 0.2 * ((np.arange(8)[:, None] + np.arange(8)[None, :]) % 2)
    return image.astype(np.float32)


@pytest.mark.parametrize("scale", [2, 4])
def test_bicubic_matches_pil(scale: int) -> None:
    image = _known_image()
    h, w = image.shape
    pil = np.asarray(Image.fromarray(image, mode="F").resize((w // scale, h // scale), Image.BICUBIC))
    ours = Bicubic().down(torch.from_numpy(image)[None, None], scale)[0, 0].numpy()
    # Measured: max |difference| 1.8e-7 (float32 round-off); PIL's antialiased bicubic (a = -0.5).
    np.testing.assert_allclose(ours, pil, atol=1e-5)


def test_bicubic_rejects_sizes_not_divisible_by_scale() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        Bicubic().down(torch.zeros(1, 1, 10, 12), 4)


def _band_limited(h: int, w: int):
    """A trig polynomial with frequencies below the x4 LR Nyquist limit, evaluated at any (y, x)."""

    def f(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return (0.3 + 0.5 * np.cos(2 * np.pi * 3 * y / h + 0.4) * np.sin(2 * np.pi * 2 * x / w + 1.0)
                + 0.2 * np.cos(2 * np.pi * 5 * x / w - 0.3))

    return f


@pytest.mark.parametrize("scale", [2, 4])
def test_kspace_truncation_is_exact_for_band_limited_images(scale: int) -> None:
    h, w = 64, 48
    f = _band_limited(h, w)
    hr = torch.from_numpy(f(*np.mgrid[0:h, 0:w].astype(np.float64)).astype(np.float32))[None, None]
    ly, lx = np.mgrid[0 : h // scale, 0 : w // scale].astype(np.float64)
    expected = f((ly + 0.5) * scale - 0.5, (lx + 0.5) * scale - 0.5)  # the image at the LR pixel centres
    lr = KSpace(window="none").down(hr, scale)[0, 0].numpy()
    np.testing.assert_allclose(lr, expected, atol=1e-5)


def test_kspace_removes_high_frequencies_and_preserves_the_mean() -> None:
    image = torch.from_numpy(_known_image())[None, None]
    for window in ("none", "hamming", "tukey"):
        lr = KSpace(window=window).down(image, 4)
        assert lr.shape == (1, 1, 16, 12)
        assert lr.mean().item() == pytest.approx(image.mean().item(), abs=1e-5)
    # A pure Nyquist-rate checkerboard has no content the x2 LR grid can hold: it vanishes.
    checker = torch.from_numpy(((np.indices((16, 16)).sum(0) % 2) * 2.0 - 1.0).astype(np.float32))[None, None]
    assert KSpace().down(checker, 2).abs().max().item() < 1e-5


def test_kspace_windows() -> None:
    hamming = kspace_window(8, "hamming", 0.5)
    assert hamming[4].item() == pytest.approx(1.0) and hamming[0].item() == pytest.approx(0.08)
    tukey = kspace_window(8, "tukey", 0.5)
    np.testing.assert_allclose(tukey[2:7].numpy(), 1.0)  # |k| <= (1 - alpha) * n / 2 is flat
    assert tukey[0].item() == pytest.approx(0.0)
    with pytest.raises(FasrError, match="unknown k-space window"):
        KSpace(window="blackman")


def test_down_up_returns_to_the_hr_grid() -> None:
    hr = torch.from_numpy(_known_image())[None, None]
    for degradation in (Bicubic(), KSpace()):
        assert degradation.down_up(hr, 4).shape == hr.shape


def _noise_image() -> torch.Tensor:
    """(1, 1, 64, 64) on [-1, 1]: a square of magnitude 0.6 on a zero (-1) background."""
    x = torch.full((1, 1, 64, 64), -1.0)
    x[..., 16:48, 16:48] = 0.2  # magnitude (0.2 + 1) / 2 = 0.6
    return x


def test_gaussian_noise_has_the_requested_snr() -> None:
    x = _noise_image()
    noisy = add_noise(x, "gaussian", 20.0, torch.Generator().manual_seed(0))
    sigma = ((noisy - x) / 2)[..., 16:48, 16:48].std().item()  # on the magnitude scale
    assert sigma == pytest.approx(0.6 / 20.0, rel=0.1)
    again = add_noise(x, "gaussian", 20.0, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)
    assert add_noise(x, "none", 20.0, None) is x


def test_rician_noise_is_rayleigh_in_the_background() -> None:
    x = _noise_image()
    noisy = add_noise(x, "rician", 10.0, torch.Generator().manual_seed(0))
    background = ((noisy + 1) / 2)[..., :12, :].flatten()
    sigma = 0.6 / 10.0
    assert background.min().item() >= 0.0  # magnitudes
    assert background.mean().item() == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=0.1)


def test_build_degradation() -> None:
    assert isinstance(build_degradation(DegradationConfig(kind="bicubic")), Bicubic)
    kspace = build_degradation(DegradationConfig(kind="kspace", window="hamming"))
    assert isinstance(kspace, KSpace) and kspace.window == "hamming"
    with pytest.raises(FasrError, match="unknown data.degradation.kind"):
        build_degradation(DegradationConfig(kind="gaussian_blur"))
    with pytest.raises(FasrError, match="unknown data.degradation.noise"):
        build_degradation(DegradationConfig(noise="poisson"))
