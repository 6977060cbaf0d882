"""Training losses (Section III-E): L1 (Eq. 22), perceptual (Eq. 23), Fourier (Eq. 24), and their weighted
sum with the two-phase schedule (Eq. 25, Section IV-B: L1 alone for the warm-up epochs, then all terms), plus our
correspondence term for the matching branches (``loss.match_weight``, from the start of training)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from fasr.config import LossConfig
from fasr.models.backbones import SHIPPED_WEIGHTS
from fasr.models.extractor import TextureExtractor

__all__ = [
    "L1Loss",
    "PerceptualLoss",
    "FourierLoss",
    "TotalLoss",
    "LossTerms",
    "PERCEPTUAL_GRID",
    "build_loss",
]

# Grid of the ImageNet VGG19 features used by Eq. 23: 1/8 of the image, i.e. the relu4 block -- each
# feature pixel summarises an 8x8 neighbourhood, as Section III-E-2 describes. The shipped MRI network stops at
# relu3_1, so with it the term compares 1/4-grid features (ours).
PERCEPTUAL_GRID = "1/8"
SHIPPED_PERCEPTUAL_GRID = "1/4"


class L1Loss(nn.Module):
    """Eq. 22: mean absolute pixel difference."""

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        return (sr - hr).abs().mean()


class PerceptualLoss(nn.Module):
    """Eq. 23: mean squared difference of VGG19 features of SR and HR.

    The network is fixed (frozen, never the model's own trainable extractor); features are also taken with its
    weights detached, so gradient reaches the SR image only.

    Args:
        net: a frozen :class:`TextureExtractor` (the shipped MRI VGG19 or an ImageNet VGG19).
        grid: which of its grids to compare (e.g. ``"1/8"``).
    """

    def __init__(self, net: TextureExtractor, grid: str) -> None:
        super().__init__()
        self.net, self.grid = net, grid

    def features(self, x: Tensor) -> Tensor:
        """(B, 1, H, W) on [-1, 1] -> (B, C, H / f, W / f) features at ``grid``."""
        state = {**{k: v.detach() for k, v in self.net.named_parameters()}, **dict(self.net.named_buffers())}
        return functional_call(self.net, state, (x, (self.grid,)))[self.grid]

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        with torch.no_grad():
            target = self.features(hr)
        return (self.features(sr) - target).pow(2).mean()


class FourierLoss(nn.Module):
    """Eq. 24: ``||F(SR) - F(HR)||_1`` averaged over frequencies (2-D FFT of each image).

    Args:
        mode: ``complex`` compares the complex spectra (modulus of the difference, the equation as written);
            ``magnitude`` compares only the amplitude spectra (phase ignored).
        norm: ``ortho`` keeps the spectrum on the pixel scale; ``backward`` is the unnormalised FFT.
    """

    def __init__(self, mode: Literal["complex", "magnitude"], norm: Literal["ortho", "backward"]) -> None:
        super().__init__()
        self.mode, self.norm = mode, norm

    def forward(self, sr: Tensor, hr: Tensor) -> Tensor:
        # (B, 1, H, W) real -> (B, 1, H, W) complex; FFTs in fp32 even under autocast.
        f_sr = torch.fft.fft2(sr.float(), norm=self.norm)
        f_hr = torch.fft.fft2(hr.float(), norm=self.norm)
        if self.mode == "magnitude":
            return (f_sr.abs() - f_hr.abs()).abs().mean()
        return (f_sr - f_hr).abs().mean()


@dataclass(frozen=True)
class LossTerms:
    """One evaluation of the total loss: ``total`` for backward, detached ``parts`` by name for logging."""

    total: Tensor
    parts: dict[str, float]


class TotalLoss(nn.Module):
    """Eq. 25: ``w1 L1 + wp L_P + wf L_FR``, with L1 alone before ``warmup_epochs`` (Section IV-B).

    Terms with weight 0 are never computed.

    Args:
        cfg: a resolved :class:`LossConfig` (no unset weights).
        perceptual: the perceptual term, or None when its weight is 0.
    """

    def __init__(self, cfg: LossConfig, perceptual: PerceptualLoss | None) -> None:
        super().__init__()
        self.warmup_epochs = cfg.warmup_epochs
        self.l1 = L1Loss()
        self.perceptual = perceptual
        self.fourier = FourierLoss(cfg.fourier_mode, cfg.fourier_norm)
        perceptual_weight = cfg.perceptual if perceptual is not None else 0.0
        self.weights = {"l1": cfg.l1, "perceptual": perceptual_weight, "fourier": cfg.fourier}
        self.match_weight = cfg.match_weight or 0.0

    def active(self, epoch: int) -> dict[str, float]:
        """Weights of the image terms used in ``epoch`` (0-based): only L1 during the warm-up."""
        if epoch < self.warmup_epochs:
            return {"l1": self.weights["l1"]}
        return {name: w for name, w in self.weights.items() if w > 0}

    def forward(self, sr: Tensor, hr: Tensor, epoch: int, match_loss: Tensor | None = None) -> LossTerms:
        """Eq. 25 for ``epoch``, plus ``match_weight * match_loss`` when the model returned one."""
        terms = {"l1": self.l1, "perceptual": self.perceptual, "fourier": self.fourier}
        values = {name: terms[name](sr, hr) for name in self.active(epoch)}
        weights = dict(self.weights)
        if match_loss is not None and self.match_weight > 0:
            values["match"], weights["match"] = match_loss, self.match_weight
        total = sum(weights[name] * v for name, v in values.items())
        return LossTerms(total=total, parts={name: float(v.detach()) for name, v in values.items()})


def build_loss(cfg: LossConfig, feature_levels: Literal["paper", "public"]) -> tuple[TotalLoss, str]:
    """The total loss and a note of which perceptual network it uses (for log and checkpoint).

    Args:
        cfg: resolved loss config.
        feature_levels: the model config's ``feature_levels``: with an ImageNet file, ``paper`` taps relu4_2 and
            ``public`` relu4_1.

    Returns:
        ``(loss, source)``: ``source`` is ``"off"``, ``"mri-vgg19"``, ``"vgg19:<file>"``, or, when the term has a
        weight but no network, ``"off: ..."`` with the reason (the trainer logs it once).
    """
    if cfg.perceptual == 0:
        return TotalLoss(cfg, None), "off"
    weights = cfg.perceptual_weights
    if weights is None:
        return TotalLoss(cfg, None), "off: loss.perceptual_weights is null (no fixed feature network)"
    if weights in SHIPPED_WEIGHTS:
        shipped = SHIPPED_WEIGHTS[weights]["vgg19"]
        if not shipped.is_file():
            return TotalLoss(cfg, None), f"off: the shipped network '{shipped}' is not installed"
        grid, source = SHIPPED_PERCEPTUAL_GRID, "mri-vgg19"
        net = TextureExtractor("vgg19", "public", deepest=grid, weights=weights)
    else:
        net = TextureExtractor("vgg19", feature_levels, deepest=PERCEPTUAL_GRID, weights=weights)
        grid, source = PERCEPTUAL_GRID, f"vgg19:{weights}"
    net.requires_grad_(False)
    return TotalLoss(cfg, PerceptualLoss(net.eval(), grid)), source
