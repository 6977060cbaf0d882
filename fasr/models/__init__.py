"""Model registry: architectures picked by ``model.name`` in the config (BasicSR-style).

Every model takes ``forward(lr, ref)`` with lr (B, 1, h, w) and ref (B, 1, h*scale, w*scale) on the
[-1, 1] scale and returns :class:`fasr.models.output.SROutput`. Single-image baselines ignore ``ref``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Callable

from torch import nn

from fasr.errors import FasrError
from fasr.models.config import ModelConfig, fact, fields_read_by, fields_where
from fasr.models.output import SROutput

__all__ = [
    "build_model", "register", "ignored_settings", "canonical", "MODELS", "ALIASES", "USES", "GROWN_WEIGHTS",
    "WEIGHT_FREE_FIELDS", "SROutput", "ModelConfig",
]

# name -> "module:factory"; a factory takes a ModelConfig and returns an nn.Module.
MODELS: dict[str, str] = {
    "fasr": "fasr.models.fasrnet:from_config",
    "ttsr": "fasr.models.fasrnet:ttsr_from_config",
    "bicubic": "fasr.models.baselines.bicubic:from_config",
    "guided": "fasr.models.baselines.guided:from_config",
    "edsr": "fasr.models.baselines.edsr:from_config",
    "swinir": "fasr.models.baselines.swinir:from_config",
    "mcsr": "fasr.models.baselines.mcsr:from_config",
    "minet": "fasr.models.baselines.minet:from_config",
    "masa": "fasr.models.baselines.masa:from_config",
}
# Names that are another registered model with some fields set: the same network, built and trained bit for bit
# the same (TTSR here is FASR-Net with one-level cross-attention, the Table III "w/o FA" row).
ALIASES: dict[str, dict[str, str]] = {"ttsr": {"name": "fasr", "alignment": "cross_attention"}}
# name -> the ModelConfig fields the architecture reads (each field's ``read_by`` fact, fasr.models.config); any
# other field must keep its default (else an error). Extensions declare theirs in ``register``.
USES: dict[str, frozenset[str]] = {name: fields_read_by(name) for name in MODELS}
# Derived from the fields' facts: the fields that only add zero-initialised weights (with the substring naming
# them), and those that change no weight; ``init_from`` may switch either on.
GROWN_WEIGHTS: dict[str, str] = {name: fact(name, "grows") for name in fields_where("grows")}
WEIGHT_FREE_FIELDS: dict[str, frozenset[str]] = {name: fields_read_by(name, "weight_free") for name in MODELS}


def register(name: str, target: str, uses: frozenset[str] | None = None) -> None:
    """Register ``"module:factory"`` under ``name`` (for user extensions), with the config fields it reads."""
    every = frozenset(f.name for f in dataclasses.fields(ModelConfig))
    MODELS[name], USES[name] = target, (every if uses is None else frozenset(uses)) | {"name"}


def ignored_settings(cfg: ModelConfig) -> list[str]:
    """``model.*`` fields set away from their defaults that the architecture ``cfg.name`` does not read."""
    default = ModelConfig()
    # ``ref_degradation`` is filled in from the data config for every run (``auto``), used or not; no backbone
    # weights (None, as a loaded checkpoint is rebuilt) is the absence of a setting.
    every = frozenset(f.name for f in dataclasses.fields(ModelConfig))
    unused = every - USES.get(cfg.name, every) - {"ref_degradation"}
    absent = {"backbone_weights"} if cfg.backbone_weights is None else set()
    return [f"model.{f}" for f in sorted(unused - absent) if getattr(cfg, f) != getattr(default, f)]


def canonical(model: dict) -> dict:
    """A ``model`` config mapping (every field, as ``to_dict`` writes it) in a form that two configs of the same
    network share: a config that is an :data:`ALIASES` model (by name, or by its fields) reads as that alias,
    with only the fields the alias reads (the others do not change its weights or its training)."""
    for alias, fields in ALIASES.items():
        if model.get("name") == alias or all(model.get(k) == v for k, v in fields.items()):
            return {**{k: v for k, v in model.items() if k in USES[alias]}, "name": alias}
    return model


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the architecture named by ``cfg.name``.

    Raises:
        FasrError: an unknown name, or a setting the architecture would silently ignore.
    """
    if cfg.name not in MODELS:
        raise FasrError(f"unknown model.name '{cfg.name}'; choose one of {sorted(MODELS)}")
    ignored = ignored_settings(cfg)
    if ignored:
        raise FasrError(f"model '{cfg.name}' does not use {', '.join(ignored)}; remove them from the config")
    module, factory = MODELS[cfg.name].split(":")
    build: Callable[[ModelConfig], nn.Module] = getattr(importlib.import_module(module), factory)
    return build(cfg)
