"""The plateau rule, the paired test against hand-computed cases, and the claims a suite states from them."""

from __future__ import annotations

import math

import pytest

from fasr.bench.quality.report import claims
from fasr.bench.quality.runs import RunResult
from fasr.bench.quality.stats import has_plateaued, paired_test, plateau_gain


def test_plateau_gain_is_the_best_of_the_last_fifth_over_the_best_before() -> None:
    rising = [(100, 30.0), (200, 31.0), (300, 31.5), (400, 31.52), (500, 31.53)]
    assert plateau_gain(rising) == pytest.approx(0.01)  # steps 401-500 against steps 1-400
    assert has_plateaued(rising)
    still = [(100, 30.0), (250, 30.5), (500, 31.0)]
    assert plateau_gain(still) == pytest.approx(0.5) and not has_plateaued(still)
    falling = [(100, 30.0), (400, 31.0), (500, 30.2)]  # overfitting late: no gain, a plateau
    assert plateau_gain(falling) == 0.0 and has_plateaued(falling)
    assert plateau_gain(rising, fraction=0.5) == pytest.approx(0.53)  # steps 251-500 against 1-250 (31.0)
    assert math.isnan(plateau_gain([(500, 31.0)])) and not has_plateaued([(500, 31.0)])
    assert math.isnan(plateau_gain([]))


def test_paired_test_matches_the_exact_signed_rank_distribution() -> None:
    # Differences 1, 2, 3, 4, -0.5: ranks of |d| are 2, 3, 4, 5 (positive) and 1 (negative), so W- = 1. Of the
    # 2^5 = 32 equally likely sign patterns, 2 have W- <= 1 (none or only rank 1 negative): p = 2 x 2/32.
    a, b = [11.0, 12.0, 13.0, 14.0, 9.5], [10.0] * 5
    test = paired_test(a, b)
    assert (test.statistic, test.n) == (1.0, 5)
    assert test.p_value == pytest.approx(0.125)
    assert test.mean_diff == pytest.approx(1.9) and test.median_diff == pytest.approx(2.0)
    # Six positive differences: only the all-positive pattern is as extreme, p = 2 x 1/64.
    assert paired_test([1.0, 2, 3, 4, 5, 6], [0.0] * 6).p_value == pytest.approx(2 / 64)
    assert paired_test([1.0, 2.0], [1.0, 2.0]).p_value == 1.0  # identical rows
    with pytest.raises(ValueError, match="equal-length"):
        paired_test([1.0, 2.0], [1.0])


def run(label: str, seed: int, slices: list[float], test: list[float] | None = None) -> RunResult:
    return RunResult(
        label, "val-subject", seed, sum(slices) / len(slices), 0.9, 20.0, 0.5, params=1, steps=10, wall_s=1.0,
        run_dir="r", slice_psnr=slices, test_slice_psnr=test, test_psnr=None if test is None else sum(test) / len(test),
        test_bicubic_psnr=None if test is None else 20.0,
    )


def test_claims_average_seeds_per_slice_and_judge_each_paper_comparison() -> None:
    fasr = [run("fasr", 0, [31.0 + i for i in range(8)]), run("fasr", 1, [31.2 + i for i in range(8)])]
    edsr = [run("edsr", 0, [30.0 + i for i in range(8)]), run("edsr", 1, [30.2 + i for i in range(8)])]
    masa = [run("masa", 0, [31.5 + i for i in range(8)])]  # better than FASR on every slice: the paper reversed
    ttsr = [run("ttsr", 0, [31.1 + i + (0.3 if i % 2 else -0.3) for i in range(8)])]  # no consistent sign
    found = {c.row: c for c in claims("methods", fasr + edsr + masa + ttsr)}
    assert set(found) == {"edsr", "masa", "ttsr"}
    assert found["edsr"].diff == pytest.approx(1.0) and found["edsr"].verdict == "holds"
    assert found["edsr"].paper_diff == pytest.approx(33.403 - 26.719)
    assert found["edsr"].p_value == pytest.approx(2 / 256) and found["edsr"].split == "val"
    assert found["masa"].verdict == "reversed" and found["masa"].diff == pytest.approx(-0.4)
    assert found["ttsr"].verdict == "not significant"


def test_claims_use_the_test_slices_when_every_run_has_them() -> None:
    results = [run("complete", 0, [30.0] * 6, [30.0 + i for i in range(6)]), run("wo-ma", 0, [31.0] * 6, [29.0] * 6)]
    (claim,) = claims("modules", results)
    assert (claim.split, claim.slices, claim.verdict) == ("test", 6, "holds")  # the val slices say the opposite
    assert claim.paper_diff == pytest.approx(38.52 - 37.93)


def test_claims_with_folds_pair_each_held_out_subjects_slices() -> None:
    """--folds: seeds are averaged per held-out subject, and the subjects' slices (of any number) concatenated."""
    a = [run("fasr", 0, [31.0, 32.0, 33.0]), run("fasr", 1, [31.2, 32.2, 33.2])]
    b = [run("fasr", 0, [40.0, 41.0]), run("fasr", 1, [40.2, 41.2])]
    for r in b:
        r.held_out = "other-subject"
    rows = [run("edsr", 0, [30.0, 31.0, 32.0]), run("edsr", 1, [30.0, 31.0, 32.0])]
    rows += [run("edsr", 0, [39.0, 40.0]), run("edsr", 1, [39.0, 40.0])]
    for r in rows[2:]:
        r.held_out = "other-subject"
    (claim,) = claims("methods", a + b + rows)
    assert claim.slices == 5 and claim.diff == pytest.approx(1.1)
