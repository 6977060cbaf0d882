"""Suite rows and the config of each run: base config, benchmark task, row delta, split, seed, stretched schedule."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path

from fasr.config import RunConfig, apply_overrides, deep_merge, from_dict, read_yaml
from fasr.errors import FasrError
from fasr.models import USES

__all__ = [
    "REPO_ROOT",
    "ABLATIONS",
    "DEFAULT_BASE",
    "METHODS",
    "SUITES",
    "DEGRADATIONS",
    "PAPER",
    "TASK_DELTA",
    "SUITE_DELTAS",
    "QUICK_STEPS",
    "QUICK_EVAL_SLICES",
    "QUICK_DELTA",
    "MISSING_HINT",
    "Entry",
    "suite_entries",
    "named_entry",
    "find_subjects",
    "stretch_schedule",
    "row_model",
    "run_config",
    "check_data_root",
    "task_base",
]

REPO_ROOT = Path(__file__).resolve().parents[3]
ABLATIONS = REPO_ROOT / "configs" / "ablations"
DEFAULT_BASE = REPO_ROOT / "configs" / "cpu-quick.yaml"

METHODS = ("bicubic", "edsr", "swinir", "mcsr", "minet", "ttsr", "masa", "fasr")
# Row names: ``model.name`` for ``methods``, ablation file stems for the others.
SUITES: dict[str, tuple[str, ...]] = {
    "methods": METHODS,
    "modules": ("complete", "wo-sa", "wo-ma", "wo-chpf", "wo-fa"),
    "losses": ("all-losses", "wo-l1", "wo-perceptual", "wo-fourier"),
    "backbones": ("vgg19", "resnet18", "resnet34"),
}
# The benchmark task: x4, T2 target from a T1 reference, BraTS subjects, one held out for validation; quiet
# logs and a short in-training validation (it only feeds the curves: the final weights are scored apart).
TASK_DELTA = {
    "model": {"scale": 4},
    "data": {"kind": "brats", "target": "t2", "reference": "t1", "test_subjects": []},
    "log": {"tensorboard": False, "progress": False, "image_every": 0, "val_max_slices": 8},
}
# The LRs a suite can be trained and scored on: the paper's bicubic, and a scanner's (k-space centre crop).
DEGRADATIONS: dict[str, dict] = {
    "bicubic": {"data": {"degradation": {"kind": "bicubic"}}},
    "kspace": {"data": {"degradation": {"kind": "kspace"}}},
}
# Per suite: the row each claim compares against, the paper's PSNR of every row (x4) and where they are printed.
PAPER: dict[str, tuple[str, dict[str, float], str]] = {
    "methods": (
        "fasr",
        {"bicubic": 19.202, "edsr": 26.719, "mcsr": 29.542, "ttsr": 32.018, "minet": 31.974, "masa": 32.965,
         "swinir": 32.971, "fasr": 33.403},
        "Table I (fastMRI, x4)",
    ),
    "modules": (
        "complete",
        {"wo-sa": 38.12, "wo-ma": 37.93, "wo-chpf": 35.14, "wo-fa": 35.06, "complete": 38.52},
        "Table III (IXI, x4)",
    ),
    "losses": (
        "all-losses",
        {"wo-l1": 30.93, "wo-perceptual": 36.43, "wo-fourier": 38.11, "all-losses": 38.52},
        "Table IV (IXI, x4)",
    ),
    "backbones": ("vgg19", {"resnet18": 38.55, "resnet34": 38.70, "vgg19": 38.52}, "Table II (IXI, x4)"),
}
VALIDATIONS = 10  # in-training validations per run (at most, plus one at the end)
# Applied to every run of a suite before the row's delta (none: every method, baselines included, trains with the
# base config's losses; the perceptual network is the fixed shipped MRI VGG19, the same for all).
SUITE_DELTAS: dict[str, dict] = {}
# --quick: proves the pipeline end to end in a minute or two; the numbers mean nothing.
QUICK_STEPS = 2
QUICK_EVAL_SLICES = 2
QUICK_DELTA = {
    "data": {"patch_size": 32, "slice_size": 64, "batch_size": 1, "augment": False},
    "log": {"val_max_slices": QUICK_EVAL_SLICES},
}
MISSING_HINT = "run from a fasr source checkout or pass --base FILE"


@dataclass(frozen=True)
class Entry:
    """One row of a suite.

    Attributes:
        label: row name (method or ablation file stem).
        delta: nested config mapping merged over the suite's base config.
    """

    label: str
    delta: dict


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
    return [Entry(name, read_yaml(ablations / f"{name}.yaml", MISSING_HINT)) for name in SUITES[suite]]


def named_entry(name: str, ablations: Path = ABLATIONS) -> tuple[str, Entry]:
    """The suite holding the row called ``name`` (the first, in :data:`SUITES` order) and the row.

    Args:
        name: a method (``fasr``, ``edsr``, ...) or an ablation file stem (``wo-sa``, ...).
        ablations: folder of the ablation deltas.
    """
    for suite, rows in SUITES.items():
        if name in rows:
            return suite, next(e for e in suite_entries(suite, ablations) if e.label == name)
    every = sorted({row for rows in SUITES.values() for row in rows})
    raise FasrError(f"unknown benchmark row '{name}'; choose one of {every}")


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


def row_model(model: dict) -> dict:
    """A row's model section: the base config describes FASR-Net, so a row of another architecture keeps only the
    model fields it reads.

    Args:
        model: the ``model`` mapping of the base config merged with the row's delta.
    """
    uses = USES.get(model.get("name", "fasr"), USES["fasr"])
    return {k: v for k, v in model.items() if k in uses}


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
    data["model"] = row_model(data.get("model", {}))
    data = deep_merge(data, {"seed": seed, "data": {"val_subjects": [held_out]}})
    unstretched = from_dict(RunConfig, apply_overrides(copy.deepcopy(data), overrides))
    data = deep_merge(data, stretch_schedule(unstretched, steps))
    return from_dict(RunConfig, apply_overrides(data, overrides))


def check_data_root(data: Path) -> Path:
    """``data`` resolved, or a one-line error naming ``--data`` when it is not a folder."""
    if not Path(data).is_dir():
        raise FasrError(f"data folder '{data}' not found; pass --data ROOT, a BraTS-layout dataset")
    return Path(data).resolve()


def task_base(base: Path, data: Path, suite: str | None = None, quick: bool = False) -> tuple[dict, dict]:
    """The base config mapping of every run (base file, benchmark task, suite and ``--quick`` deltas, data root)
    and the deltas alone (for the report).

    Args:
        base: base config file (``configs/cpu-quick.yaml``).
        data: BraTS-layout data root.
        suite: a key of :data:`SUITES` (its :data:`SUITE_DELTAS`), or None for none.
        quick: apply :data:`QUICK_DELTA`.
    """
    deltas = deep_merge(TASK_DELTA, SUITE_DELTAS.get(suite, {}) if suite else {})
    deltas = deep_merge(deltas, QUICK_DELTA if quick else {})
    mapping = deep_merge(read_yaml(base, MISSING_HINT), deltas)
    return deep_merge(mapping, {"data": {"root": str(check_data_root(data))}}), deltas
