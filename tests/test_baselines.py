"""Baselines: odd sizes, gradients, the global bicubic residual, reference use, Swin window masking, sizes."""

from __future__ import annotations

import pytest
import torch

from fasr.data.degrade import Bicubic
from fasr.errors import FasrError
from fasr.models import ModelConfig, build_model
from fasr.models.baselines.common import prime_factors
from fasr.models.baselines.minet import LayerAttention
from fasr.models.baselines.swinir import (
    SwinIR,
    SwinLayer,
    relative_position_index,
    shift_mask,
    window_merge,
    window_partition,
)

LEARNED = ["edsr", "swinir", "mcsr", "minet"]
SINGLE_IMAGE = ["bicubic", "edsr", "swinir"]
MULTI_CONTRAST = ["mcsr", "minet", "masa"]
# Parameter counts at n_feats=64, scale 4 (the table in docs/baselines.md).
PARAMS = {"bicubic": 0, "edsr": 924_417, "swinir": 744_592, "mcsr": 298_434, "minet": 1_285_303, "masa": 2_105_729}


def make_model(name: str, scale: int = 4, n_feats: int = 64) -> torch.nn.Module:
    torch.manual_seed(0)
    extra = {"n_feats": n_feats} if name != "bicubic" else {}  # bicubic has no width (any other field is an error)
    return build_model(ModelConfig(name=name, scale=scale, **extra))


def inputs(h: int, w: int, scale: int, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, ...]:
    """LR target, HR reference and HR target on [-1, 1]: random phases of low-frequency sinusoids.

    Returns:
        lr (B, 1, h, w) = bicubic downsampling of hr; ref and hr (B, 1, h * scale, w * scale).
    """
    g = torch.Generator().manual_seed(seed)
    phase = torch.rand(batch, 2, generator=g) * 6.28
    y = torch.linspace(0, 1, h * scale)[:, None]
    x = torch.linspace(0, 1, w * scale)[None, :]

    def field(k: float) -> torch.Tensor:
        img = torch.sin(k * x + phase[:, 0, None, None]) * torch.cos(k * y + phase[:, 1, None, None])
        return 0.8 * img[:, None]  # (B, 1, H, W)

    hr = field(9.0)
    return Bicubic().down(hr, scale), field(7.0), hr


def trained(name: str, steps: int = 3) -> torch.nn.Module:
    """A small model after a few Adam steps (so that no layer is still at its zero initialisation), in eval mode."""
    model = make_model(name, n_feats=16)
    lr, ref, hr = inputs(6, 6, 4, seed=2)
    parameters = list(model.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3) if parameters else None
    for _ in range(steps if optimizer else 0):
        optimizer.zero_grad()
        (model(lr, ref).sr - hr).abs().mean().backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("name", LEARNED)
@pytest.mark.parametrize("scale", [4, 3])
def test_forward_backward_odd_sizes(name: str, scale: int) -> None:
    """Odd LR sizes give (h*s, w*s) outputs, and within three Adam steps the gradient reaches every parameter
    (the zero-initialised output layer first, the layers before it from the second step)."""
    model = make_model(name, scale=scale, n_feats=16)
    lr, ref, hr = inputs(7, 9, scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    reached: set[str] = set()
    for _ in range(3):
        optimizer.zero_grad()
        out = model(lr, ref)
        assert out.sr.shape == (2, 1, 7 * scale, 9 * scale)
        assert out.attention == {} and out.confidence is None
        (out.sr - hr).abs().mean().backward()
        for key, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), key
            if p.grad.abs().sum() > 0:
                reached.add(key)
        optimizer.step()
    missed = {key for key, _ in model.named_parameters()} - reached
    # Only a channel-attention bottleneck whose ReLU unit is inactive for every input may stay untouched.
    assert all(".gate." in key for key in missed), missed


@pytest.mark.parametrize("name", [*LEARNED, "masa"])
def test_untrained_model_is_bicubic_and_training_moves_it(name: str) -> None:
    """The global residual with a zero-initialised output layer: bicubic at step 0, closer to HR after training."""
    model = make_model(name, n_feats=16)
    lr, ref, hr = inputs(6, 8, 4)
    bicubic = Bicubic().up(lr, 4)
    with torch.no_grad():
        assert torch.equal(model(lr, ref).sr, bicubic)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        optimizer.zero_grad()
        (model(lr, ref).sr - hr).abs().mean().backward()
        optimizer.step()
    with torch.no_grad():
        assert (model(lr, ref).sr - hr).abs().mean() < (bicubic - hr).abs().mean()


def test_bicubic_model_equals_degradation_up() -> None:
    model = make_model("bicubic")
    lr, ref, _ = inputs(9, 7, 4)
    assert torch.equal(model(lr, ref).sr, Bicubic().up(lr, 4))
    assert sum(p.numel() for p in model.parameters()) == 0


@pytest.mark.parametrize("name", SINGLE_IMAGE)
def test_single_image_models_ignore_reference(name: str) -> None:
    model = trained(name)
    lr, ref, _ = inputs(6, 6, 4)
    with torch.no_grad():
        assert torch.equal(model(lr, ref).sr, model(lr, -ref).sr)


@pytest.mark.parametrize("name", MULTI_CONTRAST)
def test_multi_contrast_models_use_reference(name: str) -> None:
    model = trained(name)
    lr, ref, _ = inputs(6, 6, 4)
    with torch.no_grad():
        assert (model(lr, ref).sr - model(lr, -ref).sr).abs().max() > 1e-5


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts(name: str) -> None:
    assert sum(p.numel() for p in make_model(name).parameters()) == PARAMS[name]


def test_layer_attention_mixes_stages_by_correlation() -> None:
    attention = LayerAttention()
    x = torch.randn(2, 3, 4, 5, 6)  # (B, N stages, C, H, W)
    assert torch.equal(attention(x), x.reshape(2, 12, 5, 6))  # gain 0 at init: the stages, concatenated
    with torch.no_grad():
        attention.gamma.fill_(0.5)
    same = x[:, :1].expand(-1, 3, -1, -1, -1)  # identical stages: uniform weights, each output = 1.5 x
    assert torch.allclose(attention(same), 1.5 * same.reshape(2, 12, 5, 6), atol=1e-6)


def test_prime_factors() -> None:
    assert prime_factors(4) == [2, 2]
    assert prime_factors(6) == [2, 3]
    assert prime_factors(7) == [7]


def test_window_partition_round_trip() -> None:
    x = torch.arange(2 * 16 * 24 * 3, dtype=torch.float32).view(2, 16, 24, 3)
    windows = window_partition(x, 8)
    assert windows.shape == (2 * 2 * 3, 64, 3)
    # The first window holds the top-left 8x8 block in row-major order.
    assert torch.equal(windows[0].view(8, 8, 3), x[0, :8, :8])
    assert torch.equal(window_merge(windows, 8, 16, 24), x)


def test_relative_position_index_covers_table() -> None:
    index = relative_position_index(4)
    assert index.shape == (16, 16)
    assert index.min() == 0 and index.max() == 7 * 7 - 1
    assert (index.diagonal() == 3 * 7 + 3).all()  # zero offset sits in the middle of the table
    assert index[0, 15] == 0 and index[15, 0] == 7 * 7 - 1


def test_shift_mask_separates_wrapped_regions() -> None:
    mask = shift_mask(16, 16, window=8, shift=4)
    assert mask.shape == (4, 64, 64)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert torch.isinf(mask[3]).float().mean() == 1 - 4 * (16 / 64) ** 2  # bottom-right window: four regions


def test_shifted_layer_does_not_attend_across_the_wrap() -> None:
    """After the cyclic roll, pixels from opposite image borders share a window but must not interact."""
    torch.manual_seed(0)
    layer = SwinLayer(dim=8, heads=2, window=8, shift=4, mlp_ratio=2.0).eval()
    x = torch.randn(1, 16, 16, 8)
    poked = x.clone()
    poked[0, 0, 0] += 5.0 * torch.randn(8)  # not a constant: LayerNorm would remove that
    with torch.no_grad():
        delta = (layer(poked) - layer(x)).abs().sum(-1)[0]  # (16, 16)
    assert delta[3, 3] > 1e-4  # same window and region as (0, 0) after the roll
    assert delta[15, 15] == 0  # same window, other side of the wrap: masked
    assert delta[8, 8] == 0  # another window


def test_swinir_rejects_width_not_divisible_by_heads() -> None:
    with pytest.raises(FasrError, match="n_feats"):
        SwinIR(scale=4, n_feats=30)
