"""What a suite reports: rows as mean and standard deviation over runs, provenance, Markdown and figures."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasr.bench.quality.runs import RunResult
from fasr.bench.quality.stats import holm, is_plateau, paired_test

__all__ = [
    "RowSummary",
    "Claim",
    "summarize",
    "claims",
    "markdown",
    "score_figure",
    "residual_figure",
    "curve_figure",
]

SIGNIFICANCE = 0.05  # a claim holds (or is reversed) here when the paired test's p-value is below this


@dataclass
class RowSummary:
    """A results-table row: scores as mean and sample standard deviation over the row's runs (seeds).

    ``gain_mean`` is the mean PSNR gain over bicubic on the same slices (dB); ``plateau_gain_max`` the largest
    validation gain over the last 20 % of the steps among the row's runs (:mod:`fasr.bench.quality.stats`), and
    ``plateaued`` whether every run of the row has reached its plateau by that rule (a run without the
    validations to tell has not); ``steps`` and ``steps_max`` the fewest and most steps a run of the row trained;
    ``test_*`` are None without test subjects.
    """

    label: str
    psnr_mean: float
    psnr_std: float
    ssim_mean: float
    ssim_std: float
    gain_mean: float
    params: int
    steps: int
    wall_s: float
    runs: int
    plateau_gain_max: float = math.nan
    plateaued: bool = False
    steps_max: int = 0
    test_psnr_mean: float | None = None
    test_psnr_std: float | None = None
    test_ssim_mean: float | None = None
    test_gain_mean: float | None = None


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _spread(mean: float, std: float, digits: int, runs: int) -> str:
    """``mean ± std``; the mean alone for one run (one run has no spread)."""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if runs > 1 else "")


def _trained_runs_plateaued(runs: list[RunResult]) -> bool:
    """Whether every trained run (one with parameters) reached its plateau (:func:`stats.is_plateau`)."""
    return all(is_plateau(r.plateau_gain) for r in runs if r.params)


def summarize(results: list[RunResult]) -> list[RowSummary]:
    """One row per label (in first-seen order): mean and sample standard deviation over its runs."""
    rows = []
    for label in dict.fromkeys(r.label for r in results):
        runs = [r for r in results if r.label == label]
        psnr_mean, psnr_std = _mean_std([r.psnr for r in runs])
        ssim_mean, ssim_std = _mean_std([r.ssim for r in runs])
        gains = [r.plateau_gain for r in runs if not math.isnan(r.plateau_gain)]
        steps = [r.steps for r in runs]
        tested = [r for r in runs if r.test_psnr is not None]
        test = _mean_std([r.test_psnr for r in tested]) if tested else (None, None)
        rows.append(
            RowSummary(
                label=label,
                psnr_mean=psnr_mean,
                psnr_std=psnr_std,
                ssim_mean=ssim_mean,
                ssim_std=ssim_std,
                gain_mean=statistics.fmean(r.psnr - r.bicubic_psnr for r in runs),
                params=runs[0].params,
                steps=min(steps),
                wall_s=statistics.fmean(r.wall_s for r in runs),
                runs=len(runs),
                plateau_gain_max=max(gains) if gains else math.nan,
                plateaued=bool(runs[0].params) and _trained_runs_plateaued(runs),
                steps_max=max(steps),
                test_psnr_mean=test[0],
                test_psnr_std=test[1],
                test_ssim_mean=statistics.fmean(r.test_ssim for r in tested) if tested else None,
                test_gain_mean=statistics.fmean(r.test_psnr - r.test_bicubic_psnr for r in tested) if tested else None,
            )
        )
    return rows


@dataclass
class Claim:
    """One of the paper's comparisons, re-measured: ``reference`` (the row the paper ranks higher) against ``row``
    on the same slices, over the seeds both rows finished.

    Attributes:
        reference / row: the two rows; ``kind`` says why they are compared: ``full model`` (the suite's full model
            against every other row) or ``ordering`` (neighbours in the paper's ranking, the full model aside).
        paper_diff: the paper's PSNR of ``reference`` minus ``row`` (dB).
        diff / median_diff: here, the mean and the median over slices of the seed-averaged per-slice PSNR
            difference (dB).
        p_value: Wilcoxon signed-rank test over the slices (two-sided); ``p_holm`` the same, Holm-adjusted over
            the claims of the table.
        seeds_agree / seeds: of the seed runs both rows finished (held-out subject and seed), how many lean the
            way the test does (the signed-rank direction of the run's own slices).
        slices: paired slices; split: ``test`` or ``val`` (the held-out subject, when there are no test subjects).
        verdict: ``holds`` or ``reversed`` (Holm-adjusted p < 0.05, the sign of the test's rank sums for or
            against the paper's, and every one of at least two shared seed runs leaning that way); else ``not
            significant``, ``one seed run``, ``seeds disagree``, or ``untested`` (no run of both rows pairs).
        plateaued: every trained run of both rows reached its plateau (else the claim compares step budgets).
    """

    reference: str
    row: str
    kind: str
    paper_diff: float
    diff: float
    median_diff: float
    p_value: float
    p_holm: float
    seeds_agree: int
    seeds: int
    slices: int
    split: str
    verdict: str
    plateaued: bool


def _paired_slices(
    ours: list[RunResult], theirs: list[RunResult], split: str
) -> tuple[list[float], list[float], list[int]]:
    """Per-slice PSNR of two rows, each averaged over the runs both finished (same held-out subject and seed), and
    which way each shared run leans on its own.

    On ``test``, every run scored the same test slices: one list. On ``val``, each held-out subject's slices in
    turn (``--folds``), concatenated.

    Returns:
        ``(a, b, leanings)``: paired slice scores, and per shared run the signed-rank direction of its own
        ``a - b`` (+1, -1 or 0, :func:`paired_test`).

    Raises:
        ValueError: no run is shared, or shared runs were scored on different numbers of slices.
    """
    import numpy as np

    def scores(r: RunResult) -> list[float]:
        return r.test_slice_psnr if split == "test" else r.slice_psnr

    mine = {(r.held_out, r.seed): scores(r) for r in ours}
    other = {(r.held_out, r.seed): scores(r) for r in theirs}
    shared = sorted(set(mine) & set(other))
    if not shared:
        raise ValueError("the two rows share no finished run")
    subjects = dict.fromkeys(subject for subject, _ in shared)
    groups = [shared] if split == "test" else [[k for k in shared if k[0] == s] for s in subjects]
    a, b, leanings = [], [], []
    for keys in groups:
        x = [mine[k] for k in keys]
        y = [other[k] for k in keys]
        if len({len(v) for v in x + y}) != 1:
            raise ValueError("runs that should pair slice by slice were scored on different slices")
        leanings += [paired_test(run_x, run_y).direction for run_x, run_y in zip(x, y)]
        a += np.mean(np.asarray(x, dtype=np.float64), axis=0).tolist()  # (runs, slices) -> (slices,)
        b += np.mean(np.asarray(y, dtype=np.float64), axis=0).tolist()
    return a, b, leanings


def _comparisons(suite: str, labels: list[str]) -> list[tuple[str, str, str]]:
    """``(higher, lower, kind)`` pairs the paper claims among ``labels``, each the way the paper orders it: its
    full model against every other row it prints (``full model``), and each other row above its neighbour below
    in the paper's ranking (``ordering``)."""
    from fasr.bench.quality.suites import PAPER

    reference, paper, _ = PAPER[suite]
    present = [label for label in labels if label in paper]
    pairs = []
    if reference in present:
        for row in present:
            if row != reference:
                hi, lo = (reference, row) if paper[reference] >= paper[row] else (row, reference)
                pairs.append((hi, lo, "full model"))
    ranked = sorted((label for label in present if label != reference), key=lambda k: -paper[k])
    pairs += [(hi, lo, "ordering") for hi, lo in zip(ranked, ranked[1:])]
    return pairs


def _verdict(p_holm: float, direction: int, paper_diff: float, agree: int, runs: int) -> str:
    """A claim holds (or is reversed) when the Holm-adjusted test is significant *and* at least two shared seed
    runs all lean the test's way: training noise must not decide it."""
    if p_holm >= SIGNIFICANCE or direction == 0:
        return "not significant"
    if runs < 2:
        return "one seed run"
    if agree < runs:
        return "seeds disagree"
    return "holds" if (direction > 0) == (paper_diff > 0) else "reversed"


def claims(suite: str, results: list[RunResult]) -> list[Claim]:
    """The paper's comparisons among the suite's rows (:func:`_comparisons`), tested on the test slices (the
    held-out subjects' without test subjects) over the runs both rows finished. A pair without such runs is
    ``untested`` (and outside the Holm family)."""
    from fasr.bench.quality.suites import PAPER

    _, paper, _ = PAPER[suite]
    by_label = {label: [r for r in results if r.label == label] for label in dict.fromkeys(r.label for r in results)}
    split = "test" if all(r.test_slice_psnr for r in results) else "val"
    tested, untested = [], []
    for hi, lo, kind in _comparisons(suite, list(by_label)):
        try:
            a, b, leanings = _paired_slices(by_label[hi], by_label[lo], split)
        except ValueError:
            untested.append((hi, lo, kind))
            continue
        tested.append((hi, lo, kind, paired_test(a, b), leanings))
    adjusted = holm([test.p_value for *_, test, _ in tested])
    found = []
    for (hi, lo, kind, test, leanings), p_holm in zip(tested, adjusted):
        paper_diff = paper[hi] - paper[lo]
        agree = sum(1 for d in leanings if d != 0 and d == test.direction)
        plateaued = _trained_runs_plateaued(by_label[hi] + by_label[lo])
        found.append(Claim(hi, lo, kind, paper_diff, test.mean_diff, test.median_diff, test.p_value, p_holm, agree,
                           len(leanings), test.n, split, _verdict(p_holm, test.direction, paper_diff, agree,
                                                                  len(leanings)), plateaued))
    nan = math.nan
    found += [Claim(hi, lo, kind, paper[hi] - paper[lo], nan, nan, nan, nan, 0, 0, 0, split, "untested", False)
              for hi, lo, kind in untested]
    return found


def _table(rows: list[RowSummary]) -> list[str]:
    tested = any(r.test_psnr_mean is not None for r in rows)
    head = "| row | val PSNR (dB) | val SSIM | val PSNR - bicubic |"
    head += " test PSNR (dB) | test PSNR - bicubic |" if tested else ""
    head += " last-20 % gain (dB) | params | steps | wall time / run (min) | runs |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        line = (f"| {r.label} | {_spread(r.psnr_mean, r.psnr_std, 2, r.runs)} | "
                f"{_spread(r.ssim_mean, r.ssim_std, 4, r.runs)} | {r.gain_mean:+.2f} |")
        if tested:
            line += (f" {_spread(r.test_psnr_mean, r.test_psnr_std, 2, r.runs)} | {r.test_gain_mean:+.2f} |"
                     if r.test_psnr_mean is not None else " - | - |")
        plateau = "-" if math.isnan(r.plateau_gain_max) else f"{r.plateau_gain_max:.2f}"
        plateau += "" if r.plateaued or not r.params else " †"
        steps = f"{r.steps}" if r.steps == r.steps_max else f"{r.steps}-{r.steps_max}"
        line += f" {plateau} | {r.params:,} | {steps} | {r.wall_s / 60:.1f} | {r.runs} |"
        lines.append(line)
    return lines


def _claim_lines(suite: str, found: list[Claim], rows: list[RowSummary]) -> list[str]:
    from fasr.bench.quality.suites import PAPER

    _, paper, source = PAPER[suite]
    tested = [c for c in found if c.verdict != "untested"]
    if not tested:
        return ["No claim tested: the suite has no two rows of the paper's table scored on the same slices."]
    split = tested[0].split
    score = {r.label: (r.test_psnr_mean if split == "test" else r.psnr_mean) for r in rows}
    here = " > ".join(sorted((k for k in score if k in paper), key=lambda k: -score[k]))
    there = " > ".join(sorted((k for k in paper if k in score), key=lambda k: -paper[k]))
    lines = [
        f"The paper's {source}, re-tested: each claim \"a > b\" (as the paper orders them) as the per-slice PSNR "
        f"difference a - b on the {split} slices, each row averaged over the seed runs both finished; its Wilcoxon "
        f"signed-rank p (two-sided) and that p Holm-adjusted over the {len(tested)} claims tested. A claim holds or "
        f"is reversed when the adjusted p < {SIGNIFICANCE} (direction: the test's rank sums) and at least two "
        "shared seed runs, each tested alone, all lean that way (column seeds: those that do, of those shared); "
        "the slices of one subject are correlated, so p alone would overstate the evidence. † a row of the claim "
        "stopped at the step budget before its plateau.",
        "",
        "| claim | kind | paper (dB) | here: mean / median (dB) | slices | seeds | p | p (Holm) | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in found:
        name = f"{c.reference} > {c.row}"
        if c.verdict == "untested":
            lines.append(f"| {name} | {c.kind} | {c.paper_diff:+.2f} | - | - | - | - | - | untested |")
            continue
        name += "" if c.plateaued else " †"
        lines.append(
            f"| {name} | {c.kind} | {c.paper_diff:+.2f} | {c.diff:+.2f} / {c.median_diff:+.2f} | {c.slices} | "
            f"{c.seeds_agree}/{c.seeds} | {c.p_value:.2g} | {c.p_holm:.2g} | {c.verdict} |"
        )
    lines += ["", f"- ranking here ({split} PSNR): {here}", f"- ranking in the paper: {there}"]
    return lines


def markdown(tables: dict[str, list[RowSummary]], found: dict[str, list[Claim]], meta: dict[str, Any]) -> str:
    """The ``<suite>.md`` tables (one per degradation), the claims and the provenance lines."""
    tested = f"; test subject(s) {', '.join(meta['test_subjects'])}, scored once" if meta["test_subjects"] else ""
    runs = sum(r.runs for rows in tables.values() for r in rows)
    lines = [
        f"# Quality benchmark: `{meta['suite']}`",
        "",
        f"{meta['task']}. Scores of the final weights ({meta['eval']}) on the held-out subject "
        f"{', '.join(meta['held_out'])}{tested}; mean ± sample standard deviation over each row's runs (column "
        f"runs: seeds x held-out subjects, {meta['runs_per_row']} asked for). Every row trains with the base "
        "config's recipe (losses, schedule, data) but for what the row changes. Last-20 % gain: the largest "
        "validation PSNR gain over the last 20 % of the steps among a row's runs; below 0.05 dB in every run the "
        "row has reached its plateau, else (†) it stopped at the step budget, equal for every row."
        + (f" The learning rate decays over each run ({meta['lr_decay']}), so a late plateau is partly the "
           "schedule's." if meta["lr_decay"] != "none" else ""),
    ]
    for degradation, rows in tables.items():
        lines += ["", f"## {degradation} LR", "", *_table(rows), "", "### Claims", ""]
        lines += _claim_lines(meta["suite"], found[degradation], rows)
    lines += [
        "",
        f"- command: `{meta['command']}`",
        f"- git commit: `{meta['commit']}`",
        f"- machine: {', '.join(f'{k} {v}' for k, v in meta['machine'].items())}",
        f"- date (UTC): {meta['date']}",
        f"- data: `{meta['data']}`; base config: `{meta['base']}`, plus `{json.dumps(meta['deltas'])}`"
        + (f" and `--set {' '.join(meta['overrides'])}`" if meta["overrides"] else ""),
        f"- degradations: {', '.join(meta['degradations'])}; seeds: {meta['seeds']}"
        + (f"; **a progress report: {runs} of the {meta['runs_asked']} runs finished so far**"
           + (" (`--finished-only`)" if meta["finished_only"] else " (others are still training elsewhere)")
           if meta["partial"] else ""),
        f"- step budget: {meta['budget']}",
        f"- compute: {meta['compute_hours']:.1f} h of training and scoring, summed over the {runs} runs tabulated"
        + (f", of which {meta['shared_compute_hours']:.1f} h in runs another suite's rows trained (counted in that "
           "suite too)" if meta.get("shared_compute_hours") else ""),
        "",
    ]
    return "\n".join(lines)


def score_figure(rows: list[RowSummary], title: str, path: Path) -> Path:
    """Bars of PSNR and SSIM per row with standard-deviation error bars."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 3.4), constrained_layout=True)
    for ax, metric, unit in zip(fig.subplots(1, 2), ("psnr", "ssim"), ("PSNR (dB)", "SSIM")):
        means = [getattr(r, f"{metric}_mean") for r in rows]
        stds = [getattr(r, f"{metric}_std") for r in rows]
        ax.bar([r.label for r in rows], means, yerr=stds, capsize=3, color="tab:blue")
        low, high = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
        pad = 0.15 * (high - low) or 0.05 * abs(high) or 1e-3
        ax.set_ylim(low - pad, high + pad)  # the differences matter, not the distance from zero
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=120)
    return path


def residual_figure(runs: dict[str, RunResult], path: Path) -> Path:
    """Fig. 8-style outputs and residual maps of every row's first run on the middle held-out slice (on CPU)."""
    import torch

    from fasr.checkpoint import load_model
    from fasr.data.datasets import build_dataset
    from fasr.evaluation.figures import residual_figure as draw
    from fasr.scoring.volumes import BICUBIC, predict_volumes

    cpu = torch.device("cpu")
    loaded = {label: load_model(Path(r.run_dir) / "last.pt", map_location=cpu) for label, r in runs.items()}
    models = {label: model for label, (model, _) in loaded.items()}
    cfg = next(iter(loaded.values()))[1]  # every run of the suite shares the data section and scale
    dataset = build_dataset(cfg.data, "val", scale=cfg.model.scale, train=False)
    volumes = predict_volumes(models, dataset, [len(dataset) // 2], batch_size=1, device=cpu)
    methods = list(dict.fromkeys([BICUBIC, *models]))  # bicubic first, also where it is not a row
    return draw([(volume, 0) for volume in volumes.values()], methods, path)


def curve_figure(runs: dict[str, RunResult], path: Path) -> Path | None:
    """Fig. 11-style validation PSNR during training of every trained row's first run (None if none trained)."""
    from fasr.checkpoint import METRICS_FILE
    from fasr.evaluation.figures import curve_figure as draw

    trained = {label: Path(r.run_dir) for label, r in runs.items() if (Path(r.run_dir) / METRICS_FILE).is_file()}
    return draw(trained, path) if trained else None
