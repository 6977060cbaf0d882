"""Losses (Eqs. 22-25): zero for identical images, gradients that point away from HR, the two-phase switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fasr.config import LossConfig
from fasr.models.backbones import SHIPPED_WEIGHTS, VGG19
from fasr.models.extractor import TextureExtractor
from fasr.training.losses import FourierLoss, L1Loss, PerceptualLoss, build_loss


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 1, 32, 32, generator=g) * 2 - 1
    sr = (hr + 0.1 * torch.randn(2, 1, 32, 32, generator=g)).requires_grad_(True)
    return sr, hr


def _losses() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {
        "l1": L1Loss(),
        "perceptual": PerceptualLoss(TextureExtractor("vgg19", "public", deepest="1/4"), "1/4"),
        "fourier-complex": FourierLoss("complex", "ortho"),
        "fourier-magnitude": FourierLoss("magnitude", "backward"),
    }


@pytest.mark.parametrize("name", list(_losses()))
def test_zero_for_identical_images(name: str) -> None:
    _, hr = _pair()
    assert float(_losses()[name](hr.clone(), hr)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", list(_losses()))
def test_gradient_points_away_from_hr(name: str) -> None:
    """A gradient-descent step moves SR towards HR: <grad, SR - HR> > 0 and the loss drops."""
    sr, hr = _pair()
    if name == "fourier-magnitude":  # phase-blind: perturb along the image itself (amplitude changes)
        sr = (1.1 * hr).requires_grad_(True)
    loss_fn = _losses()[name]
    loss = loss_fn(sr, hr)
    (grad,) = torch.autograd.grad(loss, sr)
    assert float((grad * (sr.detach() - hr)).sum()) > 0
    stepped = sr.detach() - 1e-3 * grad / grad.norm()
    assert float(loss_fn(stepped, hr)) < loss.item()


def test_l1_gradient_sign_per_pixel() -> None:
    sr, hr = _pair()
    (grad,) = torch.autograd.grad(L1Loss()(sr, hr), sr)
    assert torch.equal(torch.sign(grad), torch.sign(sr - hr).detach())


def test_fourier_modes_and_normalisation() -> None:
    """Complex mode sees a pure shift (same amplitudes, new phase); magnitude mode does not. Ortho = pixel scale."""
    _, hr = _pair()
    shifted = torch.roll(hr, shifts=3, dims=-1)
    assert float(FourierLoss("magnitude", "ortho")(shifted, hr)) == pytest.approx(0.0, abs=1e-5)
    assert float(FourierLoss("complex", "ortho")(shifted, hr)) > 0.1
    delta = torch.zeros_like(hr)
    delta[..., 5, 7] = 1.0  # a unit spike has a flat spectrum: |F| = 1/sqrt(HW) (ortho) or 1 (backward)
    assert float(FourierLoss("complex", "ortho")(hr + delta, hr)) == pytest.approx(1 / 32, rel=1e-5)
    assert float(FourierLoss("complex", "backward")(hr + delta, hr)) == pytest.approx(1.0, rel=1e-5)


def test_perceptual_loss_does_not_train_the_extractor() -> None:
    net = TextureExtractor("vgg19", "public", deepest="1/2")
    sr, hr = _pair()
    PerceptualLoss(net, "1/2")(sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_two_phase_switch_at_the_configured_epoch() -> None:
    cfg = LossConfig(preset="paper", warmup_epochs=3).resolved()
    loss, source = build_loss(cfg, "public")
    assert source == "mri-vgg19" and not any(p.requires_grad for p in loss.perceptual.parameters())
    sr, hr = _pair()
    for epoch in range(3):
        assert set(loss(sr, hr, epoch).parts) == {"l1"}
    terms = loss(sr, hr, 3)
    assert set(terms.parts) == {"l1", "perceptual", "fourier"}
    assert terms.total.item() == pytest.approx(sum(terms.parts.values()), rel=1e-5)  # paper: all weights 1


def test_public_preset_weights_and_zero_terms_are_skipped() -> None:
    cfg = LossConfig(preset="public", warmup_epochs=0).resolved()
    assert (cfg.l1, cfg.perceptual, cfg.fourier, cfg.fourier_mode) == (1.0, 0.0, 1e-4, "magnitude")
    loss, source = build_loss(cfg, "public")
    sr, hr = _pair()
    terms = loss(sr, hr, 0)
    assert source == "off" and set(terms.parts) == {"l1", "fourier"}
    assert terms.total.item() == pytest.approx(terms.parts["l1"] + 1e-4 * terms.parts["fourier"], rel=1e-5)
    assert LossConfig(preset="public", fourier=0.5).resolved().fourier == 0.5  # explicit values win


def test_perceptual_from_a_torchvision_vgg19_file(tmp_path: Path) -> None:
    torch.save(VGG19(last="relu5_4").state_dict(), tmp_path / "vgg19.pth")  # torchvision key layout
    cfg = LossConfig(preset="paper", warmup_epochs=0, perceptual_weights=str(tmp_path / "vgg19.pth")).resolved()
    loss, source = build_loss(cfg, "public")
    assert source == f"vgg19:{tmp_path / 'vgg19.pth'}"
    sr, hr = _pair()
    assert loss(sr, hr, 0).parts["perceptual"] > 0


def test_perceptual_without_a_network_is_off_and_says_so(tmp_path: Path, monkeypatch) -> None:
    """No fixed network: the term is off (never the model's own extractor) and the source says why."""
    loss, source = build_loss(LossConfig(preset="paper", perceptual_weights=None).resolved(), "public")
    assert loss.perceptual is None and source.startswith("off: loss.perceptual_weights is null")
    monkeypatch.setitem(SHIPPED_WEIGHTS["mri"], "vgg19", tmp_path / "absent.pth")
    loss, source = build_loss(LossConfig(preset="paper").resolved(), "public")
    assert loss.perceptual is None and "not installed" in source
    sr, hr = _pair()
    assert set(loss(sr, hr, 20).parts) == {"l1", "fourier"}


def test_match_term_is_weighted_and_active_from_the_first_epoch() -> None:
    cfg = LossConfig(preset="ours", perceptual_weights=None, warmup_epochs=5).resolved()
    assert cfg.match_weight > 0 and LossConfig(preset="paper").resolved().match_weight == 0
    loss, _ = build_loss(cfg, "public")
    sr, hr = _pair()
    terms = loss(sr, hr, 0, match_loss=torch.tensor(2.0))
    assert set(terms.parts) == {"l1", "match"}
    assert terms.total.item() == pytest.approx(terms.parts["l1"] + cfg.match_weight * 2.0, rel=1e-5)
