"""Checkpoints and run folders: what training writes and evaluation, inference and benchmarks read.

Atomic checkpoint writes, loads with clear errors, rebuilding a model from its stored config, and a run
folder's validation history (``metrics.jsonl``). No training code is needed to load a model.

A checkpoint is a ``torch.save`` of a plain dict (loadable with ``weights_only=True``):

========== ===================================================================
key        content
========== ===================================================================
model      ``state_dict`` of the bare model (no DDP ``module.`` prefix)
config     the :class:`fasr.config.RunConfig` as a dict
fasr_version, format   writer's package version and checkpoint layout version
epoch/step completed epochs / optimiser steps
optimizer/scheduler   their ``state_dict`` (None in exported weights)
rng        :func:`fasr.training.rng.capture_rng` output (training checkpoints)
metrics    last validation metrics (``psnr``, ``ssim``, ...) and ``perceptual`` source
========== ===================================================================
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fasr import __version__
from fasr.config import RunConfig, apply_overrides, from_dict, to_dict
from fasr.errors import FasrError
from fasr.models import build_model
from fasr.models.config import fields_where

__all__ = [
    "CHECKPOINT_FORMAT",
    "REQUIRED_KEYS",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "resolve_checkpoint_path",
    "INFERENCE_FIELDS",
    "model_from_state",
    "stored_config",
    "resolve_device",
    "METRICS_FILE",
    "read_history",
]

CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("model", "config")
METRICS_FILE = "metrics.jsonl"  # in a run folder: one validation record per line (the Fig. 11 curve)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, fsync, ``os.replace``).

    A crash or interrupt mid-write leaves the previous checkpoint intact.

    Args:
        path: destination file (its folder is created).
        state: checkpoint dict; ``fasr_version`` and ``format`` are filled in when absent.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"fasr_version": __version__, "format": CHECKPOINT_FORMAT, **state}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors only, no arbitrary pickles).

    Args:
        path: checkpoint file.
        map_location: device the tensors are loaded onto.

    Raises:
        FasrError: the file is missing, unreadable/corrupt, or lacks the keys of a fasr checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FasrError(f"checkpoint '{path}' not found; pass the .pt file written by `fasr train` (best.pt/last.pt)")
    device = torch.device(map_location)
    if not _available(device):
        raise FasrError(f"device '{device}' is not available to PyTorch here; use --device cpu (or auto)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as exc:
        raise FasrError(
            f"checkpoint '{path}' is corrupt or not a fasr checkpoint ({_load_failure(exc)}); "
            "use another file, e.g. last.pt of the run"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise FasrError(
            f"checkpoint '{path}' is not a fasr checkpoint (needs keys {list(REQUIRED_KEYS)}, has {keys}); "
            "use a file written by `fasr train`"
        )
    if int(state.get("format", CHECKPOINT_FORMAT)) > CHECKPOINT_FORMAT:
        raise FasrError(
            f"checkpoint '{path}' has format {state['format']} from fasr {state.get('fasr_version', '?')}, "
            f"newer than this fasr {__version__} reads ({CHECKPOINT_FORMAT}); upgrade fasr"
        )
    return state


def resolve_device(name: str = "auto") -> torch.device:
    """The one device picker: ``auto`` -> CUDA when available, else CPU; otherwise the named torch device.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...

    Raises:
        FasrError: an unknown device name, or CUDA asked for where there is none.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FasrError(f"unknown --device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FasrError(f"--device {name}: no CUDA GPU is available to PyTorch here; use --device cpu")
    if not _available(device):
        raise FasrError(f"--device {name}: this device is not available to PyTorch here; use --device cpu (or auto)")
    return device


def _available(device: torch.device) -> bool:
    """Whether PyTorch can place tensors on ``device`` here (CUDA index in range, MPS/XPU/... backend present)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index is None or device.index < torch.cuda.device_count())
    if device.type == "mps":
        return torch.backends.mps.is_available()
    is_available = getattr(getattr(torch, device.type, None), "is_available", None)
    return bool(is_available()) if callable(is_available) else False


def _load_failure(exc: Exception) -> str:
    """Why ``torch.load`` failed, in one short clause: for a refused weights-only unpickling, the unpickler's own
    finding (not PyTorch's paragraph about the ``weights_only`` default)."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        detail = " ".join(detail.split()).split(". ")[0].rstrip(".")
        return f"not plain tensors: {detail[:120]}"
    first = text.splitlines()[0] if text else type(exc).__name__
    if "central directory" in first or "zip archive" in first:
        return "the file is truncated or not a zip archive: an interrupted copy or download"
    return first.split(". ")[0].rstrip(".")[:160]  # the first sentence, whole


def resolve_checkpoint_path(path_or_name: str | Path) -> Path:
    """A checkpoint file as given, else a registered pretrained name (:func:`fasr.pretrained.resolve_checkpoint`,
    which also explains unknown names and folders)."""
    path = Path(path_or_name)
    if path.is_file():
        return path
    from fasr.pretrained import resolve_checkpoint  # the registry is only needed for names

    return resolve_checkpoint(path_or_name)


# Model settings that change how a trained model runs, not what it learned: safe to change at inference (each field's
# ``inference`` fact, fasr.models.config).
INFERENCE_FIELDS = fields_where("inference")


def stored_config(state: dict[str, Any], path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config stored in a loaded checkpoint, with ``--set`` overrides of which, in the model section,
    only :data:`INFERENCE_FIELDS` may change.

    Args:
        state: a checkpoint as :func:`load_checkpoint` returns it.
        path: its file (for the messages).
        overrides: ``--set key=value`` strings.

    Raises:
        FasrError: a config this fasr cannot read, or an override of a learned model setting.
    """
    try:
        stored = from_dict(RunConfig, state["config"])
    except FasrError as exc:
        raise FasrError(f"checkpoint '{path}' has a config this fasr cannot read ({exc}); retrain or upgrade") from None
    cfg = from_dict(RunConfig, apply_overrides(to_dict(stored), list(overrides))) if overrides else stored
    before, after = dataclasses.asdict(stored.model), dataclasses.asdict(cfg.model)
    changed = {name for name in after if after[name] != before[name]}
    unsafe = sorted(f"model.{name}" for name in changed - set(INFERENCE_FIELDS))
    if unsafe:
        allowed = [f"model.{name}" for name in INFERENCE_FIELDS]
        raise FasrError(f"model setting(s) {unsafe} cannot change after training; only {allowed} can")
    return cfg


def load_model(
    path_or_name: str | Path, map_location: str | torch.device = "cpu", overrides: Sequence[str] = ()
) -> tuple[nn.Module, RunConfig]:
    """Rebuild the model stored in a checkpoint, in eval mode, with its run config.

    Half-precision (e.g. fp16-exported) weights are cast to the freshly built model's dtypes (fp32).

    Args:
        path_or_name: checkpoint file, or a registered pretrained model name.
        map_location: device the model is placed on.
        overrides: ``--set key=value`` strings applied to the stored config (e.g. ``model.search_window=16``);
            of the model section only :data:`INFERENCE_FIELDS` may change.

    Raises:
        FasrError: missing/corrupt file, a config/state_dict that does not match this fasr version, or an
            override of a learned model setting.
    """
    path = resolve_checkpoint_path(path_or_name)
    return model_from_state(load_checkpoint(path, map_location=map_location), path, map_location, overrides)


def model_from_state(
    state: dict[str, Any], path: str | Path, map_location: str | torch.device = "cpu", overrides: Sequence[str] = ()
) -> tuple[nn.Module, RunConfig]:
    """:func:`load_model` of a checkpoint already read with :func:`load_checkpoint` (read once, e.g. to plan from its
    config before the model is built).

    Args:
        state: the checkpoint.
        path: its file (for the messages).
        map_location / overrides: as :func:`load_model`.
    """
    cfg = stored_config(state, path, overrides)
    # The stored weights replace any ImageNet initialisation, whose file need not exist where the model is used.
    model = build_model(dataclasses.replace(cfg.model, backbone_weights=None))
    reference = model.state_dict()
    weights = {
        k: v.to(reference[k].dtype) if k in reference and v.is_floating_point() else v
        for k, v in state["model"].items()
    }
    missing, unexpected = sorted(set(reference) - set(weights)), sorted(set(weights) - set(reference))
    if missing or unexpected:
        raise FasrError(
            f"checkpoint '{path}' does not match model '{cfg.model.name}' built from its config "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}); "
            "it was written by an incompatible fasr version"
        )
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise FasrError(
            f"checkpoint '{path}' does not match model '{cfg.model.name}' ({str(exc).splitlines()[-1].strip()[:160]}); "
            "it was written by an incompatible fasr version"
        ) from None
    return model.to(map_location).eval(), cfg


def read_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The validation records of a run folder (:data:`METRICS_FILE`), in order (empty when there are none)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
