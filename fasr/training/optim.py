"""Adam with two learning-rate groups (Section IV-B), per-epoch decay, and mixed-precision settings."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, StepLR

from fasr.config import OptimConfig, ScheduleConfig
from fasr.errors import FasrError

__all__ = ["EXTRACTOR_PREFIX", "param_groups", "build_optimizer", "build_scheduler", "amp_dtype"]

# Parameters whose names start with this belong to the texture extractor F_TE (learning rate ``lr_extractor``).
EXTRACTOR_PREFIX = "extractor."


def param_groups(model: nn.Module, lr_extractor: float, lr_rest: float) -> list[dict]:
    """Two Adam groups, ``extractor`` and ``rest`` (one group when the model has no texture extractor).

    Args:
        model: the bare model (parameter names without a DDP ``module.`` prefix).
        lr_extractor: learning rate of ``extractor.*`` parameters.
        lr_rest: learning rate of all others.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    extractor = [p for n, p in named if n.startswith(EXTRACTOR_PREFIX)]
    rest = [p for n, p in named if not n.startswith(EXTRACTOR_PREFIX)]
    groups = [{"name": "extractor", "params": extractor, "lr": lr_extractor}] if extractor else []
    return groups + ([{"name": "rest", "params": rest, "lr": lr_rest}] if rest else [])


def build_optimizer(model: nn.Module, cfg: OptimConfig, model_name: str) -> torch.optim.Adam:
    """Adam over :func:`param_groups`.

    Args:
        model: the bare model.
        cfg: a resolved :class:`OptimConfig`.
        model_name: for the error message when there is nothing to train.
    """
    groups = param_groups(model, cfg.lr_extractor, cfg.lr_rest)
    if not groups:
        raise FasrError(f"model '{model_name}' has no trainable parameters; evaluate it directly with `fasr eval`")
    return torch.optim.Adam(groups, betas=cfg.betas, weight_decay=cfg.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> LRScheduler:
    """Learning-rate decay stepped once per epoch (``step``, ``cosine`` or ``none``)."""
    if cfg.decay == "step":
        return StepLR(optimizer, step_size=cfg.decay_every, gamma=cfg.decay_gamma)
    if cfg.decay == "cosine":
        return CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return ConstantLR(optimizer, factor=1.0, total_iters=0)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``schedule.amp`` on ``device``; None = full precision (always on CPU)."""
    if device.type != "cuda" or setting == "off":
        return None
    if setting == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[setting]
