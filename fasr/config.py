"""Run configuration: typed dataclasses loaded from YAML (one file drives a run, BasicSR-style).

Each layer owns its section (``fasr.models.config.ModelConfig``, ``fasr.data.config.DataConfig``,
``fasr.training.config.*``); this module composes them into :class:`RunConfig` and maps YAML and
``--set key=value`` overrides onto them with type checking.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fasr.data.config import DataConfig
from fasr.errors import FasrError
from fasr.models.config import ModelConfig
from fasr.training.config import LogConfig, LossConfig, OptimConfig, ScheduleConfig

__all__ = [
    "RunConfig",
    "load_config",
    "read_yaml",
    "apply_overrides",
    "add_set_argument",
    "from_dict",
    "to_dict",
    "save_config",
]


@dataclass
class RunConfig:
    """Everything one training/evaluation run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the annotated type ``tp`` (dataclass, Optional, list, tuple, scalar)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise FasrError(f"config: '{where}' must be a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise FasrError(f"config: '{where}' must be one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise FasrError(f"config: '{where}' must be a list, got {value!r}")
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return origin(items)
    if origin is dict or tp is Any:
        return value
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if not isinstance(value, bool):
            raise FasrError(f"config: '{where}' must be true/false, got {value!r}")
        return value
    if tp in (int, float, str):
        try:
            return tp(value)
        except (TypeError, ValueError):
            raise FasrError(f"config: '{where}' must be {tp.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type, data: dict, where: str = "") -> Any:
    """Build dataclass ``cls`` from a (partial) mapping; unknown keys are an error naming the valid ones."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise FasrError(
            f"config: unknown key(s) {sorted(unknown)} in '{where or cls.__name__}'; valid keys: {sorted(names)}"
        )
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return asdict(cfg)


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a nested dict, in place."""
    for item in overrides:
        if "=" not in item:
            raise FasrError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return data


def add_set_argument(parser: argparse.ArgumentParser, example: str, dest: str = "overrides") -> None:
    """The repeatable ``--set KEY=VALUE`` option every command that reads a run config shares.

    Args:
        parser: the command's parser.
        example: an override shown in the help, e.g. ``schedule.epochs=20``.
        dest: attribute name on the parsed namespace.
    """
    parser.add_argument(
        "--set",
        dest=dest,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )


def read_yaml(path: str | Path, missing_hint: str = "see configs/ for examples") -> dict:
    """The mapping in a YAML config file; one-line errors for a missing, malformed or non-mapping file.

    Args:
        path: YAML file.
        missing_hint: what to tell the user when the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FasrError(f"config file '{path}' not found; {missing_hint}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FasrError(f"config file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FasrError(f"config file '{path}' must be a mapping of config sections")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or defaults when ``path`` is None) and apply ``--set`` overrides."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
