"""Predictions of models beside bicubic on dataset slices, grouped by volume, and their scores in one convention.

Shared by training (validation) and evaluation (``fasr eval``, figures). :func:`score_predictions` returns a
JSON-ready dict::

    {"methods": ["bicubic", "fasr"], "convention": "fastmri", "protocol": "...", "mask": null,
     "bicubic": {"psnr": .., "ssim": .., "nmse": ..}, "fasr": {...},
     "per_volume": [{"subject": .., "method": .., "slices": n, "psnr": .., "ssim": .., "nmse": ..}, ...],
     "per_slice": [{"subject": .., "slice": i, "method": .., "psnr": .., "ssim": .., "nmse": ..}, ...]}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from fasr.data.degrade import Bicubic
from fasr.data.types import NormStats, PairedSample
from fasr.scoring.conventions import get_convention
from fasr.scoring.metrics import foreground_mask

__all__ = [
    "BICUBIC",
    "VolumePrediction",
    "spread_indices",
    "predict_volumes",
    "merge_predictions",
    "score_predictions",
]

BICUBIC = "bicubic"


@dataclass
class VolumePrediction:
    """Inputs, ground truth and every method's output for the evaluated slices of one volume (on [-1, 1]).

    Attributes:
        subject: volume id.
        slices: (N,) slice indices, ascending.
        hr / ref: (N, H, W) ground truth and reference; lr: (N, H/s, W/s).
        outputs: method name -> (N, H, W) prediction (always includes ``"bicubic"``).
        target_stats: normalisation of the target volume (maps [-1, 1] back to scanner intensities).
    """

    subject: str
    slices: np.ndarray
    hr: np.ndarray
    ref: np.ndarray
    lr: np.ndarray
    outputs: dict[str, np.ndarray]
    target_stats: tuple[float, float]


@dataclass
class _Slice:
    """One slice of a :class:`VolumePrediction` (arrays (H, W), lr (H/s, W/s))."""

    index: int
    hr: np.ndarray
    ref: np.ndarray
    lr: np.ndarray
    outputs: dict[str, np.ndarray]


def _stack(subject: str, slices: list[_Slice], stats: tuple[float, float]) -> VolumePrediction:
    """One volume from its slices, sorted by index, each array stacked to (N, ...)."""
    slices = sorted(slices, key=lambda s: s.index)
    return VolumePrediction(
        subject=subject,
        slices=np.array([s.index for s in slices]),
        hr=np.stack([s.hr for s in slices]),
        ref=np.stack([s.ref for s in slices]),
        lr=np.stack([s.lr for s in slices]),
        outputs={m: np.stack([s.outputs[m] for s in slices]) for m in slices[0].outputs},
        target_stats=stats,
    )


def _unstack(v: VolumePrediction) -> list[_Slice]:
    return [
        _Slice(int(z), v.hr[i], v.ref[i], v.lr[i], {m: out[i] for m, out in v.outputs.items()})
        for i, z in enumerate(v.slices)
    ]


def spread_indices(n: int, max_items: int) -> list[int]:
    """``max_items`` evenly spaced indices of ``range(n)``: the centres of equal bins (one item: the middle);
    all of them when ``max_items`` is 0 or >= n."""
    if max_items <= 0 or max_items >= n:
        return list(range(n))
    return [int((i + 0.5) * n / max_items) for i in range(max_items)]


@torch.no_grad()
def predict_volumes(
    models: dict[str, nn.Module],
    dataset: Dataset,
    indices: Sequence[int],
    batch_size: int,
    device: torch.device,
    num_workers: int = 0,
) -> dict[str, VolumePrediction]:
    """Run each model (and bicubic) on the samples ``indices`` of ``dataset``, grouped by volume.

    Args:
        models: method name -> model (``forward(lr, ref) -> SROutput``); put in eval mode here.
        dataset: yields :class:`PairedSample` with equal slice sizes.
        indices: which samples to use.
        batch_size: slices per forward pass.
        device: where the models run.
        num_workers: DataLoader workers.
    """
    for model in models.values():
        model.eval()
    loader = DataLoader(Subset(dataset, list(indices)), batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    slices: dict[str, list[_Slice]] = {}
    stats: dict[str, tuple[float, float]] = {}
    for batch in loader:
        samples: list[PairedSample] = batch
        lr = torch.stack([s.lr for s in samples]).to(device)  # (B, 1, h, w)
        ref = torch.stack([s.ref for s in samples]).to(device)  # (B, 1, H, W)
        scale = samples[0].hr.shape[-1] // samples[0].lr.shape[-1]
        outputs = {BICUBIC: Bicubic().up(lr, scale)}
        outputs.update({name: model(lr, ref).sr.float() for name, model in models.items()})
        for b, s in enumerate(samples):
            predicted = {name: out[b, 0].cpu().numpy() for name, out in outputs.items()}
            item = _Slice(int(s.slice_index), s.hr[0].numpy(), s.ref[0].numpy(), s.lr[0].numpy(), predicted)
            slices.setdefault(s.subject, []).append(item)
            stats[s.subject] = (float(s.target_stats[0]), float(s.target_stats[1]))
    return {subject: _stack(subject, items, stats[subject]) for subject, items in slices.items()}


def merge_predictions(shards: Iterable[dict[str, VolumePrediction]]) -> dict[str, VolumePrediction]:
    """Join predictions made on disjoint subsets of slices (e.g. one per DDP rank) into whole volumes."""
    slices: dict[str, list[_Slice]] = {}
    stats: dict[str, tuple[float, float]] = {}
    for shard in shards:
        for subject, v in shard.items():
            slices.setdefault(subject, []).extend(_unstack(v))
            stats[subject] = v.target_stats
    return {subject: _stack(subject, items, stats[subject]) for subject, items in sorted(slices.items())}


def score_predictions(
    volumes: dict[str, VolumePrediction], convention: str = "fastmri", mask_threshold: float | None = None
) -> dict[str, Any]:
    """Score every method of ``volumes`` (see the module docstring for the result's layout).

    Args:
        volumes: predictions by subject.
        convention: ``fastmri`` or ``paper`` (:mod:`fasr.scoring.conventions`).
        mask_threshold: score only the foreground (ground truth above this fraction of its volume maximum,
            holes filled); None scores every pixel.
    """
    conv = get_convention(convention)
    methods = list(next(iter(volumes.values())).outputs)
    per_volume: list[dict[str, Any]] = []
    per_slice: list[dict[str, Any]] = []
    summary_rows: dict[str, tuple[list, list]] = {m: ([], []) for m in methods}
    for v in volumes.values():
        stats = NormStats(*v.target_stats)
        target = conv.to_images(v.hr, stats)  # (N, H, W) on the scoring scale
        mask = None if mask_threshold is None else foreground_mask(target, mask_threshold)
        for method in methods:
            vol_scores, slice_scores = conv.score_volume(conv.to_images(v.outputs[method], stats), target, mask)
            summary_rows[method][0].append(vol_scores)
            summary_rows[method][1].extend(slice_scores)
            per_volume.append({"subject": v.subject, "method": method, "slices": len(v.slices), **vol_scores})
            per_slice += [
                {"subject": v.subject, "slice": int(i), "method": method, **s} for i, s in zip(v.slices, slice_scores)
            ]
    result: dict[str, Any] = {
        "methods": methods,
        "convention": conv.name,
        "protocol": conv.protocol,
        "mask": None if mask_threshold is None else f"ground truth > {mask_threshold:g} x volume max, holes filled",
    }
    result.update({m: conv.summarize(*summary_rows[m]) for m in methods})
    result.update(per_volume=per_volume, per_slice=per_slice)
    return result
