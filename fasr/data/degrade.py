"""Degradations that make LR (and Ref-down-up) images from HR ones, and acquisition noise.

One interface (:class:`Degradation`): ``down(hr, scale)`` gives the LR image, ``up(lr, scale)`` brings it
back to the HR grid, ``down_up`` does both (the paper's I_{Ref down-up}, Section III-A). Two kinds:

- :class:`Bicubic`: antialiased bicubic downsampling, the paper's degradation (matches PIL's ``BICUBIC``).
- :class:`KSpace`: centre crop of the 2-D Fourier spectrum (optionally windowed), how a real low-resolution MR
  acquisition of the same field of view arises.
- :class:`SliceProfile`: thick slices along one axis (the rows of a plane that contains the slice axis), each the
  slice profile (boxcar or Gaussian) of the HR rows it spans, as a 2-D multi-slice acquisition records them
  (through-plane models, ``model.through_plane``: ``up`` brings the thick rows back onto the HR grid, so the
  model's LR input and output share one grid).

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
    "SliceProfile",
    "PROFILES",
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
PROFILES = ("boxcar", "gaussian")
# Gaussian FWHM over sigma.
_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))


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

    def on_model_grid(self, lr: Tensor, scale: int) -> Tensor:
        """The acquired LR as the model takes it: as it is (in-plane models upsample it themselves)."""
        return lr


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


def profile_weights(n_hr: int, factor: int, profile: str, thickness: float) -> Tensor:
    """(n_hr // factor, n_hr) float64 weights of each thick slice over the HR rows.

    Slice ``j`` is centred at HR row ``(j + 0.5) * factor - 0.5`` (the pixel-centre convention of every
    degradation here) and spans ``thickness * factor`` HR rows: a boxcar weighs each row by its overlap with that
    span; a Gaussian has that full width at half maximum and weighs each row by its integral over the row. Rows
    outside the plane (the field of view's edge) are left out and each slice's weights renormalised to sum 1.

    Args:
        n_hr: HR rows (a multiple of ``factor``).
        factor: slice spacing in HR rows.
        profile: ``boxcar`` or ``gaussian``.
        thickness: slice thickness over slice spacing (1: contiguous slices; < 1: a gap; > 1: overlap).
    """
    if n_hr % factor:
        raise ValueError(f"{n_hr} HR rows are not a multiple of the slice spacing {factor}")
    centres = (torch.arange(n_hr // factor, dtype=torch.float64) + 0.5) * factor - 0.5  # (n,)
    lo = torch.arange(n_hr, dtype=torch.float64) - 0.5  # (N,) row edges
    lo, hi, c = lo[None, :], lo[None, :] + 1.0, centres[:, None]
    width = thickness * factor
    if profile == "boxcar":
        weights = (torch.minimum(hi, c + width / 2) - torch.maximum(lo, c - width / 2)).clamp(min=0.0)
    elif profile == "gaussian":
        z = math.sqrt(2.0) * width / _FWHM  # sigma * sqrt(2)
        weights = 0.5 * (torch.erf((hi - c) / z) - torch.erf((lo - c) / z))
    else:
        raise FasrError(f"unknown slice profile '{profile}'; choose one of {', '.join(PROFILES)}")
    return weights / weights.sum(dim=1, keepdim=True)


class SliceProfile(Degradation):
    """Thick slices along the rows (dim -2) of planes that contain the slice axis (ours: the through-plane task).

    ``down`` makes ``H / factor`` thick rows (:func:`profile_weights`); ``up`` interpolates them back onto the HR
    rows with the bicubic kernel of :func:`resize` (columns untouched). Through-plane models work on one grid
    (``model.scale: 1``), so ``scale`` must be 1 and :meth:`on_model_grid` is ``up``.

    Args:
        factor: slice spacing over the reference's spacing (an integer >= 2).
        profile: ``boxcar`` (a 2-D multi-slice acquisition's idealised excitation) or ``gaussian``.
        thickness: slice thickness over slice spacing (1: contiguous; 0.8: a 20 % gap).
    """

    def __init__(self, factor: int, profile: str = "boxcar", thickness: float = 1.0) -> None:
        if factor < 2 or profile not in PROFILES or thickness <= 0:
            raise FasrError(
                f"slice profile needs a factor >= 2, a profile in {', '.join(PROFILES)} and a thickness > 0; got "
                f"{factor}, '{profile}', {thickness}"
            )
        self.factor, self.profile, self.thickness = int(factor), profile, float(thickness)
        self.spec = f"slice:{self.factor}:{profile}" + ("" if thickness == 1.0 else f":{thickness:g}")

    @staticmethod
    def _check(scale: int) -> None:
        if scale != 1:
            raise ValueError(f"a slice profile refines one axis of a through-plane model (scale 1), not x{scale}")

    def down(self, hr: Tensor, scale: int) -> Tensor:
        self._check(scale)
        weights = profile_weights(hr.shape[-2], self.factor, self.profile, self.thickness)  # (n, H)
        return torch.einsum("nh,...hw->...nw", weights.to(hr.dtype).to(hr.device), hr)  # (..., H / factor, W)

    def up(self, lr: Tensor, scale: int) -> Tensor:
        self._check(scale)
        return resize(lr, (lr.shape[-2] * self.factor, lr.shape[-1]))

    def on_model_grid(self, lr: Tensor, scale: int) -> Tensor:
        return self.up(lr, scale)


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
    """The degradation a spec names: ``bicubic``, ``kspace``, ``kspace:hamming``, ``kspace:tukey[:alpha]``,
    ``slice:factor[:profile[:thickness]]`` (:class:`SliceProfile`).

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
    if kind == "slice" and 1 <= len(rest) <= 3:
        try:
            factor, thickness = int(rest[0]), float(rest[2]) if len(rest) == 3 else 1.0
        except ValueError:
            raise FasrError(
                f"degradation '{spec}': write slice:FACTOR[:PROFILE[:THICKNESS]], e.g. slice:4:boxcar"
            ) from None
        return SliceProfile(factor, rest[1] if len(rest) > 1 else "boxcar", thickness)
    raise FasrError(
        f"unknown degradation '{spec}'; use bicubic, kspace, kspace:hamming, kspace:tukey:0.5 or slice:4:boxcar"
    )


def nominal_spec(cfg: DegradationConfig) -> str:
    """Spec of the degradation that evaluation, validation and inference assume for ``cfg``: its ``kind`` with its
    window (or slice profile); ``random`` assumes ``kspace`` (what a scanner does), or the ``slice`` settings when
    it draws slice profiles."""
    if cfg.kind == "bicubic":
        return "bicubic"
    if cfg.kind == "slice" or (cfg.kind == "random" and _draws_slices(cfg)):
        return SliceProfile(cfg.slice_factor, cfg.slice_profile, cfg.slice_thickness).spec
    if cfg.kind in ("kspace", "random"):
        if cfg.window not in WINDOWS:
            raise FasrError(f"unknown data.degradation.window '{cfg.window}'; choose one of {', '.join(WINDOWS)}")
        return KSpace(window=cfg.window, tukey_alpha=cfg.tukey_alpha).spec
    raise FasrError(f"unknown data.degradation.kind '{cfg.kind}'; choose bicubic, kspace, slice or random")


def _draws_slices(cfg: DegradationConfig) -> bool:
    """Whether ``random`` draws slice profiles (through-plane) rather than in-plane degradations; never both."""
    slices = {spec.startswith("slice") for spec in cfg.random_kinds}
    if len(slices) > 1:
        raise FasrError(
            "data.degradation.random_kinds mixes slice profiles with in-plane degradations; a model is trained for "
            "one task: list only slice:... specs (through-plane) or only bicubic/kspace specs (in-plane)"
        )
    return slices == {True}


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

    def _each(self, method: str, x: Tensor, scale: int) -> Tensor:
        if x.shape[0] != len(self.items):
            raise ValueError(f"{len(self.items)} degradations for a batch of {x.shape[0]}")
        return torch.cat([getattr(d, method)(x[i : i + 1], scale) for i, d in enumerate(self.items)])

    def down(self, hr: Tensor, scale: int) -> Tensor:
        return self._each("down", hr, scale)

    def down_up(self, hr: Tensor, scale: int) -> Tensor:
        # item by item: slice profiles of different factors make LRs of different sizes
        return self._each("down_up", hr, scale)

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
