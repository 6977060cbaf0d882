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
from fasr.models.config import ModelConfig
from fasr.models.output import SROutput

__all__ = [
    "build_model", "register", "ignored_settings", "MODELS", "USES", "GROWN_WEIGHTS", "WEIGHT_FREE_FIELDS",
    "SROutput", "ModelConfig",
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
}
_ALL = frozenset(f.name for f in dataclasses.fields(ModelConfig))
# name -> the ModelConfig fields the architecture reads; any other field must keep its default (else an error).
USES: dict[str, frozenset[str]] = {
    "fasr": _ALL,
    "ttsr": _ALL - {"alignment", "embed_dim", "sa_key_stride", "ma_pyramid"},
    "bicubic": frozenset({"name", "scale"}),
    "guided": frozenset({"name", "scale", "ref_degradation", "guide_order"}),
    **{name: frozenset({"name", "scale", "n_feats"}) for name in ("edsr", "swinir", "mcsr", "minet")},
}

# ModelConfig fields that, switched on, only add zero-initialised weights, named with this substring: a model
# trained without them can be fine-tuned into one with them (``init_from``) and starts from the same output.
GROWN_WEIGHTS: dict[str, str] = {"ref_detail": ".detail.", "ref_guided": "guide"}
# ModelConfig fields that change what a model computes but none of its weights: ``init_from`` may change them (the
# fine-tuning that follows adapts the weights; FASR-Net's weights do not depend on its scale, a baseline's upsampler
# does and fails to load).
WEIGHT_FREE_FIELDS = frozenset({"guide_order", "scale"})


def register(name: str, target: str, uses: frozenset[str] = _ALL) -> None:
    """Register ``"module:factory"`` under ``name`` (for user extensions), with the config fields it reads."""
    MODELS[name], USES[name] = target, frozenset(uses) | {"name"}


def ignored_settings(cfg: ModelConfig) -> list[str]:
    """``model.*`` fields set away from their defaults that the architecture ``cfg.name`` does not read."""
    default = ModelConfig()
    # ``ref_degradation`` is filled in from the data config for every run (``auto``), used or not; no backbone
    # weights (None, as a loaded checkpoint is rebuilt) is the absence of a setting.
    unused = _ALL - USES.get(cfg.name, _ALL) - {"ref_degradation"}
    absent = {"backbone_weights"} if cfg.backbone_weights is None else set()
    return [f"model.{f}" for f in sorted(unused - absent) if getattr(cfg, f) != getattr(default, f)]


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
