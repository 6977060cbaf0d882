"""The plateau rule, the paired test against hand-computed cases, and the claims a suite states from them."""

from __future__ import annotations

import math

import pytest

from fasr.bench.quality.report import claims
from fasr.bench.quality.runs import RunResult
from fasr.bench.quality.stats import has_plateaued, holm, is_plateau, paired_test, plateau_gain


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
    assert is_plateau(0.049) and not is_plateau(0.05) and not is_plateau(math.nan)


def test_holm_adjusts_a_family_of_p_values_step_down() -> None:
    # Sorted 0.01, 0.03, 0.04: x3 = 0.03, x2 = 0.06, x1 = 0.04 raised to the 0.06 before it; order kept.
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def test_paired_test_matches_the_exact_signed_rank_distribution() -> None:
    # Differences 1, 2, 3, 4, -0.5: ranks of |d| are 2, 3, 4, 5 (positive) and 1 (negative), so W- = 1. Of the
    # 2^5 = 32 equally likely sign patterns, 2 have W- <= 1 (none or only rank 1 negative): p = 2 x 2/32.
    a, b = [11.0, 12.0, 13.0, 14.0, 9.5], [10.0] * 5
    test = paired_test(a, b)
    assert (test.statistic, test.n) == (1.0, 5)
    assert test.p_value == pytest.approx(0.125)
    assert test.mean_diff == pytest.approx(1.9) and test.median_diff == pytest.approx(2.0)
    assert test.direction == 1  # W+ = 14 > W- = 1
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


def test_claims_pair_the_seeds_both_rows_finished_and_judge_each_paper_comparison() -> None:
    def seeds(label: str, *offsets: float, wobble: float = 0.0) -> list[RunResult]:
        return [run(label, k, [o + i + (wobble if i % 2 else -wobble) for i in range(10)])
                for k, o in enumerate(offsets)]

    fasr = seeds("fasr", 31.0, 31.2)
    edsr = seeds("edsr", 30.0, 30.2)  # 1 dB below FASR in both seeds: the paper's claim holds
    masa = seeds("masa", 31.5, 31.7)  # 0.5 dB above FASR in both seeds: the paper reversed
    ttsr = seeds("ttsr", 31.1, wobble=0.3)  # one seed; against FASR +0.2 and -0.4 in turn: no consistent sign
    mcsr = seeds("mcsr", 30.0, 31.4)  # below FASR on average, above it in seed 1: the seeds disagree
    found = {(c.reference, c.row): c for c in claims("methods", fasr + edsr + masa + ttsr + mcsr)}
    # FASR against every row; the rest in the paper's order, each above its neighbour below.
    assert list(found) == [("fasr", "edsr"), ("fasr", "masa"), ("fasr", "ttsr"), ("fasr", "mcsr"),
                           ("masa", "ttsr"), ("ttsr", "mcsr"), ("mcsr", "edsr")]
    assert [c.kind for c in found.values()] == ["full model"] * 4 + ["ordering"] * 3
    edsr_claim = found["fasr", "edsr"]
    assert edsr_claim.diff == pytest.approx(1.0) and edsr_claim.split == "val" and edsr_claim.slices == 10
    assert (edsr_claim.seeds_agree, edsr_claim.seeds, edsr_claim.verdict) == (2, 2, "holds")
    assert edsr_claim.paper_diff == pytest.approx(33.403 - 26.719)
    # 10 differences of one sign: p = 2/1024. Six claims have it; Holm over the 7 tested multiplies the smallest
    # by 7, 6, ... and keeps each at least the one before: 7 x 2/1024 for all six.
    assert edsr_claim.p_value == pytest.approx(2 / 1024) and edsr_claim.p_holm == pytest.approx(14 / 1024)
    assert found["fasr", "masa"].verdict == "reversed" and found["fasr", "masa"].diff == pytest.approx(-0.5)
    assert found["fasr", "ttsr"].verdict == "not significant" and found["fasr", "ttsr"].p_holm > 0.05
    # Seed-averaged, MCSR is 0.4 dB below FASR on every slice (p = 2/1024), but seed 1 has it 0.2 dB above.
    assert (found["fasr", "mcsr"].verdict, found["fasr", "mcsr"].seeds_agree) == ("seeds disagree", 1)
    # Only seed 0 pairs MASA or MCSR with TTSR: significant, but one run cannot show training noise.
    assert found["masa", "ttsr"].verdict == found["ttsr", "mcsr"].verdict == "one seed run"
    assert found["masa", "ttsr"].seeds == 1
    assert not any(c.plateaued for c in found.values())  # these runs have no validations to tell


def test_claims_never_pair_runs_of_different_held_out_subjects() -> None:
    fasr = [run("fasr", 0, [40.0, 41.0, 42.0])]
    edsr = [run("edsr", 0, [20.0, 21.0, 22.0])]
    edsr[0].held_out = "another-subject"  # same number of slices, other slices
    (claim,) = claims("methods", fasr + edsr)
    assert claim.verdict == "untested" and math.isnan(claim.p_value)


def test_a_claims_direction_is_the_tests_not_the_mean() -> None:
    """One outlying slice turns the mean, not the signed-rank test: FASR lower on 20 of 21 slices is not "above"."""
    slices = [30.0 - 0.1 * (i < 20) + 5.0 * (i == 20) + i for i in range(21)]
    fasr = [run("fasr", k, slices) for k in (0, 1)]
    edsr = [run("edsr", k, [30.0 + i for i in range(21)]) for k in (0, 1)]
    (claim,) = claims("methods", fasr + edsr)
    assert claim.diff == pytest.approx(3.0 / 21) and claim.median_diff == pytest.approx(-0.1)
    assert claim.p_value < 0.05 and claim.verdict == "reversed"  # the paper has FASR above EDSR


def test_a_full_model_below_a_row_in_the_paper_is_claimed_the_paper_s_way() -> None:
    """Table II: ResNet-34 (38.70) is above the VGG19 full model (38.52) in the paper: the claim reads
    resnet34 > vgg19, and a VGG19 better on every slice reverses it."""
    vgg = [run("vgg19", k, [31.0 + i for i in range(10)]) for k in (0, 1)]
    resnet = [run("resnet34", k, [30.5 + i for i in range(10)]) for k in (0, 1)]
    (claim,) = claims("backbones", vgg + resnet)
    assert (claim.reference, claim.row, claim.kind) == ("resnet34", "vgg19", "full model")
    assert claim.paper_diff == pytest.approx(0.18) and claim.diff == pytest.approx(-0.5)
    assert claim.verdict == "reversed"


def test_claims_use_the_test_slices_when_every_run_has_them() -> None:
    results = [run("complete", k, [30.0] * 6, [30.0 + i for i in range(6)]) for k in (0, 1)]
    results += [run("wo-ma", k, [31.0] * 6, [29.0] * 6) for k in (0, 1)]
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
