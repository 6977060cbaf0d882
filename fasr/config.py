"""Run configuration: typed dataclasses loaded from YAML (one file drives a run, BasicSR-style).

The data and model layers own their sections (``fasr.data.config.DataConfig``,
``fasr.models.config.ModelConfig``); the training sections (loss, optimiser, schedule, logging) are defined
here, below the training and evaluation layers that both read a run config. This module composes them into
:class:`RunConfig` and maps YAML and ``--set key=value`` overrides onto them with type checking.

Loss weights and learning rates come in two presets, because the paper and the authors' public code differ:

=========================  ====================  =====================================
setting                    ``paper``             ``public`` (authors' code)
=========================  ====================  =====================================
L1 / perceptual / Fourier  1 / 1 / 1 (Eq. 25)    1 / 0 / 1e-4
Fourier difference         complex               magnitude only
FFT normalisation          orthonormal           unnormalised (torch's default)
lr extractor / rest        1e-4 / 1e-5 (IV-B)    1e-6 / 1e-5
=========================  ====================  =====================================

A field left unset (``None``) takes its preset's value; an explicit value always wins. The run folder's
``config.yaml`` holds the resolved values.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from fasr.data.cache import MANIFEST, read_manifest
from fasr.data.config import DataConfig, DegradationConfig
from fasr.data.degrade import degradation_from_spec, nominal_spec
from fasr.errors import FasrError, UsageError
from fasr.models.config import ModelConfig, is_through_plane
from fasr.options import add_set_argument  # noqa: F401 - re-exported: every command imports it from here

__all__ = [
    "RunConfig",
    "LossConfig",
    "OptimConfig",
    "ScheduleConfig",
    "LogConfig",
    "LOSS_PRESETS",
    "OPTIM_PRESETS",
    "load_config",
    "read_yaml",
    "deep_merge",
    "apply_overrides",
    "add_set_argument",
    "from_dict",
    "to_dict",
    "save_config",
]


Preset = Literal["paper", "public", "ours"]

# ``ours`` = the public recipe plus a perceptual term on the shipped MRI feature network (its relu3_1 features are
# small: weight 500 makes the term ~5 % of L1 on a bicubic start) and the correspondence loss of the matching
# branches (our addition: ``fasr.models.correspondence``).
LOSS_PRESETS: dict[str, dict[str, float | str]] = {
    "paper": {"l1": 1.0, "perceptual": 1.0, "fourier": 1.0, "fourier_mode": "complex", "fourier_norm": "ortho",
              "match_weight": 0.0},
    "public": {"l1": 1.0, "perceptual": 0.0, "fourier": 1e-4, "fourier_mode": "magnitude", "fourier_norm": "backward",
               "match_weight": 0.0},
    "ours": {"l1": 1.0, "perceptual": 500.0, "fourier": 1e-4, "fourier_mode": "magnitude", "fourier_norm": "backward",
             "match_weight": 0.05},
}
OPTIM_PRESETS: dict[str, dict[str, float]] = {
    "paper": {"lr_extractor": 1e-4, "lr_rest": 1e-5},
    "public": {"lr_extractor": 1e-6, "lr_rest": 1e-5},
    "ours": {"lr_extractor": 2e-4, "lr_rest": 5e-4},
}


def _fill(section: LossConfig | OptimConfig, preset: dict) -> LossConfig | OptimConfig:
    """Copy of ``section`` with its unset (None) fields taken from ``preset``."""
    unset = {f.name: preset[f.name] for f in fields(section) if f.name in preset and getattr(section, f.name) is None}
    return replace(section, **unset)


@dataclass
class LossConfig:
    """Loss terms and weights (Eqs. 22-25) and the two-phase schedule (Section IV-B).

    Args:
        preset: ``paper``, ``public`` or ``ours`` (see :data:`LOSS_PRESETS`); fills every weight left unset.
        l1 / perceptual / fourier: weights of Eq. 22, 23 and 24 in the total loss (Eq. 25).
        match_weight: weight of the correspondence loss of the matching branches (ours, not the paper's:
            InfoNCE of the true key, ``fasr.models.correspondence``); 0 in ``paper``/``public``.
        match_temperature: its softmax temperature.
        fourier_mode: ``complex`` (|F(SR) - F(HR)|) or ``magnitude`` (||F(SR)| - |F(HR)||).
        fourier_norm: ``ortho`` (spectrum on the pixel scale, Parseval) or ``backward`` (unnormalised FFT).
        perceptual_weights: the fixed network of Eq. 23: ``mri`` (default: the shipped MRI VGG19 from
            ``fasr pretrain-extractor``, frozen, relu3_1 at 1/4 of the image) or a torchvision VGG19 file (e.g.
            ImageNet, relu4 at 1/8 as the paper); None = no perceptual term (said once in the log).
        warmup_epochs: epochs trained with L1 alone before all terms are switched on (10 in the paper).
    """

    preset: Preset = "paper"
    l1: float | None = None
    perceptual: float | None = None
    fourier: float | None = None
    fourier_mode: Literal["complex", "magnitude"] | None = None
    fourier_norm: Literal["ortho", "backward"] | None = None
    match_weight: float | None = None
    match_temperature: float = 0.07
    perceptual_weights: str | None = "mri"
    warmup_epochs: int = 10

    def resolved(self) -> LossConfig:
        """This section with unset fields taken from :data:`LOSS_PRESETS` ``[preset]``."""
        return _fill(self, LOSS_PRESETS[self.preset])


@dataclass
class OptimConfig:
    """Adam with separate learning rates for the texture extractor and the rest (Section IV-B).

    Args:
        preset: ``paper`` or ``public``; fills the learning rates left unset.
        lr_extractor: learning rate of parameters named ``extractor.*``.
        lr_rest: learning rate of every other parameter (the only group of a model without an extractor).
        lr_grown: ours: learning rate of the zero-initialised weights that ``model.ref_detail`` /
            ``model.ref_guided`` add, so they can learn faster than a trained model is fine-tuned; None = ``lr_rest``.
        betas / weight_decay: Adam's.
        grad_clip: max global gradient norm (0 = no clipping).
    """

    preset: Preset = "paper"
    lr_extractor: float | None = None
    lr_rest: float | None = None
    lr_grown: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 0.0

    def resolved(self) -> OptimConfig:
        """This section with unset learning rates taken from :data:`OPTIM_PRESETS` ``[preset]``."""
        return _fill(self, OPTIM_PRESETS[self.preset])


@dataclass
class ScheduleConfig:
    """Training length, learning-rate decay and precision.

    Args:
        epochs: number of epochs (the paper: 10 warm-up + 50 or more).
        steps_per_epoch: optimiser steps per epoch (0 = one pass over the training slices).
        max_steps: stop after this many steps in total (0 = no cap); the last epoch is then cut short.
        decay: learning-rate decay per epoch: ``step`` (x ``decay_gamma`` every ``decay_every`` epochs),
            ``cosine`` (to 0 at ``epochs``) or ``none`` (the paper only says the rate is "gradually reduced").
        val_every: validate (and write ``best.pt``) every this many epochs and at the end.
        amp: mixed precision on CUDA: ``auto`` (bf16 where supported, else fp16), ``bf16``, ``fp16`` or ``off``;
            always off on CPU.
    """

    epochs: int = 60
    steps_per_epoch: int = 0
    max_steps: int = 0
    decay: Literal["step", "cosine", "none"] = "step"
    decay_every: int = 20
    decay_gamma: float = 0.5
    val_every: int = 1
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"


@dataclass
class LogConfig:
    """Run folder contents.

    Args:
        tensorboard: write TensorBoard logs to ``<run>/tb``.
        log_every: steps between scalar (loss, learning-rate) logs.
        image_every: validations between TensorBoard image grids (LR/Ref/SR/HR/error); 0 = never.
        progress: show a progress bar with loss and speed.
        val_max_slices: validate on at most this many evenly spaced slices (0 = all).
    """

    tensorboard: bool = True
    log_every: int = 10
    image_every: int = 1
    progress: bool = True
    val_max_slices: int = 0


@dataclass
class RunConfig:
    """Everything one training/evaluation run needs.

    Args:
        seed: training seed.
        init_from: start training from these weights (a checkpoint file or a shipped model name, e.g.
            ``brats-x4``) with a fresh optimiser and schedule: fine-tuning. The model section must build the
            same architecture; ``None`` starts from the model's own initialisation.
        init_from_sha256: the SHA-256 of the ``init_from`` file: a recipe that pins it cannot silently start from
            other weights (a shipped name such as ``brats-x4`` names whatever model is shipped today).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    init_from: str | None = None
    init_from_sha256: str | None = None

    def __post_init__(self) -> None:
        # I_Ref-down-up follows the LR degradation unless the model section names one (Section III-A).
        if self.model.ref_degradation == "auto" and isinstance(self.model, ModelConfig):
            self.model = dataclasses.replace(self.model, ref_degradation=nominal_spec(self._lr_degradation()))
        elif isinstance(self.model, ModelConfig):
            degradation_from_spec(self.model.ref_degradation)  # an unknown spec is an error here, not at build
        if isinstance(self.model, ModelConfig) and is_through_plane(self.model) != (self.model.scale == 1):
            raise FasrError(
                f"model.scale {self.model.scale} with model.ref_degradation '{self.model.ref_degradation}': a "
                "through-plane model (slice profile, data.degradation.kind slice) has model.scale 1; an in-plane "
                "model has model.scale >= 2 and an in-plane degradation"
            )

    def _lr_degradation(self) -> DegradationConfig:
        """How the LR of this run's data is made: a slice cache's own degradation (its manifest), else
        ``data.degradation``."""
        root = self.data.root if isinstance(self.data.root, str) else None
        if self.data.kind == "cache" and root is not None and (Path(root) / MANIFEST).is_file():
            return DegradationConfig(**read_manifest(Path(root))["degradation"])
        return self.data.degradation


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
        if isinstance(value, (list, tuple)):  # e.g. ``str | list[str]``: a list takes the sequence member
            args = [a for a in args if typing.get_origin(a) in (list, tuple)] or args
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
            raise UsageError(f"--set expects key=value, got '{item}'")
        key, raw = item.split("=", 1)
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return data


def read_yaml(path: str | Path, missing_hint: str = "see configs/ for examples") -> dict:
    """The mapping in a YAML config file; one-line errors for a missing, malformed or non-mapping file.

    A top-level ``base: other.yaml`` (relative to the file) is read first and this file's sections are merged
    into it key by key (ours: one recipe can build on another, e.g. a fine-tuning stage on its first stage).

    Args:
        path: YAML file.
        missing_hint: what to tell the user when the file does not exist.
    """
    return _read_yaml_chain(Path(path), missing_hint, ())


def _read_yaml_chain(path: Path, missing_hint: str, chain: tuple[Path, ...]) -> dict:
    if not path.is_file():
        raise FasrError(f"config file '{path}' not found; {missing_hint}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise FasrError(f"config file '{path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise FasrError(f"config file '{path}' must be a mapping of config sections")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise FasrError(f"config file '{path}': 'base' must be the path of another config file, got {base!r}")
    parent = path.parent / base
    chain = (*chain, path.resolve())
    if parent.resolve() in chain:
        raise FasrError(f"config file '{path}': 'base: {base}' makes a cycle; a config cannot build on itself")
    return deep_merge(_read_yaml_chain(parent, f"it is the 'base' of '{path}'", chain), data)


def deep_merge(base: dict, delta: dict) -> dict:
    """A copy of ``base`` with ``delta`` merged in (nested mappings merged, other values replaced)."""
    merged = copy.deepcopy(base)
    for key, value in delta.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML config (or defaults when ``path`` is None) and apply ``--set`` overrides."""
    data = read_yaml(path) if path is not None else {}
    apply_overrides(data, overrides or [])
    return from_dict(RunConfig, data)


def save_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
