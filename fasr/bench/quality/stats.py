"""What a reviewer asks of a results table: has each run stopped improving (the plateau rule), and is a row's
difference from another larger than the slice-to-slice noise (a paired test over the same slices)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PLATEAU_FRACTION",
    "PLATEAU_DB",
    "plateau_gain",
    "has_plateaued",
    "is_plateau",
    "PairedTest",
    "paired_test",
    "holm",
]

# The plateau rule (ours): a run has stopped improving when its best validation PSNR over the last 20 % of its
# steps is less than 0.05 dB above its best before them.
PLATEAU_FRACTION = 0.2
PLATEAU_DB = 0.05


def plateau_gain(history: Sequence[tuple[int, float]], fraction: float = PLATEAU_FRACTION) -> float:
    """Best validation PSNR over the whole run minus the best over its first ``1 - fraction`` of steps (dB).

    Args:
        history: (step, validation PSNR) pairs, in any order.
        fraction: the closing share of the run's steps.

    Returns:
        The gain (>= 0), or NaN when no validation falls before the closing share or inside it.
    """
    if not history:
        return math.nan
    last = max(step for step, _ in history)
    cut = last * (1 - fraction)
    before = [psnr for step, psnr in history if step <= cut]
    closing = [psnr for step, psnr in history if step > cut]
    if not before or not closing:
        return math.nan
    return max(0.0, max(closing) - max(before))


def has_plateaued(history: Sequence[tuple[int, float]], fraction: float = PLATEAU_FRACTION,
                  tolerance_db: float = PLATEAU_DB) -> bool:
    """Whether the run gained less than ``tolerance_db`` over the closing ``fraction`` of its steps."""
    return is_plateau(plateau_gain(history, fraction), tolerance_db)


def is_plateau(gain: float, tolerance_db: float = PLATEAU_DB) -> bool:
    """Whether a :func:`plateau_gain` says the run has stopped improving (NaN, too few validations: it has not)."""
    return not math.isnan(gain) and gain < tolerance_db


@dataclass(frozen=True)
class PairedTest:
    """Wilcoxon signed-rank test of ``a - b`` over paired slices (two-sided).

    Attributes:
        mean_diff: mean of ``a - b`` (dB for PSNR).
        median_diff: median of ``a - b``.
        n: pairs (zero differences included, as the Wilcoxon ``wilcox`` rule then drops them).
        statistic: the smaller of the positive and negative rank sums.
        p_value: two-sided p-value (exact for up to 50 non-zero pairs without ties, normal approximation beyond).
        direction: which way the test leans: +1 when the positive rank sum is the larger (``a`` above ``b``), -1
            when the negative one is, 0 for a tie. A verdict takes its sign from here, not from ``mean_diff``,
            which one outlying slice can turn.
    """

    mean_diff: float
    median_diff: float
    n: int
    statistic: float
    p_value: float
    direction: int


def paired_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Wilcoxon signed-rank test of the paired scores ``a`` and ``b`` (e.g. per-slice PSNR of two rows).

    Args:
        a, b: scores of the same slices, in the same order.
    """
    import numpy as np
    from scipy.stats import rankdata, wilcoxon

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError(f"paired scores must be two equal-length sequences, got {x.shape} and {y.shape}")
    d = x - y
    if not np.any(d):
        return PairedTest(0.0, 0.0, len(d), 0.0, 1.0, 0)
    result = wilcoxon(d, alternative="two-sided")
    nonzero = d[d != 0]
    ranks = rankdata(np.abs(nonzero))  # ties share their mean rank
    direction = int(np.sign(ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()))
    return PairedTest(
        float(d.mean()), float(np.median(d)), len(d), float(result.statistic), float(result.pvalue), direction
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values of a family of tests, in the given order.

    The i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), each kept at least as large as the one
    before it and at most 1; an adjusted p below alpha rejects at family-wise error rate alpha.

    Args:
        p_values: one per test of the family.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
