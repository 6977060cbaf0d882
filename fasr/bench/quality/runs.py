"""Training and scoring of one benchmark run, with the run cache: a finished run whose config (and scoring) and
source code are unchanged is reused."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from fasr.bench.quality.suites import DEFAULT_BASE, find_subjects, named_entry, run_config, task_base
from fasr.config import RunConfig, to_dict
from fasr.files import atomic_write_text

__all__ = [
    "RECORD",
    "TRAINED",
    "STARTED",
    "LOCK",
    "RunResult",
    "claimed",
    "held",
    "as_stored",
    "source_fingerprint",
    "parameters",
    "train_cached",
    "finished_result",
    "finished_anywhere",
    "train_and_score",
    "train_reference",
]

PACKAGE = Path(__file__).resolve().parents[2]  # the fasr package
RECORD = "bench.json"  # in each run folder: what the run was (config, scoring, source) and its result
TRAINED = "trained.json"  # in each run folder: the config and source of its finished training, and its seconds
STARTED = "started.json"  # in each run folder: the config and source of its training, written before it starts
LOCK = "lock.json"  # in each run folder: locked (flock) by the process training or scoring it, naming it (ours)


@dataclass
class RunResult:
    """One trained and scored (row, degradation, held-out subject, seed).

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
        degradation: how the LR was made (``data.degradation.kind``).
        plateau_gain: validation PSNR gained over the last 20 % of the steps (:func:`stats.plateau_gain`; NaN
            without two validations).
        slice_psnr: PSNR of each scored held-out slice, in slice order (for paired tests).
        test_psnr / test_ssim / test_bicubic_psnr / test_slice_psnr: the same on the test subjects
            (``data.test_subjects``), scored once after training; None without test subjects.
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
    degradation: str = "bicubic"
    plateau_gain: float = math.nan
    slice_psnr: list[float] = field(default_factory=list)
    test_psnr: float | None = None
    test_ssim: float | None = None
    test_bicubic_psnr: float | None = None
    test_slice_psnr: list[float] | None = None


def source_fingerprint() -> str:
    """SHA-256 of the ``fasr`` package's Python sources: a finished run is only reused by the same code."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def parameters(cfg: RunConfig) -> int:
    """Parameters of the model ``cfg`` builds (counted without reading its initial weights)."""
    import dataclasses

    from fasr.models import build_model

    return sum(p.numel() for p in build_model(dataclasses.replace(cfg.model, backbone_weights=None)).parameters())


def as_stored(value: dict) -> dict:
    """``value`` as it reads back from a JSON record (tuples become lists), to compare with one."""
    return json.loads(json.dumps(value))


def _training_key(cfg: RunConfig, keep_runs: bool) -> dict:
    """What a training is: its config and, unless ``keep_runs``, the source that trained it."""
    return as_stored({"config": to_dict(cfg), "source": "any" if keep_runs else source_fingerprint()})


def _record_key(cfg: RunConfig, eval_slices: int, keep_runs: bool) -> dict:
    """What a scored run is: its training and its scoring."""
    return {**_training_key(cfg, keep_runs), "eval_slices": eval_slices}


def _canonical(key: dict) -> dict:
    """``key`` with its model config in canonical form (``fasr.models.canonical``: ``ttsr`` reads as the ``fasr``
    model it is), so that a run of one serves the other."""
    from fasr.models import canonical

    config = key["config"]
    return {**key, "config": {**config, "model": canonical(config["model"])}}


def _same(stored: dict, key: dict, canonical: bool = False) -> bool:
    """Whether a stored key is ``key``; a ``key`` of source ``any`` matches every source.

    Args:
        canonical: compare the two in canonical form (a finished record of one name serves the other; a
            training in progress resumes only under its own config, which the trainer checks again).
    """
    if canonical:
        stored, key = _canonical(stored), _canonical(key)
    return stored == key or (key["source"] == "any" and {**stored, "source": "any"} == key)


@contextlib.contextmanager
def claimed(run_dir: Path) -> Iterator[dict | None]:
    """Hold ``run_dir`` for this process while the block runs, so that several ``fasr bench quality`` processes
    (one per core, or per machine sharing the folder) each train other runs of one suite.

    The hold is an exclusive ``flock`` on ``lock.json`` (which also names the holder, for the message): the system
    releases it when the holder ends, however it ends, so a crashed process never blocks a run. Without ``fcntl``
    (Windows) every run is this process's: run one suite process at a time there.

    Yields:
        None when the run is this process's now; else what the holder wrote (host, pid): the caller skips the run.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield None
        return
    with open(run_dir / LOCK, "a+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = True
        else:
            held = False
        if held:
            file.seek(0)
            try:
                owner = json.loads(file.read())
            except ValueError:  # still being written
                owner = {"host": "?", "pid": "?"}
            yield owner
            return
        file.seek(0)
        file.truncate()
        json.dump({"host": socket.gethostname(), "pid": os.getpid()}, file)
        file.flush()
        try:
            yield None
        finally:
            file.seek(0)
            file.truncate()  # free: empty
            fcntl.flock(file, fcntl.LOCK_UN)


@contextlib.contextmanager
def held(lock: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``lock`` while the block runs, waiting for another process that
    holds it (a short critical section, e.g. reading and extending a suite's shared record). Without ``fcntl``
    (Windows) nothing is held.

    Args:
        lock: lock file (created; its folder must exist).
    """
    with open(lock, "a") as file:
        if fcntl is not None:
            fcntl.flock(file, fcntl.LOCK_EX)  # released when the file closes, or the process ends
        yield


def train_cached(cfg: RunConfig, run_dir: Path, keep_runs: bool = False) -> tuple[Path, float]:
    """Train ``cfg`` in ``run_dir``; reuse the finished training there, or resume the interrupted one, when its
    config and source match.

    A model without parameters (bicubic) gets a weightless checkpoint, scored the same way. A training of another
    config (or source) is cleared first (the benchmark's own folder).

    Args:
        cfg: the run config.
        run_dir: run folder.
        keep_runs: reuse and resume trainings of the same config by other source code (a suite run over days
            while the code changes; each record keeps the source it was trained with).

    Returns:
        The final weights (``last.pt``) and the seconds their training took (every piece of it).
    """
    from fasr.checkpoint import load_checkpoint, save_checkpoint
    from fasr.training.trainer import train

    checkpoint, marker, started = run_dir / "last.pt", run_dir / TRAINED, run_dir / STARTED
    key = _training_key(cfg, keep_runs)
    if marker.is_file() and checkpoint.is_file():
        stored = json.loads(marker.read_text())
        if _same(stored["key"], key):
            return checkpoint, stored["seconds"]
    begun = json.loads(started.read_text()) if started.is_file() else None
    resume = begun is not None and checkpoint.is_file() and _same(begun["key"], key)
    sources = begun.get("sources", [begun["key"]["source"]]) if resume else []
    for stale in (marker, run_dir / RECORD):  # the folder's weights are about to change
        stale.unlink(missing_ok=True)
    if not resume:  # another run's weights never carry on under this run's name
        for stale in (started, checkpoint):
            stale.unlink(missing_ok=True)
    elif "seconds" not in (state := load_checkpoint(checkpoint)):
        # Written before the trainer kept its seconds: it carries on from those the run's start record counted.
        save_checkpoint(checkpoint, {**state, "seconds": float(begun.get("seconds", 0.0))})
    sources = list(dict.fromkeys([*sources, source_fingerprint()]))  # every source that trained it, in order
    record = {"key": _training_key(cfg, False), "sources": sources}
    run_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if parameters(cfg) == 0:
        save_checkpoint(checkpoint, {"model": {}, "config": to_dict(cfg), "step": 0})
    else:
        atomic_write_text(started, json.dumps(record, indent=1))  # what is training here
        train(cfg, run_dir, resume=resume, force=not resume)
    # The trainer keeps the run's seconds over all its pieces in the checkpoint; a weightless run has the time of
    # its checkpoint.
    seconds = load_checkpoint(checkpoint).get("seconds", time.perf_counter() - start)
    atomic_write_text(marker, json.dumps({**record, "seconds": seconds}, indent=1))
    return checkpoint, seconds


def _slice_psnr(scores: dict, method: str) -> list[float]:
    return [row["psnr"] for row in scores["per_slice"] if row["method"] == method]


def finished_result(
    cfg: RunConfig, label: str, run_dir: Path, eval_slices: int, keep_runs: bool = False
) -> RunResult | None:
    """The run's finished record when its config, its scoring and its source (any source with ``keep_runs``) are
    today's, else None. The row's name and folder are today's (a run may be copied between suites).

    Args: as :func:`train_and_score`.
    """
    record = run_dir / RECORD
    if not record.is_file():
        return None
    stored = json.loads(record.read_text())
    if not _same(stored["key"], _record_key(cfg, eval_slices, keep_runs), canonical=True):
        return None
    return RunResult(**{**stored["result"], "label": label, "run_dir": str(run_dir)})


def finished_anywhere(
    cfg: RunConfig, label: str, run_dir: Path, eval_slices: int, keep_runs: bool = False
) -> RunResult | None:
    """:func:`finished_result` of ``run_dir``, else of the same degradation, subject and seed in any other row's
    folder of the same results (``<out>/runs/<suite>/<row>/<degradation>/<subject>-seed<k>``) whose record has
    this config (in canonical form, ``fasr.models.canonical``) and scoring: one training serves every suite row
    that is the same model (``modules``' ``complete`` and ``backbones``' ``vgg19`` are ``methods``' ``fasr``,
    ``modules``' ``wo-fa`` is ``methods``' ``ttsr``); trained again it would be bit for bit the same.

    Args: as :func:`train_and_score`.
    """
    found = finished_result(cfg, label, run_dir, eval_slices, keep_runs)
    if found is not None or len(run_dir.parents) < 4:
        return found
    runs_root = run_dir.parents[3]
    for other in sorted(runs_root.glob(f"*/*/{run_dir.parent.name}/{run_dir.name}")):
        found = None if other == run_dir else finished_result(cfg, label, other, eval_slices, keep_runs)
        if found is not None:
            return found
    return None


def train_and_score(
    cfg: RunConfig, label: str, run_dir: Path, eval_slices: int, keep_runs: bool = False
) -> RunResult:
    """Train one run (:func:`train_cached`) and score its final weights on the held-out subject (and on the test
    subjects when ``cfg.data.test_subjects`` names some), or reuse the run's finished record when the config, the
    scoring and the source are unchanged.

    Args:
        cfg: the run config (a model without parameters is scored untrained).
        label: row name.
        run_dir: run folder.
        eval_slices: score this many evenly spaced held-out (and test) slices (0 = all).
        keep_runs: see :func:`train_cached`.
    """
    from fasr.bench.quality.stats import plateau_gain
    from fasr.checkpoint import load_checkpoint, read_history
    from fasr.evaluation.evaluate import evaluate_checkpoint
    from fasr.scoring.volumes import BICUBIC

    record = run_dir / RECORD
    finished = finished_result(cfg, label, run_dir, eval_slices, keep_runs)
    if finished is not None:
        return finished
    record.unlink(missing_ok=True)
    key = _record_key(cfg, eval_slices, False)
    checkpoint, train_seconds = train_cached(cfg, run_dir, keep_runs)
    start = time.perf_counter()
    name = cfg.model.name

    def score(split: str) -> dict:
        return evaluate_checkpoint(
            checkpoint, cfg, split=split, convention="fastmri", max_slices=eval_slices, batch_size=cfg.data.batch_size
        )

    scores = score("val")
    test = score("test") if cfg.data.test_subjects else None
    steps, params = int(load_checkpoint(checkpoint)["step"]), parameters(cfg)
    if params and steps != cfg.schedule.max_steps:
        print(f"  warning: {label} trained {steps} of {cfg.schedule.max_steps} steps")
    history = [(h["step"], h["psnr"]) for h in read_history(run_dir)] if params else []
    result = RunResult(
        label=label,
        held_out=cfg.data.val_subjects[0],
        seed=cfg.seed,
        psnr=scores[name]["psnr"],
        ssim=scores[name]["ssim"],
        bicubic_psnr=scores[BICUBIC]["psnr"],
        bicubic_ssim=scores[BICUBIC]["ssim"],
        params=params,
        steps=steps,
        wall_s=round(train_seconds + time.perf_counter() - start, 1),
        run_dir=str(run_dir),
        degradation=cfg.data.degradation.kind,
        plateau_gain=plateau_gain(history),
        slice_psnr=_slice_psnr(scores, name),
        test_psnr=test[name]["psnr"] if test else None,
        test_ssim=test[name]["ssim"] if test else None,
        test_bicubic_psnr=test[BICUBIC]["psnr"] if test else None,
        test_slice_psnr=_slice_psnr(test, name) if test else None,
    )
    # Whole or absent: a progress report in another process reads it without the run's lock.
    atomic_write_text(record, json.dumps({"key": key, "result": asdict(result)}, indent=1))
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
