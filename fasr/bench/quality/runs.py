"""Training and scoring of one benchmark run, with the run cache: a finished run whose config (and scoring) and
source code are unchanged is reused."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from fasr.bench.quality.suites import DEFAULT_BASE, find_subjects, named_entry, run_config, task_base
from fasr.config import RunConfig, to_dict

__all__ = [
    "RECORD",
    "TRAINED",
    "RunResult",
    "source_fingerprint",
    "parameters",
    "train_cached",
    "train_and_score",
    "train_reference",
]

PACKAGE = Path(__file__).resolve().parents[2]  # the fasr package
RECORD = "bench.json"  # in each run folder: what the run was (config, scoring, source) and its result
TRAINED = "trained.json"  # in each run folder: the config and source of its finished training, and its seconds


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


def source_fingerprint() -> str:
    """SHA-256 of the ``fasr`` package's Python sources: a finished run is only reused by the same code."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def parameters(cfg: RunConfig) -> int:
    """Parameters of the model ``cfg`` builds."""
    from fasr.models import build_model

    return sum(p.numel() for p in build_model(cfg.model).parameters())


def _as_stored(key: dict) -> dict:
    return json.loads(json.dumps(key))  # as it reads back from a record (tuples become lists)


def train_cached(cfg: RunConfig, run_dir: Path) -> tuple[Path, float]:
    """Train ``cfg`` in ``run_dir``, or reuse the finished training there when its config and source match.

    A model without parameters (bicubic) gets a weightless checkpoint, scored the same way. Training clears the
    folder's earlier run (the benchmark's own).

    Args:
        cfg: the run config.
        run_dir: run folder.

    Returns:
        The final weights (``last.pt``) and the seconds their training took.
    """
    from fasr.checkpoint import save_checkpoint
    from fasr.training.trainer import train

    checkpoint, marker = run_dir / "last.pt", run_dir / TRAINED
    key = _as_stored({"config": to_dict(cfg), "source": source_fingerprint()})
    if marker.is_file() and checkpoint.is_file():
        stored = json.loads(marker.read_text())
        if stored["key"] == key:
            return checkpoint, stored["seconds"]
    for stale in (marker, run_dir / RECORD):  # the folder's weights are about to change
        stale.unlink(missing_ok=True)
    start = time.perf_counter()
    if parameters(cfg) == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_checkpoint(checkpoint, {"model": {}, "config": to_dict(cfg), "step": 0})
    else:
        train(cfg, run_dir, resume=False, force=True)
    seconds = time.perf_counter() - start
    marker.write_text(json.dumps({"key": key, "seconds": seconds}, indent=1))
    return checkpoint, seconds


def train_and_score(cfg: RunConfig, label: str, run_dir: Path, eval_slices: int) -> RunResult:
    """Train one run (:func:`train_cached`) and score its final weights on the held-out subject, or reuse the
    run's finished record when the config, the scoring and the source are unchanged.

    Args:
        cfg: the run config (a model without parameters is scored untrained).
        label: row name.
        run_dir: run folder.
        eval_slices: score this many evenly spaced held-out slices (0 = all).
    """
    from fasr.checkpoint import load_checkpoint
    from fasr.evaluation.evaluate import evaluate_checkpoint
    from fasr.scoring.volumes import BICUBIC

    record = run_dir / RECORD
    key = _as_stored({"config": to_dict(cfg), "eval_slices": eval_slices, "source": source_fingerprint()})
    if record.is_file():
        stored = json.loads(record.read_text())
        if stored["key"] == key:  # the row's name and folder are today's (a run may be copied between suites)
            return RunResult(**{**stored["result"], "label": label, "run_dir": str(run_dir)})
        record.unlink()
    checkpoint, train_seconds = train_cached(cfg, run_dir)
    start = time.perf_counter()
    scores = evaluate_checkpoint(
        checkpoint, cfg, split="val", convention="fastmri", max_slices=eval_slices, batch_size=cfg.data.batch_size
    )
    steps, params = int(load_checkpoint(checkpoint)["step"]), parameters(cfg)
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
        wall_s=round(train_seconds + time.perf_counter() - start, 1),
        run_dir=str(run_dir),
    )
    record.write_text(json.dumps({"key": key, "result": asdict(result)}, indent=1))
    return result


def train_reference(
    name: str,
    steps: int,
    data: Path,
    out: Path,
    *,
    base: Path = DEFAULT_BASE,
    seed: int = 0,
    held_out: str | None = None,
    overrides: Sequence[str] = (),
) -> Path:
    """Train the benchmark row ``name`` on the benchmark task for a fixed number of steps, with the run cache.

    The run is configured exactly as the row of ``fasr bench quality`` (base config, task, the row's suite and
    row deltas, split, seed, schedule stretched to ``steps``, then ``overrides``) and lives in
    ``out/<name>/<held_out>-seed<seed>``.

    Args:
        name: a method (``fasr``, ``edsr``, ...) or an ablation row (``wo-sa``, ...).
        steps: optimiser steps.
        data: BraTS-layout data root.
        out: folder of the run folders.
        base: base config file.
        seed: training seed.
        held_out: validation subject (default: the last subject of ``data``).
        overrides: ``--set key=value`` strings applied to the run config.

    Returns:
        The run's final weights (``last.pt``).
    """
    suite, entry = named_entry(name)
    mapping, _ = task_base(base, data, suite)
    held_out = held_out or find_subjects(mapping["data"])[-1]
    cfg = run_config(mapping, entry, held_out, seed, steps, list(overrides))
    checkpoint, _ = train_cached(cfg, Path(out) / name / f"{held_out}-seed{seed}")
    return checkpoint
