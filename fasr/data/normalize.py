"""Per-volume robust intensity scaling to [-1, 1] (Section IV-A), with the statistics kept to map back.

``low`` is the background level: a low percentile of all voxels (air or skull-stripped background, ~0 for MR
magnitudes; the few negative values interpolation leaves in some files fall below it). Signed data (z-scored or
otherwise standardised volumes, whose background sits at a negative value and whose tissue is partly negative;
:func:`is_signed`) keep their negative values: their background level is that low percentile, and the scaling is
the same affine map a magnitude volume gets, so a scan z-scored with its background at its z-value (the volume's
minimum) is processed exactly as the scan it came from.
``high`` is a high percentile of the foreground (the voxels above ``low``), so neither the amount of background
nor a few very bright voxels (vessels, fat, artefacts) move it. The datasets clip the scaled values to [-1, 1],
the paper's range, so the background is exactly -1; :meth:`NormStats.denormalize` maps model outputs back.
"""

from __future__ import annotations

import numpy as np

from fasr.data.types import NormStats, Volume
from fasr.errors import FasrError

__all__ = [
    "FOREGROUND_LEVEL", "SIGNED_SHARE", "is_signed", "intensity_floor", "robust_stats", "normalize_clipped",
    "foreground_fraction",
]

# A normalised pixel above this (5 % of the way from ``low`` to ``high``) counts as content, not background.
FOREGROUND_LEVEL = -0.9
# Data are signed (ours) when their 1st percentile lies below -SIGNED_SHARE times a positive 99.9th: a standardised
# volume's background (-3.6 against +4 for a z-scored brain), not the undershoot that bicubic or k-space
# downsampling leaves around a magnitude image's edges (a few % of its maximum, in a thin shell).
SIGNED_SHARE = 0.2


def is_signed(data: np.ndarray) -> bool:
    """Whether ``data`` are signed intensities (z-scored, standardised) rather than MR magnitudes with undershoot.

    Args:
        data: intensities (any shape).
    """
    low, high = np.percentile(data, (1.0, 99.9))
    return bool(high > 0 and low < -SIGNED_SHARE * high)


def intensity_floor(data: np.ndarray) -> float:
    """The background level below which values are undershoot: 0 for magnitudes; for signed data the most common
    value of their lower half (a standardised volume's background plateau), to 1/256 of that half's range.

    Args:
        data: intensities (any shape).
    """
    if not is_signed(data):
        return 0.0
    finite = data[np.isfinite(data)]
    lower = finite[finite <= np.median(finite)]
    counts, edges = np.histogram(lower, bins=256)
    peak = int(np.argmax(counts))
    return float(np.median(lower[(lower >= edges[peak]) & (lower <= edges[peak + 1])]))


def robust_stats(
    volume: np.ndarray | Volume, low_pct: float = 0.5, high_pct: float = 99.5, name: str | None = None
) -> NormStats:
    """Robust intensity range of a volume or slice: background level and a high foreground percentile.

    Args:
        volume: intensities (any shape) or a :class:`Volume`.
        low_pct: percentile of all voxels mapped to -1 (the background level).
        high_pct: percentile of the foreground (voxels above the background level) mapped to +1.
        name: file the intensities come from, for the message (default: the path of a :class:`Volume`).

    Raises:
        FasrError: bad percentiles, or no voxel above the background level.
    """
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume)
    # MR magnitudes are >= 0: negatives are interpolation/ringing undershoot (a shell around the head after
    # bicubic or k-space downsampling). Left in, they would become the background level and the whole
    # background would count as foreground, pulling the high percentile down (~40 % on a x4 BraTS T2).
    # Signed (standardised) data keep theirs, down to their own background level (the same undershoot falls below
    # it there): the background and tissue are negative.
    data = np.maximum(data, intensity_floor(data))
    if not 0.0 <= low_pct < 100.0 or not 0.0 < high_pct <= 100.0:
        raise FasrError(f"normalisation percentiles must lie in [0, 100), (0, 100], got {low_pct}, {high_pct}")
    low = float(np.percentile(data, low_pct))
    foreground = data[data > low]
    if foreground.size == 0:
        what = f"'{name or volume.path}'" if name or isinstance(volume, Volume) else "image"
        raise FasrError(
            f"{what} has no content above its background level {low:g} (for MR magnitudes, which are >= 0, a few "
            "negative values count as background); give the magnitude image of a scan"
        )
    high = float(np.percentile(foreground, high_pct))
    return NormStats(low=low, high=high if high > low else float(foreground.max()))


def normalize_clipped(x: np.ndarray, stats: NormStats) -> np.ndarray:
    """``stats.normalize(x)`` clipped to [-1, 1] (float32).

    Args:
        x: intensities on the original scale.
        stats: scaling of the volume ``x`` comes from.
    """
    return np.clip(stats.normalize(x), -1.0, 1.0)


def foreground_fraction(stack: np.ndarray) -> np.ndarray:
    """Fraction of content pixels (above :data:`FOREGROUND_LEVEL`) of each slice.

    Args:
        stack: (..., H, W) normalised slices.

    Returns:
        (...) fractions in [0, 1].
    """
    return (stack > FOREGROUND_LEVEL).mean(axis=(-2, -1))
