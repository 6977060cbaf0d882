"""Model registry: architectures picked by ``model.name`` in the config (BasicSR-style).

Every model takes ``forward(lr, ref)`` with lr (B, 1, h, w) and ref (B, 1, h*scale, w*scale) on the
[-1, 1] scale and returns :class:`fasr.models.output.SROutput`. Single-image baselines ignore ``ref``.
"""

from __future__ import annotations

import importlib
from typing import Callable

from torch import nn

from fasr.errors import FasrError
from fasr.models.config import ModelConfig
from fasr.models.output import SROutput

__all__ = ["build_model", "register", "MODELS", "SROutput", "ModelConfig"]

# name -> "module:factory"; a factory takes a ModelConfig and returns an nn.Module.
MODELS: dict[str, str] = {
    "fasr": "fasr.models.fasrnet:from_config",
    "ttsr": "fasr.models.fasrnet:ttsr_from_config",
    "bicubic": "fasr.models.baselines.bicubic:from_config",
    "edsr": "fasr.models.baselines.edsr:from_config",
    "swinir": "fasr.models.baselines.swinir:from_config",
    "mcsr": "fasr.models.baselines.mcsr:from_config",
    "minet": "fasr.models.baselines.minet:from_config",
}


def register(name: str, target: str) -> None:
    """Register ``"module:factory"`` under ``name`` (for user extensions)."""
    MODELS[name] = target


def build_model(cfg: ModelConfig) -> nn.Module:
    """Instantiate the architecture named by ``cfg.name``."""
    if cfg.name not in MODELS:
        raise FasrError(f"unknown model.name '{cfg.name}'; choose one of {sorted(MODELS)}")
    module, factory = MODELS[cfg.name].split(":")
    build: Callable[[ModelConfig], nn.Module] = getattr(importlib.import_module(module), factory)
    return build(cfg)
