"""``fasr bench quality`` command line: options, the step budget of a suite, its runs and its outputs (see
:mod:`fasr.bench.quality`)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

from fasr.bench.quality import report
from fasr.bench.quality.budget import seconds_per_step, steps_for_budget
from fasr.bench.quality.runs import RunResult, as_stored, claimed, finished_anywhere, held, train_and_score
from fasr.bench.quality.suites import (
    DEFAULT_BASE,
    DEGRADATIONS,
    QUICK_EVAL_SLICES,
    QUICK_STEPS,
    REPO_ROOT,
    SUITES,
    Entry,
    find_subjects,
    run_config,
    suite_entries,
    task_base,
)
from fasr.config import RunConfig, add_set_argument, deep_merge, from_dict
from fasr.errors import FasrError, UsageError
from fasr.files import atomic_write_text
from fasr.provenance import provenance

__all__ = ["DEFAULT_DATA", "DEFAULT_OUT", "add_arguments", "run"]

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "brats"  # beside a source checkout
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"
BUDGET_FILE = "budget.json"  # in a suite's runs folder: the step count --budget-minutes was timed to


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, choices=sorted(SUITES), help="which table to regenerate")
    parser.add_argument(
        "--budget-minutes", type=float, default=30.0, help="training time of the whole suite, sets the step count"
    )
    parser.add_argument("--steps", type=int, help="fixed optimiser steps per run (instead of --budget-minutes)")
    parser.add_argument("--seeds", type=int, default=1, help="training seeds per row (0, 1, ...)")
    parser.add_argument("--folds", action="store_true", help="hold out each subject in turn (default: the last)")
    parser.add_argument(
        "--quick", action="store_true", help=f"pipeline check: {QUICK_STEPS} steps on one 32 px crop, 64 px slices"
    )
    parser.add_argument("--only", help="comma-separated subset of the suite's rows")
    parser.add_argument("--eval-slices", type=int, default=32, help="held-out slices scored, evenly spaced (0 = all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default benchmarks/results)")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE, help="base config (default configs/cpu-quick.yaml)")
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="BraTS-layout data root (default ../shared/data/brats)"
    )
    add_set_argument(parser, "loss.perceptual_weights=vgg19.pth")  # applied to every run
    parser.add_argument(
        "--degradation", default="bicubic",
        help=f"comma-separated LRs to train and score on, each its own table: {', '.join(DEGRADATIONS)} "
        "(default bicubic, the paper's)",
    )
    parser.add_argument(
        "--test-subjects", nargs="+", default=[], metavar="SUBJECT",
        help="never trained on nor validated with; each run's final weights are scored on them once, at the end",
    )
    parser.add_argument(
        "--keep-runs", action="store_true",
        help="reuse and resume runs of the same config trained by other source code (a suite run over days)",
    )
    parser.add_argument(
        "--finished-only", action="store_true",
        help="train nothing: tabulate the runs already finished (a progress report while the suite runs elsewhere)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing results files")


def _entries(suite: str, only: str | None) -> list[Entry]:
    entries = suite_entries(suite)
    if not only:
        return entries
    wanted = [s.strip() for s in only.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {e.label for e in entries})
    if unknown:
        raise UsageError(f"--only {','.join(unknown)}: not a row of suite '{suite}' ({', '.join(SUITES[suite])})")
    return [e for e in entries if e.label in wanted]


def _display(path: Path) -> str:
    """``path`` relative to the repository root when it lies beside it (``../shared/data/brats``), else absolute."""
    resolved = path.resolve()
    return os.path.relpath(resolved, REPO_ROOT) if resolved.is_relative_to(REPO_ROOT.parent) else str(resolved)


def _residuals(runs: dict[str, RunResult], path: Path) -> Path | None:
    """The residual figure of the rows whose run folder still has its weights (records alone have none); the
    bicubic row needs none (the figure always shows bicubic). No figure at all removes an earlier one."""
    weighed = {label: r for label, r in runs.items() if (Path(r.run_dir) / "last.pt").is_file()}
    left = [label for label, r in runs.items() if label not in weighed and r.params > 0]
    if left:
        print(f"{path.name}: left out {', '.join(left)} (a run folder with its records but not its weights)")
    if not weighed:
        path.unlink(missing_ok=True)  # never beside tables it was not drawn from
        return None
    return report.residual_figure(weighed, path)


def _step_budget(
    args: argparse.Namespace, base: dict, entries: list[Entry], runs_per_row: int, suite_dir: Path
) -> tuple[int, str]:
    """Steps per run and a sentence saying how they were chosen.

    A ``--budget-minutes`` count is timed once per budget, rows, runs per row, base config and ``--set``
    overrides, and kept in ``suite_dir/budget.json``: every later or parallel process of the suite (and
    ``--finished-only``) uses the same count, whatever the load on the cores when it starts, so that they train
    and find the same runs.
    """
    if args.quick:
        return QUICK_STEPS, f"fixed, {QUICK_STEPS} steps (--quick)"
    if args.steps:
        return args.steps, f"fixed, {args.steps} steps (--steps)"
    path = suite_dir / BUDGET_FILE
    asked = as_stored({
        "budget_minutes": args.budget_minutes,
        "rows": [e.label for e in entries],
        "runs_per_row": runs_per_row,
        "base": base,
        "overrides": args.overrides,
    })
    suite_dir.mkdir(parents=True, exist_ok=True)
    with held(suite_dir / f".{BUDGET_FILE}.lock"):  # one process times, the others wait and read its count
        kept = json.loads(path.read_text()) if path.is_file() else []
        for entry in kept:
            if entry["asked"] == asked:
                return entry["steps"], entry["budget"]
        if args.finished_only:
            raise UsageError(
                f"--finished-only: no step count was timed for this --budget-minutes {args.budget_minutes:g} "
                f"and these rows in {path}; pass the --steps N or the options the suite was trained with"
            )
        held_out = base["data"]["val_subjects"][0]
        timing = {e.label: seconds_per_step(run_config(base, e, held_out, 0, 1, args.overrides)) for e in entries}
        steps = steps_for_budget(timing, runs_per_row, args.budget_minutes * 60)
        per_step = ", ".join(f"{label} {seconds:.2f}" for label, seconds in timing.items())
        budget = f"{args.budget_minutes:g} min of training steps -> {steps} steps (seconds per step: {per_step})"
        atomic_write_text(path, json.dumps([*kept, {"asked": asked, "steps": steps, "budget": budget}], indent=1))
    return steps, budget


def _degradations(text: str) -> list[str]:
    names = [d.strip() for d in text.split(",") if d.strip()]
    unknown = sorted(set(names) - set(DEGRADATIONS))
    if unknown or not names:
        raise UsageError(f"--degradation {text}: choose from {', '.join(DEGRADATIONS)} (comma-separated)")
    return list(dict.fromkeys(names))


def _train_and_score(cfg: RunConfig, label: str, run_dir: Path, eval_slices: int, keep_runs: bool) -> RunResult:
    """:func:`train_and_score`; a stopped training says how the suite goes on (the same command resumes it)."""
    from fasr.training.trainer import TrainingInterrupted

    try:
        return train_and_score(cfg, label, run_dir, eval_slices, keep_runs)
    except TrainingInterrupted as exc:
        raise TrainingInterrupted(
            f"suite stopped while training {run_dir} (its last.pt is kept); run the same command again (with "
            "--force where its results files exist) to resume it and go on with the suite"
        ) from exc


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1 or (args.steps is not None and args.steps < 1) or args.budget_minutes <= 0:
        raise UsageError("--seeds and --steps must be at least 1 and --budget-minutes positive")
    degradations = _degradations(args.degradation)
    out: Path = args.out
    outputs = {kind: out / f"{args.suite}{kind}" for kind in (".json", ".md", ".png", "-residuals.png", "-curves.png")}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.force:
        raise FasrError(f"{', '.join(existing)} exist(s); pass --force to overwrite or --out DIR to write elsewhere")
    entries = _entries(args.suite, args.only)

    base, deltas = task_base(args.base, args.data, args.suite, args.quick)
    subjects = find_subjects(base["data"])
    unknown = sorted(set(args.test_subjects) - set(subjects))
    if unknown:
        raise UsageError(f"--test-subjects {' '.join(unknown)}: not in {args.data} ({', '.join(subjects)})")
    candidates = [s for s in subjects if s not in args.test_subjects]
    if len(candidates) < 2:
        raise UsageError("--test-subjects leaves fewer than 2 subjects to train on and validate with")
    base["data"]["test_subjects"] = list(args.test_subjects)
    held_out = candidates if args.folds else candidates[-1:]
    base["data"]["val_subjects"] = held_out[:1]
    seeds = range(args.seeds)
    eval_slices = QUICK_EVAL_SLICES if args.quick else args.eval_slices
    runs_dir = out / "runs" / args.suite
    steps, budget = _step_budget(args, base, entries, len(held_out) * len(seeds) * len(degradations), runs_dir)
    runs_per_row = len(held_out) * len(seeds)
    print(f"fasr bench quality --suite {args.suite}: {len(entries)} rows x {runs_per_row} runs x "
          f"{len(degradations)} degradation(s); {budget}")

    results, first_runs, elsewhere = [], {}, []
    # Seeds outermost: a suite stopped part-way (or restarted over days) has whole tables of its first seeds.
    for seed in seeds:
        for degradation in degradations:
            mapping = deep_merge(base, DEGRADATIONS[degradation])
            for entry in entries:
                for subject in held_out:
                    cfg = run_config(mapping, entry, subject, seed, steps, args.overrides)
                    run_dir = runs_dir / entry.label / degradation / f"{subject}-seed{seed}"
                    result = finished_anywhere(cfg, entry.label, run_dir, eval_slices, args.keep_runs)
                    if result is None and args.finished_only:
                        continue
                    if result is None:
                        with claimed(run_dir) as owner:
                            if owner is not None:
                                print(f"  {entry.label} [{degradation}, {subject}, seed {seed}]: skipped, process "
                                      f"{owner['pid']} on {owner['host']} holds it")
                                elsewhere.append((cfg, entry.label, run_dir))
                                continue
                            result = _train_and_score(cfg, entry.label, run_dir, eval_slices, args.keep_runs)
                    test = f"; test {result.test_psnr:.2f} dB" if result.test_psnr is not None else ""
                    print(f"  {entry.label} [{degradation}, {subject}, seed {seed}]: PSNR {result.psnr:.2f} dB, "
                          f"SSIM {result.ssim:.4f}{test}")
                    results.append(result)
                    first_runs.setdefault(entry.label, result)

    # Runs another process held: tabulated when it has finished them meanwhile.
    unfinished = 0
    for cfg, label, run_dir in elsewhere:
        result = finished_anywhere(cfg, label, run_dir, eval_slices, args.keep_runs)
        if result is None:
            unfinished += 1
            continue
        results.append(result)
        first_runs.setdefault(label, result)
    if not results:
        raise FasrError(f"no finished run of suite '{args.suite}' in {out / 'runs'}; drop --finished-only to train")
    degradations = [d for d in degradations if any(r.degradation == d for r in results)]
    tables = {d: report.summarize([r for r in results if r.degradation == d]) for d in degradations}
    made = provenance(shlex.join(["fasr", *sys.argv[1:]]))
    meta = {
        "suite": args.suite,
        "task": "x4 super-resolution of T2 from a T1 reference (BraTS), trained on the other subjects",
        "eval": f"fastMRI convention, {eval_slices or 'all'} evenly spaced slices",
        **made,
        "base": _display(args.base),
        "data": _display(args.data),
        "deltas": deltas,
        "overrides": args.overrides,
        "held_out": held_out,
        "test_subjects": list(args.test_subjects),
        "degradations": degradations,
        "seeds": args.seeds,
        "runs_per_row": runs_per_row,
        "steps": steps,
        "budget": budget,
        "lr_decay": from_dict(RunConfig, base).schedule.decay,
        "compute_hours": sum(r.wall_s for r in results) / 3600,  # training and scoring, every run tabulated
        # ... of which in runs of another suite's rows (<out>/runs/<suite>/<row>/<degradation>/<run>), counted there
        "shared_compute_hours": sum(r.wall_s for r in results if Path(r.run_dir).parents[2].name != args.suite) / 3600,
        "finished_only": args.finished_only,
        "partial": args.finished_only or unfinished > 0,  # some runs asked for are not in the tables
        "runs_asked": len(entries) * runs_per_row * len(degradations),
    }
    claims = {d: report.claims(args.suite, [r for r in results if r.degradation == d]) for d in degradations}
    out.mkdir(parents=True, exist_ok=True)
    record = {
        **meta,
        "tables": {d: [asdict(r) for r in rows] for d, rows in tables.items()},
        "claims": {d: [asdict(c) for c in rows] for d, rows in claims.items()},
        "runs": [asdict(r) for r in results],
    }
    # Whole files only (another process of the suite may write them too): written aside, then renamed.
    atomic_write_text(outputs[".json"], json.dumps(record, indent=1))
    atomic_write_text(outputs[".md"], report.markdown(tables, claims, meta))
    title = f"fasr bench quality --suite {args.suite}: {steps} steps per run ({degradations[0]} LR)"
    written = [
        outputs[".json"],
        outputs[".md"],
        report.score_figure(tables[degradations[0]], title, outputs[".png"]),
        _residuals(first_runs, outputs["-residuals.png"]),
        report.curve_figure(first_runs, outputs["-curves.png"]),
    ]
    print(f"wrote {', '.join(str(p) for p in written if p is not None)}")
    return 0
