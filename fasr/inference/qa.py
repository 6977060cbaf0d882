"""Reference QA: does the reference look like a registered scan of the target's patient?

A coverage check cannot tell another patient in the same atlas space from the right one, and says nothing about
a reference that is a few millimetres off. Both make FASR-Net borrow wrong detail. The score here (ours):

* ``nmi``: normalised mutual information ``(H(A) + H(B)) / H(A, B)`` (Studholme et al. 1999; 1 = independent,
  2 = one determines the other) of the LR and the reference resampled onto the LR grid, over the LR's foreground
  (above :data:`FOREGROUND` of the way from its floor, 0 or a signed LR's background level, to its maximum), intensities
  in :data:`BINS` bins between their 0.5 and 99.5th percentiles. The reference is Gaussian-blurred to about the
  LR's resolution first, so both show the same scale of detail.
* ``alignment``: the share of the mutual information (``nmi - 1``) that is lost when the reference is moved by
  :data:`PROBE_SHIFT_MM` along each LR voxel axis (both ways; the mean of those NMIs is ``nmi_shifted``).
  A registered scan of the same patient sits on a sharp peak: moving it loses a large share. A scan of another
  patient (brains of similar shape in the same atlas space) or a misregistered one does not sit on the peak, so
  the share is small or negative. NMI alone depends on the contrast pair and overlaps between true and wrong
  pairs; the share does not (calibration: ``fasr bench qa``, docs/inference.md).

The reference is flagged when ``alignment`` < :data:`ALIGNMENT_THRESHOLD`, or when its mutual information is
within :data:`CHANCE_FACTOR` times what two unrelated images of that many voxels show by chance (the estimator's
bias ``(BINS - 1)^2 / (2 N)`` nats, Miller-Madow; it matters for small images only). ``mean_confidence`` is the mean
soft-attention confidence of the model's output over the SR foreground (``SROutput.confidence``, Eqs. 18-20),
filled in after inference; it is recorded, not yet used for the verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from fasr.data.geometry import resample_to_grid
from fasr.data.normalize import intensity_floor
from fasr.data.types import NormStats, Volume
from fasr.errors import FasrError
from fasr.inference.grid import spacing_along_axes, voxel_sizes

__all__ = [
    "ALIGNMENT_THRESHOLD",
    "PROBE_SHIFT_MM",
    "CHANCE_FACTOR",
    "BINS",
    "FOREGROUND",
    "MIN_VOXELS",
    "ReferenceQA",
    "normalized_mutual_information",
    "reference_qa",
    "check_reference",
    "mean_confidence",
    "blurred_reference",
]

# Chosen by `fasr bench qa` on ../shared/data (benchmarks/results/qa-calibration.json, docs/inference.md) as
# inference runs by default: each reference registered to a x4 k-space LR first. The best balanced accuracy over 24
# same-patient pairs and 32 other-patient ones (144 same-patient pairs shifted 5-10 mm, brought back by the
# registration, all pass it); chosen without each subject in turn, it flagged 0 of 24 true pairs and 29 of 32 others.
ALIGNMENT_THRESHOLD = 0.36
PROBE_SHIFT_MM = 6.0
CHANCE_FACTOR = 3.0
BINS = 32
FOREGROUND = 0.05  # fraction of the LR's range (from 0, or from a signed LR's minimum) above which it is foreground
MIN_VOXELS = 512  # fewer foreground voxels: too few for a joint histogram, QA not measured
# Gaussian sigma, in units of the coarser sampling step, that blurs the reference to about the LR's resolution
# (the antialiasing of a downsampling, ours); steps under 1.5 reference voxels are left unblurred.
_BLUR = 0.4
_MIN_BLUR_STEP = 1.5
_PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class ReferenceQA:
    """How well the reference explains the LR (see the module docstring); None where not measured.

    Attributes:
        nmi: NMI of the LR and the reference on the LR grid.
        nmi_shifted: mean NMI with the reference moved by ``shift_mm`` along each LR axis, both ways.
        alignment: ``(nmi - nmi_shifted) / (nmi - 1)``.
        mutual_information: mutual information (nats) at the given position.
        chance_level: :data:`CHANCE_FACTOR` times the mutual information unrelated images show by chance.
        threshold: flag below this ``alignment``.
        shift_mm: the probe shift.
        voxels: foreground voxels the histograms used.
        flagged: the reference looks like another patient or misregistered.
        mean_confidence: mean model confidence over the SR foreground (after inference), None before or for
            models without reference matching.
    """

    nmi: float | None
    nmi_shifted: float | None
    alignment: float | None
    mutual_information: float | None
    chance_level: float | None
    threshold: float
    shift_mm: float
    voxels: int
    flagged: bool
    mean_confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sidecar record (floats rounded to 6 digits)."""
        return {k: round(v, 6) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def with_confidence(self, value: float | None) -> ReferenceQA:
        """This record with ``mean_confidence`` filled in."""
        return replace(self, mean_confidence=value)


def _bins(x: np.ndarray) -> np.ndarray:
    """Bin index in [0, BINS) of each value, between its percentiles."""
    low, high = np.percentile(x, _PERCENTILES)
    scaled = (x - low) / (high - low) if high > low else np.zeros_like(x)
    return np.clip((scaled * BINS).astype(np.int64), 0, BINS - 1)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


def normalized_mutual_information(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """NMI ``(H(A) + H(B)) / H(A, B)`` and mutual information ``H(A) + H(B) - H(A, B)`` (nats) of two equally long
    1-D samples, :data:`BINS` bins each; NMI is 1 when the joint entropy is 0 (both constant)."""
    joint = np.bincount(_bins(a) * BINS + _bins(b), minlength=BINS * BINS).reshape(BINS, BINS)
    p = joint / joint.sum()  # (BINS, BINS)
    h_joint, h_sum = _entropy(p.ravel()), _entropy(p.sum(axis=1)) + _entropy(p.sum(axis=0))
    return (1.0 if h_joint == 0 else h_sum / h_joint), h_sum - h_joint


def blurred_reference(ref: Volume, lr_affine: np.ndarray) -> np.ndarray:
    """The reference blurred along its axes where the LR samples more coarsely than it."""
    step = spacing_along_axes(ref.affine, lr_affine) / voxel_sizes(ref.affine)  # LR step in reference voxels
    sigma = np.where(step >= _MIN_BLUR_STEP, _BLUR * step, 0.0)
    return ndimage.gaussian_filter(ref.data, sigma) if sigma.any() else ref.data


def _shifted(affine: np.ndarray, offset_mm: np.ndarray) -> np.ndarray:
    moved = np.array(affine, dtype=np.float64)
    moved[:3, 3] += offset_mm
    return moved


def reference_qa(lr: Volume, ref: Volume, threshold: float = ALIGNMENT_THRESHOLD) -> ReferenceQA:
    """Score how well ``ref`` explains ``lr`` (module docstring).

    Args:
        lr: the low-resolution target.
        ref: the reference, in the same scanner space.
        threshold: flag when ``alignment`` is below it.
    """
    data = lr.data
    floor = intensity_floor(data)  # magnitudes: 0; signed data: their background level
    top = float(data.max())
    mask = data > floor + FOREGROUND * (top - floor) if top > floor else np.zeros(data.shape, dtype=bool)
    voxels = int(mask.sum())
    chance = CHANCE_FACTOR * (BINS - 1) ** 2 / (2.0 * max(voxels, 1))
    unmeasured = ReferenceQA(None, None, None, None, chance, threshold, PROBE_SHIFT_MM, voxels, flagged=False)
    if voxels < MIN_VOXELS:
        return unmeasured
    target = data[mask]
    blurred = blurred_reference(ref, lr.affine)

    def information_at(offset_mm: np.ndarray) -> tuple[float, float]:
        moved = resample_to_grid(blurred, _shifted(ref.affine, offset_mm), data.shape, lr.affine, order=1)
        return normalized_mutual_information(target, moved[mask])

    nmi, information = information_at(np.zeros(3))
    measured = replace(unmeasured, nmi=nmi, mutual_information=information)
    if nmi <= 1.0:  # the reference tells nothing about the LR (e.g. constant over its foreground)
        return replace(measured, nmi_shifted=nmi, alignment=0.0, flagged=True)
    # Unit vectors of the LR's voxel axes; a one-slice LR is not moved off its slice.
    directions = np.asarray(lr.affine, dtype=np.float64)[:3, :3] / voxel_sizes(lr.affine)
    axes = [a for a in range(3) if data.shape[a] > 1]
    offsets = [sign * PROBE_SHIFT_MM * directions[:, a] for a in axes for sign in (1, -1)]
    shifted = float(np.mean([information_at(offset)[0] for offset in offsets]))
    alignment = (nmi - shifted) / (nmi - 1.0)
    flagged = alignment < threshold or information < chance
    return replace(measured, nmi_shifted=shifted, alignment=alignment, flagged=flagged)


def check_reference(qa: ReferenceQA, lr_name: str, ref_name: str, strict: bool) -> str | None:
    """The warning for a flagged reference (None when it passes); with ``strict`` a flagged one is refused.

    Args:
        qa: the scores.
        lr_name / ref_name: file names for the message.
        strict: raise instead of warning.

    Raises:
        FasrError: ``strict`` and the reference is flagged.
    """
    if not qa.flagged:
        return None
    if qa.mutual_information is not None and qa.mutual_information < qa.chance_level:
        evidence = "its mutual information with the LR is at the level of unrelated images"
    else:
        evidence = (
            f"moving it {qa.shift_mm:g} mm loses {qa.alignment:.0%} of its mutual information with the LR, below the "
            f"{qa.threshold:.0%} that separates registered same-patient pairs from other patients and shifted scans "
            "(chosen that way without each subject in turn, it misjudged 1 of 24 true and 2 of 176 wrong pairs)"
        )
    finding = (
        f"reference '{ref_name}' does not look like a registered scan of the patient of '{lr_name}' ({evidence}): "
        "another patient, or misregistered"
    )
    if strict:
        raise FasrError(f"{finding}; give the same patient's scan registered to the LR, or drop --strict to run anyway")
    return f"{finding}; the output may show the reference's anatomy (--strict refuses such references)"


def mean_confidence(confidence: np.ndarray | None, sr: np.ndarray, stats: NormStats) -> float | None:
    """Mean confidence over the SR foreground (output above :data:`FOREGROUND` of the target's range).

    Args:
        confidence: (X', Y', Z') confidence on the SR grid, or None.
        sr: (X', Y', Z') super-resolved target on its intensity scale.
        stats: the target's normalisation (background level ``low``, foreground level ``high``).
    """
    if confidence is None:
        return None
    foreground = sr > stats.low + FOREGROUND * (stats.high - stats.low)
    return float(confidence[foreground].mean()) if foreground.any() else None
