"""``fasr bench quality``: train every method of a suite the same way on the same data, score it, tabulate.

Suites (the paper's tables): ``methods`` (Table I: bicubic, EDSR, SwinIR, MCSR, MINet, TTSR, FASR), ``modules``
(Table III), ``losses`` (Table IV), ``backbones`` (Table II). Every run of a suite starts from one base config
(``configs/cpu-quick.yaml``) with the benchmark task on top (x4, T2 from T1, BraTS), gets the same split and the
same number of optimiser steps, is trained by :func:`fasr.training.trainer.train` and scored by
:func:`fasr.evaluation.evaluate.evaluate_checkpoint` on the held-out subject. Ablation rows are the deltas in
``configs/ablations/``.

Step budget: ``--steps N`` fixes it; otherwise each row's seconds per optimiser step are timed (a few steps on
random tensors of the configured batch and patch) and ``steps = budget / sum over runs of seconds per step``,
so the training steps of the whole suite fill ``--budget-minutes``; data loading, validation and scoring come on
top and are part of each run's reported wall time. The final weights (``last.pt``) are scored, never a
checkpoint selected on the scored subject.

Outputs in ``--out``: ``<suite>.json`` and ``<suite>.md`` (per row: PSNR and SSIM mean and standard deviation
over seeds and folds, parameters, steps, wall time; git commit, command, machine), ``<suite>.png`` (scores with
error bars), ``<suite>-residuals.png`` (outputs and residual maps on one held-out slice, like Fig. 8) and
``<suite>-curves.png`` (validation PSNR during training, like Fig. 11). Run folders live in
``<out>/runs/<suite>/``; a finished run whose config, scoring and source code are unchanged is reused, so an
interrupted suite continues where it stopped.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fasr.config import RunConfig, add_set_argument, apply_overrides, from_dict, read_yaml, to_dict
from fasr.errors import FasrError

__all__ = [
    "METHODS",
    "SUITES",
    "Entry",
    "RunResult",
    "RowSummary",
    "suite_entries",
    "deep_merge",
    "find_subjects",
    "stretch_schedule",
    "run_config",
    "seconds_per_step",
    "steps_for_budget",
    "source_fingerprint",
    "train_and_score",
    "summarize",
    "add_arguments",
    "run",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
ABLATIONS = REPO_ROOT / "configs" / "ablations"
DEFAULT_BASE = REPO_ROOT / "configs" / "cpu-quick.yaml"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "brats"
DEFAULT_OUT = REPO_ROOT / "benchmarks" / "results"

METHODS = ("bicubic", "edsr", "swinir", "mcsr", "minet", "ttsr", "fasr")
# Row names: ``model.name`` for ``methods``, ablation file stems for the others.
SUITES: dict[str, tuple[str, ...]] = {
    "methods": METHODS,
    "modules": ("complete", "wo-sa", "wo-ma", "wo-chpf", "wo-fa"),
    "losses": ("all-losses", "wo-l1", "wo-perceptual", "wo-fourier"),
    "backbones": ("vgg19", "resnet18", "resnet34"),
}
# The benchmark task (issue 6): x4, T2 target from a T1 reference, BraTS subjects, one held out for validation;
# quiet logs and a short in-training validation (it only feeds the curves: the final weights are scored apart).
TASK_DELTA = {
    "model": {"scale": 4},
    "data": {"kind": "brats", "target": "t2", "reference": "t1", "test_subjects": []},
    "log": {"tensorboard": False, "progress": False, "image_every": 0, "val_max_slices": 8},
}
VALIDATIONS = 10  # in-training validations per run (at most, plus one at the end)
# Applied to every run of a suite before the row's delta. The perceptual loss must use one VGG19 for every method
# and the baselines have no texture extractor to borrow, so ``methods`` trains without it unless ImageNet
# weights are given (``--set loss.perceptual=1 --set loss.perceptual_weights=vgg19.pth``).
SUITE_DELTAS: dict[str, dict] = {"methods": {"loss": {"perceptual": 0.0}}}
# --quick: proves the pipeline end to end in a minute or two; the numbers mean nothing.
QUICK_STEPS = 2
QUICK_EVAL_SLICES = 2
QUICK_DELTA = {
    "data": {"patch_size": 32, "slice_size": 64, "batch_size": 1, "augment": False},
    "log": {"val_max_slices": QUICK_EVAL_SLICES},
}
_MISSING = "run from a fasr source checkout or pass --base FILE"
TIMED_STEPS = 3  # budget calibration: timed optimiser steps per row, after one untimed warm-up step
RECORD = "bench.json"  # in each run folder: what the run was (config, scoring, source) and its result


@dataclass(frozen=True)
class Entry:
    """One row of a suite.

    Attributes:
        label: row name (method or ablation file stem).
        delta: nested config mapping merged over the suite's base config.
    """

    label: str
    delta: dict


@dataclass
class RunResult:
    """One trained and scored (row, held-out subject, seed).

    Attributes:
        label: row name.
        held_out: validation subject.
        seed: training seed.
        psnr / ssim: scores on the held-out subject (``evaluate_checkpoint``, fastMRI convention).
        bicubic_psnr / bicubic_ssim: bicubic on the same slices.
        params: model parameters.
        steps: optimiser steps trained.
        wall_s: seconds of training (with data loading and validation) and scoring.
        run_dir: the run folder.
    """

    label: str
    held_out: str
    seed: int
    psnr: float
    ssim: float
    bicubic_psnr: float
    bicubic_ssim: float
    params: int
    steps: int
    wall_s: float
    run_dir: str


@dataclass
class RowSummary:
    """A results-table row: scores as mean and sample standard deviation over the row's runs.

    ``gain_mean`` is the mean PSNR gain over bicubic on the same slices (dB).
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


# -- suite rows and run configs ------------------------------------------------------------------------------


def deep_merge(base: dict, delta: dict) -> dict:
    """A copy of ``base`` with ``delta`` merged in (nested mappings merged, other values replaced)."""
    merged = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def suite_entries(suite: str, ablations: Path = ABLATIONS) -> list[Entry]:
    """The rows of ``suite`` with their config deltas.

    Args:
        suite: a key of :data:`SUITES`.
        ablations: folder of the ablation deltas (``<row>.yaml``).
    """
    if suite not in SUITES:
        raise FasrError(f"unknown suite '{suite}'; choose one of {sorted(SUITES)}")
    if suite == "methods":
        return [Entry(name, {"model": {"name": name}}) for name in METHODS]
    return [Entry(name, read_yaml(ablations / f"{name}.yaml", _MISSING)) for name in SUITES[suite]]


def find_subjects(data: dict) -> list[str]:
    """Sorted subject ids of the dataset that a (partial) data section describes, as the data layer finds them.

    Args:
        data: the ``data`` mapping of the base config (``kind``, ``root``, ``target``, ``reference``, ...).
    """
    from fasr.data.config import DataConfig
    from fasr.data.layouts import find_pairs

    cfg = from_dict(DataConfig, data, "data")
    subjects = [p.subject for p in find_pairs(cfg)]
    if len(subjects) < 2:
        raise FasrError(
            f"'{cfg.root}' has {len(subjects)} subject(s) with {cfg.target} and {cfg.reference}; "
            "the benchmark needs at least 2 (train on the rest, validate on one)"
        )
    return subjects


def stretch_schedule(cfg: RunConfig, steps: int) -> dict:
    """Config delta that runs ``cfg``'s recipe for ``steps`` optimiser steps with the same shape.

    Epochs keep their length (``schedule.steps_per_epoch``) and their number becomes ``ceil(steps / length)``;
    the L1 warm-up and the step-decay period keep their fraction of the run (a cosine decay spans the run by
    itself); validation runs about :data:`VALIDATIONS` times.

    Args:
        cfg: the run config before stretching (base, row delta and overrides).
        steps: optimiser steps of the run.
    """
    s = cfg.schedule
    if s.steps_per_epoch <= 0:
        raise FasrError(
            "the benchmark needs epochs of a fixed length: set schedule.steps_per_epoch in the base config "
            "or pass --set schedule.steps_per_epoch=20"
        )
    epochs = math.ceil(steps / s.steps_per_epoch)
    ratio = epochs / s.epochs
    return {
        "schedule": {
            "max_steps": steps,
            "epochs": epochs,
            "decay_every": max(1, round(s.decay_every * ratio)),
            "val_every": max(1, math.ceil(epochs / VALIDATIONS)),
        },
        "loss": {"warmup_epochs": round(cfg.loss.warmup_epochs * ratio)},
    }


def run_config(base: dict, entry: Entry, held_out: str, seed: int, steps: int, overrides: list[str]) -> RunConfig:
    """The config of one run: base, the row's delta, split and seed, the schedule stretched to ``steps``.

    ``--set`` overrides are applied before stretching (so that they shape it) and again after (so they win).

    Args:
        base: base config mapping (task and suite deltas already merged).
        entry: the row.
        held_out: validation subject (every other subject trains).
        seed: training seed.
        steps: optimiser steps of the run.
        overrides: ``key=value`` strings.
    """
    data = deep_merge(base, entry.delta)
    data = deep_merge(data, {"seed": seed, "data": {"val_subjects": [held_out]}})
    unstretched = from_dict(RunConfig, apply_overrides(copy.deepcopy(data), overrides))
    data = deep_merge(data, stretch_schedule(unstretched, steps))
    return from_dict(RunConfig, apply_overrides(data, overrides))


# -- step budget ---------------------------------------------------------------------------------------------


def seconds_per_step(cfg: RunConfig, repeats: int = TIMED_STEPS) -> float:
    """Median seconds of one optimiser step (forward, every loss term, backward, Adam) on random tensors.

    Uses the run's model, loss, batch and patch size; 0 for a model without parameters.

    Args:
        cfg: the run config.
        repeats: timed steps after one warm-up step.
    """
    import torch

    from fasr.models import build_model
    from fasr.training.losses import build_loss

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return 0.0
    loss, _ = build_loss(cfg.loss.resolved(), model, cfg.model.feature_levels)
    optimizer = torch.optim.Adam(params)
    size, batch = cfg.data.patch_size, cfg.data.batch_size
    lr_image = torch.rand(batch, 1, size // cfg.model.scale, size // cfg.model.scale) * 2 - 1
    ref, hr = torch.rand(2, batch, 1, size, size) * 2 - 1
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss(model(lr_image, ref).sr, hr, epoch=cfg.loss.warmup_epochs).total.backward()  # after the warm-up
        optimizer.step()
        if i:  # the first step pays one-off allocations
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def steps_for_budget(step_seconds: dict[str, float], runs_per_row: int, budget_s: float) -> int:
    """The one step count for every row such that all training steps of the suite fit ``budget_s``.

    Args:
        step_seconds: seconds per optimiser step by row.
        runs_per_row: seeds x held-out subjects.
        budget_s: training budget of the whole suite in seconds.
    """
    per_step = sum(step_seconds.values()) * runs_per_row
    if per_step <= 0:
        return 0
    steps = int(budget_s // per_step)
    if steps < 1:
        raise FasrError(
            f"--budget-minutes {budget_s / 60:g} is too small: one step of every run takes {per_step:.1f} s; "
            "raise the budget or pass --steps N"
        )
    return steps


# -- training and scoring ------------------------------------------------------------------------------------


def source_fingerprint() -> str:
    """SHA-256 of the ``fasr`` package's Python sources: a finished run is only reused by the same code."""
    package = REPO_ROOT / "fasr"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def train_and_score(cfg: RunConfig, label: str, run_dir: Path, eval_slices: int) -> RunResult:
    """Train one run and score its final weights on the held-out subject, or reuse the run's finished record.

    The record is reused when the config, the scoring and the source are unchanged; otherwise the run folder
    (the benchmark's own) is cleared and the run starts over.

    Args:
        cfg: the run config (a model without parameters is scored untrained).
        label: row name.
        run_dir: run folder.
        eval_slices: score this many evenly spaced held-out slices (0 = all).
    """
    from fasr.checkpoint import load_checkpoint, save_checkpoint
    from fasr.evaluation.evaluate import evaluate_checkpoint
    from fasr.scoring.volumes import BICUBIC
    from fasr.training.trainer import train

    record = run_dir / RECORD
    key = {"config": to_dict(cfg), "eval_slices": eval_slices, "source": source_fingerprint()}
    key = json.loads(json.dumps(key))  # as it reads back from the record (tuples become lists)
    if record.is_file():
        stored = json.loads(record.read_text())
        if stored["key"] == key:
            return RunResult(**stored["result"])
        record.unlink()  # the folder's weights are about to change
    start = time.perf_counter()
    checkpoint, params = run_dir / "last.pt", _parameters(cfg)
    if params == 0:  # nothing to learn (bicubic): a weightless checkpoint is scored the same way
        run_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, {"model": {}, "config": to_dict(cfg), "step": 0})
    else:
        train(cfg, run_dir, resume=False, force=True)
    scores = evaluate_checkpoint(
        checkpoint, cfg, split="val", convention="fastmri", max_slices=eval_slices, batch_size=cfg.data.batch_size
    )
    steps = int(load_checkpoint(checkpoint)["step"])
    if params and steps != cfg.schedule.max_steps:
        print(f"  warning: {label} trained {steps} of {cfg.schedule.max_steps} steps")
    result = RunResult(
        label=label,
        held_out=cfg.data.val_subjects[0],
        seed=cfg.seed,
        psnr=scores[cfg.model.name]["psnr"],
        ssim=scores[cfg.model.name]["ssim"],
        bicubic_psnr=scores[BICUBIC]["psnr"],
        bicubic_ssim=scores[BICUBIC]["ssim"],
        params=params,
        steps=steps,
        wall_s=round(time.perf_counter() - start, 1),
        run_dir=str(run_dir),
    )
    record.write_text(json.dumps({"key": key, "result": asdict(result)}, indent=1))
    return result


def _parameters(cfg: RunConfig) -> int:
    from fasr.models import build_model

    return sum(p.numel() for p in build_model(cfg.model).parameters())


def summarize(results: list[RunResult]) -> list[RowSummary]:
    """One row per label (in first-seen order): mean and sample standard deviation over its runs."""
    rows = []
    for label in dict.fromkeys(r.label for r in results):
        runs = [r for r in results if r.label == label]
        psnr, ssim = [r.psnr for r in runs], [r.ssim for r in runs]
        rows.append(
            RowSummary(
                label=label,
                psnr_mean=statistics.fmean(psnr),
                psnr_std=statistics.stdev(psnr) if len(runs) > 1 else 0.0,
                ssim_mean=statistics.fmean(ssim),
                ssim_std=statistics.stdev(ssim) if len(runs) > 1 else 0.0,
                gain_mean=statistics.fmean(r.psnr - r.bicubic_psnr for r in runs),
                params=runs[0].params,
                steps=runs[0].steps,
                wall_s=statistics.fmean(r.wall_s for r in runs),
                runs=len(runs),
            )
        )
    return rows


# -- provenance and outputs ----------------------------------------------------------------------------------


def _git_commit() -> str:
    """HEAD of the source checkout, with ``+dirty`` when it has uncommitted changes; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        status = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.stdout.strip() else "")


def _machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def _markdown(rows: list[RowSummary], meta: dict[str, Any]) -> str:
    lines = [
        f"# Quality benchmark: `{meta['suite']}`",
        "",
        f"{meta['task']}. Scores of the final weights on the held-out subject ({meta['eval']}), mean ± sample "
        f"standard deviation over {meta['runs_per_row']} run(s) per row (seeds x held-out subjects).",
        "",
        "| row | PSNR (dB) | SSIM | PSNR - bicubic (dB) | params | steps | wall time / run (min) | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.label} | {r.psnr_mean:.2f} ± {r.psnr_std:.2f} | {r.ssim_mean:.4f} ± {r.ssim_std:.4f} | "
        f"{r.gain_mean:+.2f} | {r.params:,} | {r.steps} | {r.wall_s / 60:.1f} | {r.runs} |"
        for r in rows
    ]
    lines += [
        "",
        f"- command: `{meta['command']}`",
        f"- git commit: `{meta['commit']}`",
        f"- machine: {', '.join(f'{k} {v}' for k, v in meta['machine'].items())}",
        f"- date (UTC): {meta['date']}",
        f"- data: `{meta['data']}`; base config: `{meta['base']}`, plus `{json.dumps(meta['deltas'])}`"
        + (f" and `--set {' '.join(meta['overrides'])}`" if meta["overrides"] else ""),
        f"- held-out subject(s): {', '.join(meta['held_out'])}; seeds: {meta['seeds']}",
        f"- step budget: {meta['budget']}",
        "",
    ]
    return "\n".join(lines)


def _score_figure(rows: list[RowSummary], title: str, path: Path) -> Path:
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


def _residual_figure(runs: dict[str, RunResult], path: Path) -> Path:
    """Fig. 8-style outputs and residual maps of every row's first run on the middle held-out slice."""
    import torch

    from fasr.checkpoint import load_model
    from fasr.data.datasets import build_dataset
    from fasr.evaluation.figures import residual_figure
    from fasr.scoring.volumes import BICUBIC, predict_volumes

    cpu = torch.device("cpu")
    loaded = {label: load_model(Path(r.run_dir) / "last.pt", map_location=cpu) for label, r in runs.items()}
    models = {label: model for label, (model, _) in loaded.items()}
    cfg = next(iter(loaded.values()))[1]  # every run of the suite shares the data section and scale
    dataset = build_dataset(cfg.data, "val", scale=cfg.model.scale, train=False)
    volumes = predict_volumes(models, dataset, [len(dataset) // 2], batch_size=1, device=cpu)
    methods = list(dict.fromkeys([BICUBIC, *models]))  # bicubic first, also where it is not a row
    return residual_figure([(volume, 0) for volume in volumes.values()], methods, path)


def _curve_figure(runs: dict[str, RunResult], path: Path) -> Path | None:
    """Fig. 11-style validation PSNR during training of every trained row's first run (None if none trained)."""
    from fasr.checkpoint import METRICS_FILE
    from fasr.evaluation.figures import curve_figure

    trained = {label: Path(r.run_dir) for label, r in runs.items() if (Path(r.run_dir) / METRICS_FILE).is_file()}
    return curve_figure(trained, path) if trained else None


# -- command line --------------------------------------------------------------------------------------------


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
        raise FasrError(f"--only {','.join(unknown)}: not a row of suite '{suite}' ({', '.join(SUITES[suite])})")
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
        raise FasrError("--seeds and --steps must be at least 1 and --budget-minutes positive")
    out: Path = args.out
    outputs = {kind: out / f"{args.suite}{kind}" for kind in (".json", ".md", ".png", "-residuals.png", "-curves.png")}
    existing = [str(p) for p in outputs.values() if p.exists()]
    if existing and not args.force:
        raise FasrError(f"{', '.join(existing)} exist(s); pass --force to overwrite or --out DIR to write elsewhere")
    entries = _entries(args.suite, args.only)

    deltas = deep_merge(TASK_DELTA, SUITE_DELTAS.get(args.suite, {}))
    deltas = deep_merge(deltas, QUICK_DELTA if args.quick else {})
    base = deep_merge(read_yaml(args.base, _MISSING), deltas)
    base = deep_merge(base, {"data": {"root": str(args.data.resolve())}})
    subjects = find_subjects(base["data"])
    held_out = subjects if args.folds else subjects[-1:]
    base = deep_merge(base, {"data": {"val_subjects": held_out[:1]}})
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

    rows = summarize(results)
    meta = {
        "suite": args.suite,
        "task": "x4 super-resolution of T2 from a T1 reference (BraTS), trained on the other subjects",
        "eval": f"fastMRI convention, {eval_slices or 'all'} evenly spaced slices",
        "command": shlex.join(["fasr", *sys.argv[1:]]),
        "commit": _git_commit(),
        "machine": _machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"),
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
    report = {**meta, "rows": [asdict(r) for r in rows], "runs": [asdict(r) for r in results]}
    outputs[".json"].write_text(json.dumps(report, indent=1))
    outputs[".md"].write_text(_markdown(rows, meta))
    written = [
        outputs[".json"],
        outputs[".md"],
        _score_figure(rows, f"fasr bench quality --suite {args.suite}: {steps} steps per run", outputs[".png"]),
        _residual_figure(first_runs, outputs["-residuals.png"]),
        _curve_figure(first_runs, outputs["-curves.png"]),
    ]
    print(f"wrote {', '.join(str(p) for p in written if p is not None)}")
    return 0
