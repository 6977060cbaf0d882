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
from fasr.bench.quality.runs import train_and_score
from fasr.bench.quality.suites import (
    DEFAULT_BASE,
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
from fasr.config import add_set_argument
from fasr.errors import FasrError, UsageError
from fasr.provenance import provenance

__all__ = ["DEFAULT_DATA", "DEFAULT_OUT", "add_arguments", "run"]

DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "brats"  # beside a source checkout
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"


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


def _step_budget(args: argparse.Namespace, base: dict, entries: list[Entry], runs_per_row: int) -> tuple[int, str]:
    """Steps per run and a sentence saying how they were chosen."""
    if args.quick:
        return QUICK_STEPS, f"fixed, {QUICK_STEPS} steps (--quick)"
    if args.steps:
        return args.steps, f"fixed, {args.steps} steps (--steps)"
    held_out = base["data"]["val_subjects"][0]
    timing = {e.label: seconds_per_step(run_config(base, e, held_out, 0, 1, args.overrides)) for e in entries}
    steps = steps_for_budget(timing, runs_per_row, args.budget_minutes * 60)
    per_step = ", ".join(f"{label} {seconds:.2f}" for label, seconds in timing.items())
    return steps, f"{args.budget_minutes:g} min of training steps -> {steps} steps (seconds per step: {per_step})"


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1 or (args.steps is not None and args.steps < 1) or args.budget_minutes <= 0:
        raise UsageError("--seeds and --steps must be at least 1 and --budget-minutes positive")
    out: Path = args.out
    outputs = {kind: out / f"{args.suite}{kind}" for kind in (".json", ".md", ".png", "-residuals.png", "-curves.png")}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.force:
        raise FasrError(f"{', '.join(existing)} exist(s); pass --force to overwrite or --out DIR to write elsewhere")
    entries = _entries(args.suite, args.only)

    base, deltas = task_base(args.base, args.data, args.suite, args.quick)
    subjects = find_subjects(base["data"])
    held_out = subjects if args.folds else subjects[-1:]
    base["data"]["val_subjects"] = held_out[:1]
    seeds = range(args.seeds)
    eval_slices = QUICK_EVAL_SLICES if args.quick else args.eval_slices
    steps, budget = _step_budget(args, base, entries, len(held_out) * len(seeds))
    print(f"fasr bench quality --suite {args.suite}: {len(entries)} rows x {len(held_out) * len(seeds)} runs; {budget}")

    results, first_runs = [], {}
    for entry in entries:
        for subject in held_out:
            for seed in seeds:
                cfg = run_config(base, entry, subject, seed, steps, args.overrides)
                run_dir = out / "runs" / args.suite / entry.label / f"{subject}-seed{seed}"
                result = train_and_score(cfg, entry.label, run_dir, eval_slices)
                print(f"  {entry.label} [{subject}, seed {seed}]: PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.4f}")
                results.append(result)
                first_runs.setdefault(entry.label, result)

    rows = report.summarize(results)
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
        "seeds": args.seeds,
        "runs_per_row": len(held_out) * len(seeds),
        "steps": steps,
        "budget": budget,
    }
    out.mkdir(parents=True, exist_ok=True)
    record = {**meta, "rows": [asdict(r) for r in rows], "runs": [asdict(r) for r in results]}
    outputs[".json"].write_text(json.dumps(record, indent=1))
    outputs[".md"].write_text(report.markdown(rows, meta))
    title = f"fasr bench quality --suite {args.suite}: {steps} steps per run"
    written = [
        outputs[".json"],
        outputs[".md"],
        report.score_figure(rows, title, outputs[".png"]),
        report.residual_figure(first_runs, outputs["-residuals.png"]),
        report.curve_figure(first_runs, outputs["-curves.png"]),
    ]
    print(f"wrote {', '.join(str(p) for p in written if p is not None)}")
    return 0
