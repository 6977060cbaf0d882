"""Degradations that make LR (and Ref-down-up) images from HR ones, and acquisition noise.

One interface (:class:`Degradation`): ``down(hr, scale)`` gives the LR image, ``up(lr, scale)`` brings it
back to the HR grid, ``down_up`` does both (the paper's I_{Ref down-up}, Section III-A). Two kinds:

- :class:`Bicubic`: antialiased bicubic downsampling, the paper's degradation (matches PIL's ``BICUBIC``).
- :class:`KSpace`: centre crop of the 2-D Fourier spectrum (optionally windowed), how a real low-resolution MR
  acquisition of the same field of view arises.

Each degradation has a ``spec`` string (``bicubic``, ``kspace:hamming``, ``kspace:tukey:0.5``) that
:func:`degradation_from_spec` turns back into it: a training sample records the degradation its LR was drawn
with (``data.degradation.kind: random``, ours), and the model makes that sample's Ref-down-up with the same one
(:class:`PerSample` applies one degradation per batch item).

Both place LR pixel ``j`` at HR coordinate ``(j + 0.5) * scale - 0.5`` (pixel centres, the convention of
``up`` and of :func:`fasr.data.geometry.sr_affine`), so LR-up and HR are aligned. Noise
(:func:`add_noise`) is kept out of :class:`Degradation`: it belongs to the LR acquisition, while Ref-down-up
only mimics the LR's resolution.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from fasr.data.config import DegradationConfig
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.errors import FasrError

__all__ = [
    "Degradation",
    "Bicubic",
    "KSpace",
    "resize",
    "kspace_window",
    "add_noise",
    "build_degradation",
    "degradation_from_spec",
    "nominal_spec",
    "PerSample",
    "DrawnDegradation",
    "draw_degradation",
    "WINDOWS",
    "NOISES",
]

WINDOWS = ("none", "hamming", "tukey")
NOISES = ("none", "gaussian", "rician")


def resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Bicubic resize of (B, C, H, W) with antialiasing when shrinking (like PIL / MATLAB imresize)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=shrink)


def _lr_size(hr: Tensor, scale: int) -> tuple[int, int]:
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} is not divisible by scale {scale}")
    return h // scale, w // scale


class Degradation:
    """Base class: subclasses implement :meth:`down` and :attr:`spec`; :meth:`up` is bicubic."""

    spec: str = ""

    def down(self, hr: Tensor, scale: int) -> Tensor:
        raise NotImplementedError

    def up(self, lr: Tensor, scale: int) -> Tensor:
        return resize(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))

    def down_up(self, hr: Tensor, scale: int) -> Tensor:
        return self.up(self.down(hr, scale), scale)


class Bicubic(Degradation):
    """Antialiased bicubic downsampling (the paper's degradation)."""

    spec = "bicubic"

    def down(self, hr: Tensor, scale: int) -> Tensor:
        return resize(hr, _lr_size(hr, scale))


def kspace_window(n: int, window: str, tukey_alpha: float) -> Tensor:
    """(n,) weights over a centred spectrum axis of length ``n`` (DC at index ``n // 2`` has weight 1).

    Args:
        n: number of frequencies kept.
        window: ``none``, ``hamming`` (0.54 + 0.46 cos) or ``tukey`` (flat centre, cosine taper).
        tukey_alpha: tapered fraction of the tukey window (0: box, 1: Hann).
    """
    radius = (torch.arange(n, dtype=torch.float64) - n // 2).abs() / (n / 2)  # 0 at DC, 1 at the edge
    if window == "none":
        return torch.ones(n, dtype=torch.float64)
    if window == "hamming":
        return 0.54 + 0.46 * torch.cos(math.pi * radius)
    if window == "tukey":
        if tukey_alpha <= 0:
            return torch.ones(n, dtype=torch.float64)
        taper = ((radius - (1 - tukey_alpha)) / tukey_alpha).clamp(min=0.0)
        return 0.5 * (1 + torch.cos(math.pi * taper))
    raise FasrError(f"unknown k-space window '{window}'; choose one of {', '.join(WINDOWS)}")


class KSpace(Degradation):
    """Low resolution by k-space truncation: keep the centre ``1/scale`` of the 2-D centred spectrum.

    Exact for band-limited images (no energy at or above the LR Nyquist frequency): LR pixel ``j`` equals the
    image at HR coordinate ``(j + 0.5) * scale - 0.5`` (a linear phase ramp moves the samples to the pixel
    centres). Intensities are scaled by ``(h * w) / (H * W)`` so the mean (the DC term) is preserved.

    Args:
        window: ``none``, ``hamming`` or ``tukey`` apodisation of the kept spectrum (less ringing, more blur).
        tukey_alpha: tapered fraction of the tukey window.
    """

    def __init__(self, window: str = "none", tukey_alpha: float = 0.5) -> None:
        kspace_window(2, window, tukey_alpha)  # validates the name
        self.window = window
        self.tukey_alpha = tukey_alpha
        self.spec = "kspace" + {"none": "", "hamming": ":hamming", "tukey": f":tukey:{tukey_alpha:g}"}[window]

    def _axis_filter(self, n_hr: int, n_lr: int, scale: int) -> Tensor:
        """(n_lr,) complex window times phase ramp for one axis of the cropped spectrum."""
        freq = torch.arange(n_lr, dtype=torch.float64) - n_lr // 2  # cycles per HR field of view
        shift = (scale - 1) / 2  # HR pixels from the DFT sample j * scale to the LR pixel centre
        phase = torch.polar(torch.ones_like(freq), 2 * math.pi * freq * shift / n_hr)
        return phase * kspace_window(n_lr, self.window, self.tukey_alpha)

    def down(self, hr: Tensor, scale: int) -> Tensor:
        (h, w), (lh, lw) = hr.shape[-2:], _lr_size(hr, scale)
        spectrum = torch.fft.fftshift(torch.fft.fft2(hr.float()), dim=(-2, -1))  # (..., H, W), DC at (H//2, W//2)
        top, left = h // 2 - lh // 2, w // 2 - lw // 2
        kept = spectrum[..., top : top + lh, left : left + lw]  # (..., h, w), DC at (h//2, w//2)
        rows, cols = self._axis_filter(h, lh, scale), self._axis_filter(w, lw, scale)
        kept = kept * (rows[:, None] * cols[None, :]).to(device=kept.device, dtype=kept.dtype)  # (h, w) filter
        lr = torch.fft.ifft2(torch.fft.ifftshift(kept, dim=(-2, -1))).real * (lh * lw / (h * w))
        return lr.to(hr.dtype)


def add_noise(x: Tensor, kind: str, snr: float, generator: torch.Generator | None) -> Tensor:
    """Add acquisition noise to images on the [-1, 1] scale (background at -1).

    Noise is added to the magnitude ``m = (x + 1) / 2`` (background 0) with ``sigma = mean(m over content) /
    snr`` per image (content: above :data:`fasr.data.normalize.FOREGROUND_LEVEL`). ``gaussian`` adds real
    noise; ``rician`` takes ``|m + n1 + i n2|``, the magnitude of complex noise, as in MR magnitude images.

    Args:
        x: (B, C, H, W) images.
        kind: ``none``, ``gaussian`` or ``rician``.
        snr: mean content magnitude over the noise standard deviation.
        generator: random source (None: torch's global generator).
    """
    if kind == "none":
        return x
    if kind not in NOISES:
        raise FasrError(f"unknown noise '{kind}'; choose one of {', '.join(NOISES)}")
    if snr <= 0:
        raise FasrError(f"noise snr must be > 0, got {snr}")
    magnitude = (x + 1) / 2
    content = (x > FOREGROUND_LEVEL).to(x.dtype)
    mean = (magnitude * content).sum(dim=(-2, -1), keepdim=True) / content.sum(dim=(-2, -1), keepdim=True).clamp(min=1)
    sigma = mean / snr  # (B, C, 1, 1)
    real = magnitude + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if kind == "gaussian":
        noisy = real
    else:
        imag = sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        noisy = torch.sqrt(real**2 + imag**2)
    return 2 * noisy - 1


def degradation_from_spec(spec: str) -> Degradation:
    """The degradation a spec names: ``bicubic``, ``kspace``, ``kspace:hamming``, ``kspace:tukey[:alpha]``.

    Args:
        spec: the name, as :attr:`Degradation.spec` writes it.
    """
    kind, *rest = spec.split(":")
    if kind == "bicubic" and not rest:
        return Bicubic()
    if kind == "kspace" and len(rest) <= 2:
        window = rest[0] if rest else "none"
        if window not in WINDOWS or (len(rest) == 2 and window != "tukey"):
            raise FasrError(f"degradation '{spec}': the k-space window is one of {', '.join(WINDOWS)}")
        try:
            alpha = float(rest[1]) if len(rest) == 2 else 0.5
        except ValueError:
            raise FasrError(f"degradation '{spec}': the tukey taper must be a number, e.g. kspace:tukey:0.5") from None
        return KSpace(window=window, tukey_alpha=alpha)
    raise FasrError(f"unknown degradation '{spec}'; use bicubic, kspace, kspace:hamming or kspace:tukey:0.5")


def nominal_spec(cfg: DegradationConfig) -> str:
    """Spec of the degradation that evaluation, validation and inference assume for ``cfg``: its ``kind`` with its
    window; ``random`` assumes ``kspace`` (what a scanner does)."""
    if cfg.kind == "bicubic":
        return "bicubic"
    if cfg.kind in ("kspace", "random"):
        if cfg.window not in WINDOWS:
            raise FasrError(f"unknown data.degradation.window '{cfg.window}'; choose one of {', '.join(WINDOWS)}")
        return KSpace(window=cfg.window, tukey_alpha=cfg.tukey_alpha).spec
    raise FasrError(f"unknown data.degradation.kind '{cfg.kind}'; choose bicubic, kspace or random")


def build_degradation(cfg: DegradationConfig) -> Degradation:
    """The nominal :class:`Degradation` of ``cfg`` (:func:`nominal_spec`; noise is applied separately, see
    :func:`add_noise`, and training draws of ``random`` come from :func:`draw_degradation`).

    Args:
        cfg: degradation section of the data config.
    """
    if cfg.noise not in NOISES:
        raise FasrError(f"unknown data.degradation.noise '{cfg.noise}'; choose one of {', '.join(NOISES)}")
    if cfg.kind == "random":
        if not cfg.random_kinds:
            raise FasrError("data.degradation.random_kinds is empty; list the degradations to draw from")
        for spec in cfg.random_kinds:
            degradation_from_spec(spec)
    if any(cfg.snr_range) and not 0 < cfg.snr_range[0] <= cfg.snr_range[1]:
        raise FasrError(f"data.degradation.snr_range must be (low, high) with 0 < low <= high, got {cfg.snr_range}")
    if not 0.0 <= cfg.noise_prob <= 1.0:
        raise FasrError(f"data.degradation.noise_prob must be in [0, 1], got {cfg.noise_prob}")
    return degradation_from_spec(nominal_spec(cfg))


class PerSample(Degradation):
    """One degradation per batch item (item ``i`` of every input goes through ``items[i]``).

    Args:
        items: the degradations, in batch order.
    """

    def __init__(self, items: list[Degradation]) -> None:
        self.items = items
        self.spec = ",".join(d.spec for d in items)

    def down(self, hr: Tensor, scale: int) -> Tensor:
        if hr.shape[0] != len(self.items):
            raise ValueError(f"{len(self.items)} degradations for a batch of {hr.shape[0]}")
        return torch.cat([d.down(hr[i : i + 1], scale) for i, d in enumerate(self.items)])

    @classmethod
    def of(cls, specs: list[str]) -> Degradation:
        """The degradation of a batch whose items were made with ``specs`` (one object when they agree)."""
        if len(set(specs)) == 1:
            return degradation_from_spec(specs[0])
        return cls([degradation_from_spec(s) for s in specs])


class DrawnDegradation(NamedTuple):
    """One sample's LR acquisition: its resolution loss and its noise."""

    degradation: Degradation
    noise: str
    snr: float


def draw_degradation(cfg: DegradationConfig, train: bool, generator: torch.Generator | None) -> DrawnDegradation:
    """One sample's degradation and noise under ``cfg``.

    Training samples of ``random`` draw their degradation uniformly from ``cfg.random_kinds`` (ours: degradation
    randomisation), get noise with probability ``cfg.noise_prob`` and draw the SNR log-uniformly in
    ``cfg.snr_range`` when it is set; evaluation always gets the nominal degradation, noise at ``snr``.

    Args:
        cfg: degradation section of the data config.
        train: whether this is a training sample.
        generator: random source (None: torch's global generator).
    """
    nominal = build_degradation(cfg)
    if not train:
        return DrawnDegradation(nominal, cfg.noise, cfg.snr)
    degradation = nominal
    if cfg.kind == "random":
        pick = int(torch.randint(len(cfg.random_kinds), (1,), generator=generator))
        degradation = degradation_from_spec(cfg.random_kinds[pick])
    noise, snr = cfg.noise, cfg.snr
    if noise != "none" and cfg.noise_prob < 1.0 and float(torch.rand(1, generator=generator)) >= cfg.noise_prob:
        noise = "none"
    if noise != "none" and any(cfg.snr_range):
        low, high = cfg.snr_range
        u = float(torch.rand(1, generator=generator))
        snr = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
    return DrawnDegradation(degradation, noise, snr)
