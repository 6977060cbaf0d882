"""From a normalised slice pair to a :class:`PairedSample`: fixed slice size, LR and Ref-down-up by the
configured degradation, and (training) an aligned random crop with joint flips/rotations.

Order of operations: pad/crop the whole slice to the canvas -> LR = noise(down(HR)) of the whole slice (training
samples of ``data.degradation.kind: random`` draw their degradation and noise) -> (optional) take the reference
slice from a rigidly moved reference volume (``data.motion``) and/or misalign the whole reference -> crop
HR/Ref at a random corner that is a multiple of the scale and LR
at that corner / scale -> the same flip/rotation for all. Degrading whole slices before cropping keeps k-space
truncation free of wrap-around at crop borders. The model makes I_Ref-down-up itself from the reference it is
given (``model.ref_degradation``, by default the LR's degradation).

Training samples also carry the true correspondence: for every HR pixel of the target and of the reference, the
canvas coordinates (y, x) of the anatomy it shows (``hr_coords`` / ``ref_coords``), carried through the same
misalignment, crop and flips as the images; reference pixels warped in from outside the slice hold
:data:`INVALID_COORD`, far from every canvas position.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from fasr.data.augment import (
    canvas_size,
    dihedral,
    fit_offset,
    misalign,
    place,
    random_crop_offset,
    random_motion,
    rigid_plane,
)
from fasr.data.config import DataConfig, DegradationConfig
from fasr.data.degrade import Degradation, SliceProfile, add_noise, degradation_from_spec, draw_degradation
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.data.types import NormStats, PairedSample
from fasr.errors import FasrError

__all__ = [
    "RawSlice", "SampleMaker", "degrade_lr", "fit_pair", "check_stored_lr", "lr_on_canvas", "INVALID_COORD",
    "canvas_coords",
]

# Random crops tried before accepting one with less content than ``min_foreground``.
_CROP_TRIES = 10
# Coordinate of a reference pixel that shows no target anatomy (far from every canvas position).
INVALID_COORD = 1.0e4


def canvas_coords(size: tuple[int, int]) -> Tensor:
    """(1, 2, H, W) float32 (y, x) pixel coordinates of a canvas."""
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return torch.stack([ys, xs]).float()[None]


def degrade_lr(
    hr: Tensor, scale: int, degradation: Degradation, noise: str, snr: float, generator: torch.Generator | None
) -> Tensor:
    """LR target: ``degradation.down`` then acquisition noise.

    Args:
        hr: (B, 1, H, W) HR targets on [-1, 1].
        scale: LR factor.
        degradation: resolution loss.
        noise / snr: noise kind and level (``fasr.data.degrade.add_noise``).
        generator: random source for the noise (None: torch's global generator).
    """
    return add_noise(degradation.down(hr, scale), noise, snr, generator)


def fit_pair(hr: Tensor, ref: Tensor, slice_size: int, multiple: int) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Target and reference (N, 1, H, W) centred on the canvas (``slice_size``, or native rounded up to
    ``multiple``); returns them with the offset of the slices on the canvas."""
    size = canvas_size(tuple(hr.shape[-2:]), slice_size, multiple)
    offset = fit_offset(tuple(hr.shape[-2:]), size, multiple)
    return place(hr, size, offset), place(ref, size, offset), offset


def check_stored_lr(lr_shape: tuple[int, ...], hr_shape: tuple[int, ...], scale: int, subject: str) -> None:
    """A stored LR slice must be the HR slice divided by ``scale`` (both in-plane axes).

    Raises:
        FasrError: it is not.
    """
    if tuple(n * scale for n in lr_shape[-2:]) != tuple(hr_shape[-2:]):
        raise FasrError(
            f"subject '{subject}': stored LR slice is {tuple(lr_shape[-2:])} but HR is {tuple(hr_shape[-2:])}, not "
            f"x{scale}; give LR = HR / scale"
        )


def lr_on_canvas(
    hr: Tensor, stored: Tensor | None, offset: tuple[int, int], scale: int, degradation: Degradation, noise: str,
    snr: float, generator: torch.Generator | None, subject: str,
) -> Tensor:
    """The LR target of canvas slices ``hr`` (N, 1, H, W): the stored LR (N, 1, h, w) placed at ``offset / scale``
    when the dataset has one, else ``degrade_lr(hr)``.

    ``stored`` must have passed :func:`check_stored_lr`.
    """
    if stored is None:  # through-plane models take the thick rows interpolated back onto the HR grid
        return degradation.on_model_grid(degrade_lr(hr, scale, degradation, noise, snr, generator), scale)
    return place(stored, (hr.shape[-2] // scale, hr.shape[-1] // scale), (offset[0] // scale, offset[1] // scale))


class RawSlice(NamedTuple):
    """One normalised slice pair as a source hands it out.

    Attributes:
        target: (H, W) HR target on [-1, 1].
        reference: (H, W) HR reference on the target grid, on [-1, 1].
        lr: (H / scale, W / scale) stored LR target (on the target's scale), or None to degrade ``target``.
        subject: subject id.
        slice_index: slice number in the subject's volume.
        target_stats / ref_stats: the volumes' normalisation.
        ref_volume: (Z, H, W) the whole normalised reference stack the slice comes from (for ``data.motion``), or
            None (2-D sources, caches).
        spacing: (dz, dy, dx) voxel size of that stack in mm.
    """

    target: np.ndarray
    reference: np.ndarray
    lr: np.ndarray | None
    subject: str
    slice_index: int
    target_stats: NormStats
    ref_stats: NormStats
    ref_volume: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)


class SampleMaker:
    """Builds samples for one split: whole slices (evaluation) or random patches (training).

    Args:
        scale: LR factor.
        degradation: makes LR and Ref-down-up.
        noise / snr: LR acquisition noise (``fasr.data.degrade.add_noise``).
        slice_size: canvas size (0: native size rounded up to a multiple of ``scale``).
        patch_size: HR crop size when ``train``.
        train: random crops and augmentation from torch's global generator; otherwise whole slices with noise
            and misalignment drawn from a generator seeded by the sample index (identical every epoch).
        augment: joint flips/90-degree rotations (training only).
        misalign: max (shift px, rotation deg, scale fraction) of the reference; all 0 = off.
        misalign_prob: share of samples misaligned or moved (drawn per sample; 1 = every sample, without a draw).
        motion: max (shift mm, rotation degrees) per axis of a rigid 3-D motion of the reference volume; the
            reference slice is taken from the moved volume (needs ``RawSlice.ref_volume``); (0, 0) = off.
        randomise: training only: the degradation section whose per-sample draws
            (:func:`fasr.data.degrade.draw_degradation`) replace ``degradation`` / ``noise`` / ``snr``.
        min_foreground: least content fraction a training crop should have.
        intensity_jitter: training only: the target's HR and LR are scaled together by a random factor in
            [1 - j, 1 + j] about the background level -1, so a model tolerates the normalisation shift between
            a volume's HR statistics (training) and its LR statistics (all that inference has).
        keep_rows: training only: augment with the flips that keep rows as rows (planes whose rows run along the
            slice axis, ``data.planes: thick``) instead of all 8 flips/rotations.
    """

    def __init__(
        self,
        *,
        scale: int,
        degradation: Degradation,
        noise: str,
        snr: float,
        slice_size: int,
        patch_size: int,
        train: bool,
        augment: bool,
        misalign: tuple[float, float, float],
        min_foreground: float,
        intensity_jitter: float = 0.0,
        misalign_prob: float = 1.0,
        motion: tuple[float, float] = (0.0, 0.0),
        randomise: DegradationConfig | None = None,
        keep_rows: bool = False,
    ) -> None:
        if slice_size % scale:
            raise FasrError(f"data.slice_size {slice_size} is not divisible by scale {scale}; pick a multiple")
        if train and (patch_size <= 0 or patch_size % scale):
            raise FasrError(f"data.patch_size {patch_size} must be a positive multiple of scale {scale}")
        self.scale, self.degradation, self.noise, self.snr = scale, degradation, noise, snr
        self.slice_size, self.patch_size, self.train, self.augment = slice_size, patch_size, train, augment
        if not 0.0 <= misalign_prob <= 1.0:
            raise FasrError(f"data.misalign_prob must be in [0, 1], got {misalign_prob}")
        self.misalign = tuple(misalign) if any(misalign) and misalign_prob > 0 else None
        self.misalign_prob = misalign_prob
        self.motion = tuple(motion) if any(motion) and misalign_prob > 0 else None
        self.randomise = randomise if train else None
        self.min_foreground = min_foreground
        self.intensity_jitter = intensity_jitter
        self.keep_rows = keep_rows

    @classmethod
    def from_config(cls, cfg: DataConfig, scale: int, train: bool, degradation: Degradation) -> SampleMaker:
        """Sample maker with the sizes, noise, augmentation and misalignment of ``cfg``."""
        specs = [degradation.spec] + (list(cfg.degradation.random_kinds) if cfg.degradation.kind == "random" else [])
        factors = {d.factor for d in map(degradation_from_spec, specs) if isinstance(d, SliceProfile)}
        if factors and (cfg.planes != "thick" or cfg.slice_size == 0):
            raise FasrError(
                "a slice-profile degradation trains a through-plane model: set data.planes: thick and data.slice_size "
                "to a multiple of every slice factor (e.g. 240 for 3-6)"
            )
        for factor in factors:
            if cfg.slice_size % factor or (train and cfg.patch_size % factor):
                raise FasrError(
                    f"data.slice_size {cfg.slice_size} and data.patch_size {cfg.patch_size} must be multiples of "
                    f"every slice factor ({factor}): thick slices tile the plane (e.g. 240 and 60 for 3-6)"
                )
        return cls(
            scale=scale, degradation=degradation, noise=cfg.degradation.noise, snr=cfg.degradation.snr,
            slice_size=cfg.slice_size, patch_size=cfg.patch_size, train=train, augment=cfg.augment,
            misalign=cfg.misalign, min_foreground=cfg.min_foreground, intensity_jitter=cfg.intensity_jitter,
            misalign_prob=cfg.misalign_prob, motion=cfg.motion, randomise=cfg.degradation,
            keep_rows=cfg.planes == "thick",
        )

    def __call__(self, raw: RawSlice, index: int) -> PairedSample:
        """Sample ``index`` of the split from its slice pair ``raw``."""
        s = self.scale
        generator = None if self.train else torch.Generator().manual_seed(index)
        hr = torch.from_numpy(raw.target)[None, None]  # (1, 1, H, W)
        ref = torch.from_numpy(raw.reference)[None, None]
        if raw.lr is not None:
            check_stored_lr(raw.lr.shape, raw.target.shape, s, raw.subject)
        hr, ref, offset = fit_pair(hr, ref, self.slice_size, s)
        size = tuple(hr.shape[-2:])
        if self.train and min(size) < self.patch_size:
            raise FasrError(f"data.patch_size {self.patch_size} exceeds the {size[0]}x{size[1]} slices; lower it")
        stored = None if raw.lr is None else torch.from_numpy(raw.lr)[None, None]
        degradation, noise, snr = self.degradation, self.noise, self.snr
        if self.randomise is not None and stored is None:
            degradation, noise, snr = draw_degradation(self.randomise, True, generator)
        lr = lr_on_canvas(hr, stored, offset, s, degradation, noise, snr, generator, raw.subject)
        coords = canvas_coords(size) if self.train else None  # (1, 2, H, W)
        ref_coords = coords
        moved = (self.misalign is not None or self.motion is not None) and (
            self.misalign_prob == 1.0 or float(torch.rand(1, generator=generator)) < self.misalign_prob
        )
        if moved and self.motion is not None:
            ref, ref_coords = self._moved_reference(raw, size, offset, coords, generator)
        if moved and self.misalign is not None:
            # One draw of the generator warps the reference, its coordinates and a validity channel alike.
            valid = None if ref_coords is None else (ref_coords < INVALID_COORD).all(1, keepdim=True).float()
            extra = [] if ref_coords is None else [ref_coords, valid]
            warped = misalign(torch.cat([ref, *extra], dim=1), *self.misalign, generator=generator)
            ref = warped[:, :1]
            if ref_coords is not None:
                inside = warped[:, 3:] > 0.999  # bilinear weights all from inside the slice (and valid)
                ref_coords = torch.where(inside, warped[:, 1:3], torch.full_like(ref_coords, INVALID_COORD))
        extras = {}
        if self.train:
            rows = degradation.factor if isinstance(degradation, SliceProfile) else 1  # crop at a thick slice's edge
            hr, ref, lr, hr_coords, ref_coords = self._crop_and_augment(hr, ref, lr, coords, ref_coords, rows)
            extras = {"hr_coords": hr_coords[0], "ref_coords": ref_coords[0]}
            if self.intensity_jitter:
                gain = 1.0 + self.intensity_jitter * (2.0 * float(torch.rand(())) - 1.0)
                hr, lr = (hr + 1.0) * gain - 1.0, (lr + 1.0) * gain - 1.0
        return PairedSample(
            hr=hr[0], ref=ref[0], lr=lr[0], subject=raw.subject, slice_index=raw.slice_index,
            target_stats=(raw.target_stats.low, raw.target_stats.high),
            ref_stats=(raw.ref_stats.low, raw.ref_stats.high), degradation=degradation.spec, **extras,
        )

    def _moved_reference(
        self, raw: RawSlice, size: tuple[int, int], offset: tuple[int, int], coords: Tensor | None,
        generator: torch.Generator | None,
    ) -> tuple[Tensor, Tensor | None]:
        """The reference slice of a randomly moved reference volume on the canvas, with its coordinates (pixels
        sampled from outside the volume: :data:`INVALID_COORD`)."""
        if raw.ref_volume is None:
            raise FasrError(
                f"subject '{raw.subject}': data.motion needs the reference volume; 2-D slice folders and slice "
                "caches have none (use data.misalign for in-plane misalignment)"
            )
        rotation, shift = random_motion(*self.motion, generator=generator)
        plane, source, inside = rigid_plane(
            torch.from_numpy(raw.ref_volume), raw.slice_index, raw.spacing, rotation, shift, size, offset
        )
        if coords is None:
            return plane, None
        return plane, torch.where(inside, source, torch.full_like(source, INVALID_COORD))

    def _crop_and_augment(
        self, hr: Tensor, ref: Tensor, lr: Tensor, hr_coords: Tensor, ref_coords: Tensor, rows: int = 1
    ) -> tuple[Tensor, ...]:
        """Aligned random crop (HR corner a multiple of the scale, and its row a multiple of ``rows``), preferring
        crops with content; returns (hr, ref, lr, hr_coords, ref_coords). Coordinates are values: flips and
        rotations move them, never change them."""
        s, p = self.scale, self.patch_size
        for _ in range(_CROP_TRIES):
            y, x = random_crop_offset(tuple(hr.shape[-2:]), p, (s * rows, s), None)
            if (hr[..., y : y + p, x : x + p] > FOREGROUND_LEVEL).float().mean() >= self.min_foreground:
                break
        crops = [t[..., y : y + p, x : x + p] for t in (hr, ref, hr_coords, ref_coords)]
        crops.insert(2, lr[..., y // s : (y + p) // s, x // s : (x + p) // s])  # (1, 1, p/s, p/s)
        if not self.augment:
            return tuple(crops)
        rotations, flip = int(torch.randint(4, (1,))), bool(torch.randint(2, (1,)))
        if self.keep_rows:
            rotations = 2 * (rotations % 2)  # a half turn or none: rows stay rows
        return tuple(dihedral(t, rotations, flip) for t in crops)
