"""Score a model or checkpoint beside bicubic on a dataset split: per slice, per volume and overall, in one
convention (the result's layout: :mod:`fasr.scoring.volumes`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fasr.checkpoint import load_model, resolve_device
from fasr.config import RunConfig
from fasr.data.datasets import build_dataset
from fasr.errors import FasrError
from fasr.scoring.volumes import predict_volumes, score_predictions, spread_indices

__all__ = ["evaluate_model", "evaluate_checkpoint"]


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    convention: str = "fastmri",
    *,
    name: str = "fasr",
    max_slices: int = 0,
    batch_size: int = 4,
    mask_threshold: float | None = None,
    device: torch.device | None = None,
) -> dict[str, Any]:
    """Score ``model`` beside bicubic on ``dataset``.

    Args:
        model: an SR model (``forward(lr, ref) -> SROutput``).
        dataset: yields :class:`PairedSample` (a validation/test split: whole slices).
        convention: ``fastmri`` or ``paper``.
        name: the model's key in the result (its registry name: ``fasr`` for FASR-Net).
        max_slices: score at most this many evenly spaced samples (0 = all).
        batch_size: slices per forward pass.
        mask_threshold: foreground-only scoring (see :func:`score_predictions`).
        device: where the model runs (default: CUDA when present).
    """
    if len(dataset) == 0:
        raise FasrError("the evaluation split holds no slices; check data.root and the val/test subjects")
    device = device or resolve_device()
    volumes = predict_volumes(
        {name: model.to(device)}, dataset, spread_indices(len(dataset), max_slices), batch_size, device
    )
    return score_predictions(volumes, convention, mask_threshold)


def evaluate_checkpoint(
    checkpoint: str | Path,
    cfg: RunConfig | None = None,
    split: str = "val",
    convention: str = "fastmri",
    *,
    max_slices: int = 0,
    batch_size: int = 4,
    mask_threshold: float | None = None,
    device: torch.device | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Score a checkpoint (file or pretrained name) on a split of the data described by ``cfg``.

    The model and its scale always come from the checkpoint (with ``overrides``); ``cfg`` (default: the
    checkpoint's own config with ``overrides``) supplies the data section.

    Args:
        checkpoint: ``best.pt``/``last.pt`` of a run, or a registered pretrained name.
        cfg: run config whose ``data`` section picks the dataset and held-out subjects.
        split: ``train``, ``val`` or ``test``.
        convention / max_slices / batch_size / mask_threshold / device: as :func:`evaluate_model`.
        overrides: ``--set key=value`` strings for the checkpoint's config (:func:`fasr.checkpoint.load_model`;
            e.g. ``model.search_window=16``).
    """
    device = device or resolve_device()
    model, ckpt_cfg = load_model(checkpoint, map_location=device, overrides=overrides)
    cfg = cfg or ckpt_cfg
    dataset = build_dataset(cfg.data, split, scale=ckpt_cfg.model.scale, train=False)
    result = evaluate_model(
        model,
        dataset,
        convention,
        name=ckpt_cfg.model.name,
        max_slices=max_slices,
        batch_size=batch_size,
        mask_threshold=mask_threshold,
        device=device,
    )
    return {"checkpoint": str(checkpoint), "split": split, "scale": ckpt_cfg.model.scale, **result}
