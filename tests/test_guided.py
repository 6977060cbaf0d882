"""Local linear cross-contrast detail (ours, fasr/models/guided.py): exact for a reference that is a local affine
function of the target, silent for an unrelated one, fp32 under autocast."""

from __future__ import annotations

import math

import torch

from fasr.data.degrade import Bicubic
from fasr.models.guided import (
    RHO_EPS,
    STRENGTH_FLOOR,
    box_mean,
    local_linear_detail,
    local_quadratic_detail,
    squared_views,
)


def _smooth_image(seed: int, size: int = 64) -> torch.Tensor:
    """(1, 1, size, size) on about [-1, 1]: blobs with edges, so every band has content."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 1, size // 8, size // 8, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest").clamp(-1, 1)


def test_box_mean_is_the_window_mean_with_replicated_edges() -> None:
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    m = box_mean(x, 1)
    assert m.shape == x.shape
    assert float(m[0, 0, 2, 2]) == float(x[0, 0, 1:4, 1:4].mean())
    corner = torch.tensor([[0.0, 0, 1], [0, 0, 1], [5, 5, 6]])  # replicated neighbourhood of x[0, 0]
    assert abs(float(m[0, 0, 0, 0]) - float(corner.mean())) < 1e-6


def test_an_affine_reference_predicts_the_missing_band_exactly_and_noise_does_not() -> None:
    """hr = -0.7 ref + 0.1 (an inverted contrast): the fitted slope is -0.7 wherever the windows have contrast, so
    LR-up plus the prediction is the HR target there, and the fit's squared correlation is ~1 (strength > 4.5); a
    noise reference
    fits badly (its down-up is smooth, so a 5x5 window holds few independent values: chance correlation is ~0.3)."""
    deg = Bicubic()
    ref = _smooth_image(0)
    hr = -0.7 * ref + 0.1
    lr_up, ref_du = deg.down_up(hr, 4), deg.down_up(ref, 4)
    out = local_linear_detail(lr_up, ref_du, ref - ref_du, radius=2, eps=1e-8)
    pred, strength = out[:, :1], out[:, 1:]
    assert out.shape == (1, 2, 64, 64)
    contrast = box_mean((ref_du - box_mean(ref_du, 2)) ** 2, 4) > 1e-3  # slope averaged over 2 windows
    assert contrast.float().mean() > 0.3
    err_before = (hr - lr_up).abs()[contrast].mean()
    err_after = (hr - lr_up - pred).abs()[contrast].mean()
    assert err_after < 1e-3 < err_before
    assert strength[contrast].mean() > math.log((1 + STRENGTH_FLOOR) / (1 - 0.99 + STRENGTH_FLOOR))
    noise = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 2 - 1
    noise_du = deg.down_up(noise, 4)
    strength_noise = local_linear_detail(lr_up, noise_du, noise - noise_du)[:, 1:]
    assert strength_noise[contrast].mean() < math.log((1 + STRENGTH_FLOOR) / (1 - 0.5 + STRENGTH_FLOOR))
    top = math.log((1 + STRENGTH_FLOOR) / STRENGTH_FLOOR)  # at rho^2 = 1
    assert float(strength_noise.min()) >= 0 and float(strength_noise.max()) <= top + 1e-5


def _quadratic_views(ref: torch.Tensor, lr_up: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The arguments of local_quadratic_detail for a registered reference."""
    ref_du = Bicubic().down_up(ref, 4)
    return lr_up, ref_du, ref - ref_du, *squared_views(ref, Bicubic(), 4)


def test_a_quadratic_contrast_needs_the_quadratic_fit() -> None:
    """hr = 0.5 ref - 0.8 ref^2 + 0.1 (three tissues off one line, as T1 -> T2): the quadratic fit (guide_order 2)
    recovers the missing band almost exactly with strength near its top, the linear one leaves most of it; the
    quadratic fit of a linear contrast is as good as the linear fit, and a noise reference fits badly."""
    ref = torch.nn.functional.interpolate(
        torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(4)) * 2 - 1, size=(64, 64), mode="bilinear")
    for hr, exact_linear in ((0.5 * ref - 0.8 * ref**2 + 0.1, False), (-0.7 * ref + 0.1, True)):
        lr_up = Bicubic().down_up(hr, 4)
        views = _quadratic_views(ref, lr_up)
        quad = local_quadratic_detail(*views, eps=1e-8)
        lin = local_linear_detail(*views[:3], eps=1e-8)
        assert quad.shape == lin.shape == (1, 2, 64, 64)
        missing = float((hr - lr_up).abs().mean())
        err_quad, err_lin = (float((hr - lr_up - f[:, :1]).abs().mean()) for f in (quad, lin))
        assert err_quad < 0.01 * missing
        assert (err_lin < 0.01 * missing) == exact_linear
        assert float(quad[:, 1:].mean()) > 5.0  # rho^2 > 0.99 nearly everywhere
    noise = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1
    strength = local_quadratic_detail(*_quadratic_views(noise, lr_up))[:, 1:]
    top = math.log((1 + STRENGTH_FLOOR) / STRENGTH_FLOOR)
    assert float(strength.mean()) < 1.5 and float(strength.min()) >= 0 and float(strength.max()) <= top + 1e-5


def test_quadratic_fit_strength_is_exact_in_low_contrast_windows() -> None:
    """Dark tissue of low contrast (ref ~ -0.8 +- 0.05): DU(ref) and DU(ref^2) are nearly collinear, so R^2 must
    not come from float32 moments (they lose most digits there); checked against a per-window least-squares fit."""
    g = torch.Generator().manual_seed(6)
    coarse = torch.rand(1, 1, 6, 6, generator=g) * 2 - 1
    smooth = torch.nn.functional.interpolate(coarse, size=(24, 24), mode="bilinear")
    ref = -0.8 + 0.05 * smooth
    hr = 0.5 * ref - 0.8 * ref**2 + 0.002 * torch.randn(1, 1, 24, 24, generator=g)
    views = _quadratic_views(ref, Bicubic().down_up(hr, 4))
    strength = local_quadratic_detail(*views)[0, 1]
    r2 = (1 + STRENGTH_FLOOR) * (1 - torch.exp(-strength.double()))  # strength -> R^2
    lr_up, ref_du, _, sq_du, _ = (v.double() for v in views)
    cols = [torch.nn.functional.unfold(torch.nn.functional.pad(v, (2,) * 4, mode="replicate"), 5)[0].T
            for v in (lr_up, ref_du, sq_du)]  # each (H W, 25): the window around every pixel
    y, x = cols[0] - cols[0].mean(1, keepdim=True), torch.stack(cols[1:], -1)  # (H W, 25), (H W, 25, 2)
    x = x - x.mean(1, keepdim=True)
    gram = x.transpose(1, 2) @ x + 25 * RHO_EPS * torch.eye(2, dtype=torch.float64)
    coef = torch.linalg.solve(gram, x.transpose(1, 2) @ y[..., None])  # (H W, 2, 1)
    exact = ((x @ coef)[..., 0] * y).sum(1) / ((y * y).sum(1) + 25 * RHO_EPS)
    fit = exact < 0.99  # where the strength's scale is finite enough to compare
    assert fit.float().mean() > 0.5
    torch.testing.assert_close(r2.flatten()[fit], exact[fit], atol=2e-3, rtol=0)


def test_fit_runs_in_fp32_under_bf16_autocast() -> None:
    ref = _smooth_image(2)
    lr_up = Bicubic().down_up(0.5 * ref - 0.3 * ref * ref, 4)
    views = _quadratic_views(ref, lr_up)
    for fit, args in ((local_linear_detail, views[:3]), (local_quadratic_detail, views)):
        fp32 = fit(*args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            auto = fit(*(a.bfloat16() if i else a for i, a in enumerate(args)))
        assert auto.dtype == torch.float32
        torch.testing.assert_close(auto, fit(*(a.bfloat16().float() if i else a for i, a in enumerate(args))),
                                   atol=0, rtol=0)
        assert fp32.isfinite().all()


def test_the_network_free_model_is_bicubic_plus_the_fit() -> None:
    """Model ``guided`` (parameter-free): with an affine reference it recovers most of what bicubic loses."""
    from fasr.models import ModelConfig, build_model

    ref = _smooth_image(3)
    hr = 0.6 * ref - 0.2
    lr = Bicubic().down(hr, 4)
    bicubic = Bicubic().up(lr, 4)
    model = build_model(ModelConfig(name="guided", scale=4, ref_degradation="bicubic"))
    assert sum(p.numel() for p in model.parameters()) == 0
    with torch.no_grad():
        sr = model(lr, ref).sr
    assert sr.shape == hr.shape
    assert float((sr - hr).abs().mean()) < 0.5 * float((bicubic - hr).abs().mean())
    quadratic = 0.6 * ref - 0.5 * ref * ref  # off one line: only guide_order 2 recovers it
    errors = {}
    for order in (1, 2):
        model = build_model(ModelConfig(name="guided", scale=4, ref_degradation="bicubic", guide_order=order))
        with torch.no_grad():
            errors[order] = float((model(Bicubic().down(quadratic, 4), ref).sr - quadratic).abs().mean())
    assert errors[2] < 0.5 * errors[1]
