"""Metrics against scikit-image (both SSIM conventions) and fastMRI's formulas; masks; the two conventions."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fasr.data.types import NormStats
from fasr.scoring.conventions import FastMRIConvention, PaperConvention
from fasr.scoring.metrics import NMSE, PSNR, SSIM, foreground_mask


def _volume(seed: int = 0, shape: tuple[int, int, int] = (3, 40, 36)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth positive 'ground truth' volume and a noisy prediction (float64)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: shape[1], : shape[2]]
    gt = np.stack([200 + 800 * np.exp(-((x - 18 - k) ** 2 + (y - 20) ** 2) / 150.0) for k in range(shape[0])])
    return gt, gt + rng.normal(0, 40, shape)


def test_psnr_and_nmse_match_skimage_and_fastmri() -> None:
    gt, pred = _volume()
    r = gt.max()
    assert PSNR()(pred, gt, data_range=r) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=r), abs=1e-10)
    fastmri_nmse = np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2
    assert NMSE()(pred, gt, data_range=r) == pytest.approx(fastmri_nmse, rel=1e-12)
    assert PSNR()(gt, gt, data_range=r) == float("inf")


def test_ssim_fastmri_convention_matches_skimage_defaults() -> None:
    gt, pred = _volume()
    r = gt.max()
    expected = np.mean([structural_similarity(g, p, data_range=r) for g, p in zip(gt, pred)])  # fastMRI's ssim()
    assert SSIM.fastmri()(pred, gt, data_range=r) == pytest.approx(expected, abs=1e-10)
    assert SSIM.fastmri()(gt[0], gt[0], data_range=r) == pytest.approx(1.0)


def test_ssim_paper_convention_matches_skimage_wang_settings() -> None:
    gt, pred = _volume(1)
    gt8, pred8 = np.round(gt / gt.max() * 255), np.round(np.clip(pred / gt.max() * 255, 0, 255))
    for g, p in zip(gt8, pred8):
        expected = structural_similarity(
            g, p, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
        assert SSIM.paper()(p, g, data_range=255) == pytest.approx(expected, abs=1e-10)
    assert SSIM.paper().size == 11


def test_masked_metrics_only_see_the_foreground() -> None:
    gt, pred = _volume(2)
    mask = np.zeros(gt.shape, bool)
    mask[:, 10:30, 8:28] = True
    # huge errors outside the mask change nothing (for SSIM: outside the mask grown by the 7x7 window's radius)
    grown = np.zeros(gt.shape, bool)
    grown[:, 7:33, 5:31] = True
    pred_outside = np.where(grown, pred, pred + 1e4)
    for metric in (PSNR(), NMSE(), SSIM.fastmri()):
        assert metric(pred_outside, gt, data_range=1000.0, mask=mask) == pytest.approx(
            metric(pred, gt, data_range=1000.0, mask=mask), rel=1e-12
        )
    expected = 10 * np.log10(1000.0**2 / np.mean((pred - gt)[mask] ** 2))
    assert PSNR()(pred, gt, data_range=1000.0, mask=mask) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="mask"):
        PSNR()(pred, gt, data_range=1.0, mask=np.zeros(gt.shape, bool))
    with pytest.raises(ValueError, match="data_range"):
        PSNR()(pred, gt, data_range=0.0)


def test_foreground_mask_fills_dark_tissue_inside_the_head() -> None:
    volume = np.zeros((1, 20, 20))
    volume[0, 4:16, 4:16] = 100.0
    volume[0, 8:12, 8:12] = 1.0  # dark 'CSF' inside
    mask = foreground_mask(volume, 0.05)
    assert mask[0, 4:16, 4:16].all() and mask.sum() == 144


def test_fastmri_convention_scores_volumes_on_scanner_intensities() -> None:
    gt, pred = _volume(3)
    stats = NormStats(low=0.0, high=1200.0)
    norm = lambda v: 2 * v / 1200.0 - 1  # noqa: E731 - the inverse of stats.denormalize
    conv = FastMRIConvention()
    target, output = conv.to_images(norm(gt), stats), conv.to_images(norm(pred), stats)
    np.testing.assert_allclose(target, gt, rtol=1e-12)
    volume, slices = conv.score_volume(output, target, None)
    r = gt.max()
    assert volume["psnr"] == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=r), abs=1e-9)  # whole volume
    assert volume["ssim"] == pytest.approx(np.mean([s["ssim"] for s in slices]), abs=1e-12)
    assert slices[1]["psnr"] == pytest.approx(peak_signal_noise_ratio(gt[1], pred[1], data_range=r), abs=1e-9)
    assert conv.summarize([{"psnr": 30.0}, {"psnr": 40.0}], [{"psnr": 0.0}]) == {"psnr": 35.0}  # over volumes


def test_paper_convention_scores_8bit_slices() -> None:
    conv = PaperConvention()
    x = np.array([[[-1.0, -0.999, 0.0, 0.999, 1.0, 1.7]]])
    np.testing.assert_array_equal(conv.to_images(x, NormStats(0.0, 1.0)), [[[0, 0, 128, 255, 255, 255]]])
    gt, pred = _volume(4)
    gt8, pred8 = np.round(gt / gt.max() * 255), np.round(np.clip(pred / gt.max() * 255, 0, 255))
    volume, slices = conv.score_volume(pred8, gt8, None)
    assert slices[0]["psnr"] == pytest.approx(peak_signal_noise_ratio(gt8[0], pred8[0], data_range=255), abs=1e-9)
    assert volume["psnr"] == pytest.approx(np.mean([s["psnr"] for s in slices]), abs=1e-12)  # mean of slices
    assert conv.summarize([{"psnr": 0.0}], [{"psnr": 30.0}, {"psnr": 40.0}]) == {"psnr": 35.0}  # over slices
