"""Degradations that make LR (and Ref-down-up) images from HR ones, and acquisition noise.

One interface (:class:`Degradation`): ``down(hr, scale)`` gives the LR image, ``up(lr, scale)`` brings it
back to the HR grid, ``down_up`` does both (the paper's I_{Ref down-up}, Section III-A). Two kinds:

- :class:`Bicubic`: antialiased bicubic downsampling, the paper's degradation (matches PIL's ``BICUBIC``).
- :class:`KSpace`: centre crop of the 2-D Fourier spectrum (optionally windowed), how a real low-resolution MR
  acquisition of the same field of view arises.

Both place LR pixel ``j`` at HR coordinate ``(j + 0.5) * scale - 0.5`` (pixel centres, the convention of
``up`` and of :func:`fasr.data.geometry.sr_affine`), so LR-up and HR are aligned. Noise
(:func:`add_noise`) is kept out of :class:`Degradation`: it belongs to the LR acquisition, while Ref-down-up
only mimics the LR's resolution.
"""

from __future__ import annotations

import math

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
    """Base class: subclasses implement :meth:`down`; :meth:`up` is bicubic."""

    def down(self, hr: Tensor, scale: int) -> Tensor:
        raise NotImplementedError

    def up(self, lr: Tensor, scale: int) -> Tensor:
        return resize(lr, (lr.shape[-2] * scale, lr.shape[-1] * scale))

    def down_up(self, hr: Tensor, scale: int) -> Tensor:
        return self.up(self.down(hr, scale), scale)


class Bicubic(Degradation):
    """Antialiased bicubic downsampling (the paper's degradation)."""

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


def build_degradation(cfg: DegradationConfig) -> Degradation:
    """The :class:`Degradation` named by ``cfg.kind`` (noise is applied separately, see :func:`add_noise`).

    Args:
        cfg: degradation section of the data config.
    """
    if cfg.noise not in NOISES:
        raise FasrError(f"unknown data.degradation.noise '{cfg.noise}'; choose one of {', '.join(NOISES)}")
    if cfg.kind == "bicubic":
        return Bicubic()
    if cfg.kind == "kspace":
        if cfg.window not in WINDOWS:
            raise FasrError(f"unknown data.degradation.window '{cfg.window}'; choose one of {', '.join(WINDOWS)}")
        return KSpace(window=cfg.window, tukey_alpha=cfg.tukey_alpha)
    raise FasrError(f"unknown data.degradation.kind '{cfg.kind}'; choose bicubic or kspace")
