"""Adam with two learning-rate groups (Section IV-B; a third, ours, for grown weights), per-epoch decay, and
mixed-precision settings."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LRScheduler, StepLR

from fasr.config import OptimConfig, ScheduleConfig
from fasr.errors import FasrError
from fasr.models import GROWN_WEIGHTS

__all__ = ["EXTRACTOR_PREFIX", "param_groups", "build_optimizer", "build_scheduler", "amp_dtype"]

# Parameters whose names start with this belong to the texture extractor F_TE (learning rate ``lr_extractor``).
EXTRACTOR_PREFIX = "extractor."


def param_groups(
    model: nn.Module, lr_extractor: float, lr_rest: float, grown: tuple[str, ...] = (), lr_grown: float | None = None
) -> list[dict]:
    """Adam groups ``extractor``, ``rest`` and, with ``lr_grown``, ``grown`` (empty groups are left out).

    Args:
        model: the bare model (parameter names without a DDP ``module.`` prefix).
        lr_extractor: learning rate of ``extractor.*`` parameters.
        lr_rest: learning rate of all others.
        grown: name substrings of the weights that grown inputs add (:data:`fasr.models.GROWN_WEIGHTS`).
        lr_grown: learning rate of those weights (ours); None = they are in ``rest``.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    marks = grown if lr_grown is not None else ()  # without their own rate the grown weights stay in ``rest``

    def is_grown(name: str) -> bool:
        return any(m in name for m in marks)

    extractor = [p for n, p in named if n.startswith(EXTRACTOR_PREFIX)]
    new = [p for n, p in named if not n.startswith(EXTRACTOR_PREFIX) and is_grown(n)]
    rest = [p for n, p in named if not n.startswith(EXTRACTOR_PREFIX) and not is_grown(n)]
    groups = [("extractor", extractor, lr_extractor), ("rest", rest, lr_rest), ("grown", new, lr_grown)]
    return [{"name": name, "params": params, "lr": lr} for name, params, lr in groups if params]


def build_optimizer(model: nn.Module, cfg: OptimConfig, model_name: str) -> torch.optim.Adam:
    """Adam over :func:`param_groups`.

    Args:
        model: the bare model.
        cfg: a resolved :class:`OptimConfig`.
        model_name: for the error message when there is nothing to train.
    """
    grown = tuple(GROWN_WEIGHTS.values())
    groups = param_groups(model, cfg.lr_extractor, cfg.lr_rest, grown, cfg.lr_grown)
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
