"""Slice-wise super-resolution of a stack: batches of (LR slice, reference slice) pairs through a model, within
a memory budget (whole slices, or in-plane tiles when a slice does not fit), optionally with bf16 convolutions.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from fasr.errors import FasrError
from fasr.heap import REUSE_OVERHEAD, release_freed_memory, released_eagerly, reusing
from fasr.inference.engine.memory import (
    TilePlan,
    current_rss_gib,
    default_max_memory_gib,
    plan_tiles,
)
from fasr.inference.engine.tiling import tile_count, tiled_forward
from fasr.inference.options import PRECISIONS  # noqa: F401 - re-exported; defined there so parsers need no torch
from fasr.models.config import ModelConfig

__all__ = [
    "RunSettings",
    "SliceResult",
    "cpu_native_bf16",
    "precision_forward",
    "resolve_precision",
    "super_resolve_slices",
    "PRECISIONS",
]



_MODEL = ModelConfig()  # RunSettings' defaults are the default model's settings


@dataclass(frozen=True)
class RunSettings:
    """How a stack runs (not what the model computes).

    Attributes:
        precision: ``fp32``, ``bf16`` (convolutions of extractor and fusion in bf16 autocast; matching stays
            fp32) or ``auto`` (bf16 where the hardware has it: CUDA, or a CPU with AVX512-BF16 / AMX).
        max_memory_gib: peak memory budget of the process; None = 80 % of what the machine has available.
        n_feats / match_memory_mib / search_window: the model's settings the memory estimate needs.
    """

    precision: str = "fp32"
    max_memory_gib: float | None = None
    n_feats: int = _MODEL.n_feats
    match_memory_mib: float = _MODEL.match_memory_mib
    search_window: int = _MODEL.search_window

    @classmethod
    def for_model(cls, model_cfg: Any, precision: str = "fp32", max_memory_gib: float | None = None) -> RunSettings:
        """Settings for a model config (``n_feats``, ``match_memory_mib``, ``search_window`` where it has them)."""
        return cls(
            precision=precision,
            max_memory_gib=max_memory_gib,
            n_feats=int(getattr(model_cfg, "n_feats", 64)),
            match_memory_mib=float(getattr(model_cfg, "match_memory_mib", 128.0)),
            search_window=int(getattr(model_cfg, "search_window", 0)),
        )


class SliceResult(NamedTuple):
    """Outputs for a stack of N slices, on the [-1, 1] scale of the model.

    Attributes:
        sr: (N, H, W) super-resolved slices.
        confidence: (N, H, W) soft-attention confidence in [0, 1], or None for single-image models.
        stats: throughput and plan: ``slices``, ``skipped_empty``, ``batch``, ``tile`` (LR px or None),
            ``tiles_per_slice``, ``precision``, ``max_memory_gib``, ``estimated_peak_gib``, ``seconds``,
            ``slices_per_second``.
    """

    sr: np.ndarray
    confidence: np.ndarray | None
    stats: dict[str, Any] | None = None


def cpu_native_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16/AMX); without it bf16 is emulated, far slower than fp32."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(name: str, device: torch.device) -> str:
    """``fp32`` / ``bf16``; ``auto`` picks bf16 on CUDA and on CPUs with native bf16, else fp32.

    Raises:
        FasrError: an unknown name, or bf16 asked for on a CPU without native bf16 (it would be slower).
    """
    if name not in PRECISIONS:
        raise FasrError(f"unknown --precision '{name}'; use {', '.join(PRECISIONS)}")
    native = device.type == "cuda" or cpu_native_bf16()
    if name == "auto":
        return "bf16" if native else "fp32"
    if name == "bf16" and not native:
        raise FasrError("--precision bf16: this CPU has no native bf16 (AVX512-BF16/AMX); use --precision fp32")
    return name


def precision_forward(model: nn.Module, precision: str, device: torch.device, degradation: Any = None):
    """``(lr, ref) -> (sr, confidence or None)`` (fp32 tensors) running ``model`` in ``precision``.

    The model is switched to channels-last memory format (oneDNN's fast convolutions, fp32 and bf16 alike:
    2.9 -> 2.7 s fp32 and 2.3 -> 1.9 s bf16 per 256x256 slice, one thread, measured here). bf16 is autocast:
    convolutions in bf16, matching cast back to fp32 inside :mod:`fasr.models.matching`.

    Args:
        model: in eval mode on ``device``.
        precision: ``fp32`` or ``bf16`` (resolved by :func:`resolve_precision`).
        device: where it runs.
        degradation: how this scan's LR was made when not the model's own (a through-plane scan's slice profile,
            :class:`fasr.data.degrade.SliceProfile`): passed to the model for its Ref-down-up.
    """
    model.to(memory_format=torch.channels_last)
    extra = {} if degradation is None else {"degradation": degradation}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()

    def run(lr: Tensor, ref: Tensor) -> tuple[Tensor, Tensor | None]:
        with autocast:
            out = model(lr, ref, **extra)
        return out.sr.float(), None if out.confidence is None else out.confidence.float()

    return run


def _plan(
    shape: tuple[int, int], scale: int, batch_size: int, settings: RunSettings, device: torch.device
) -> tuple[TilePlan, float]:
    """The tile plan and the budget it was made for (CPU: this process's RSS now is the base)."""
    if device.type == "cpu":
        release_freed_memory()  # the heap keeps freed memory for reuse (fasr.heap): it is not the base
    budget = settings.max_memory_gib if settings.max_memory_gib is not None else default_max_memory_gib(device.type)
    base = current_rss_gib() if device.type == "cpu" else 0.0
    plan = plan_tiles(
        shape, scale, batch_size, budget, n_feats=settings.n_feats, match_memory_mib=settings.match_memory_mib,
        search_window=settings.search_window, precision=settings.precision, base_gib=base,
    )
    return plan, budget


def _after_tile(bar: tqdm):
    def done() -> None:
        release_freed_memory()  # else the heap fragments over many tiles and RSS creeps past the budget
        bar.update(1)

    return done


# A slice whose normalised LR values span less than this has no content (ours: 0.05 % of the [-1, 1] range,
# far below any anatomy, above the round-off that degradation and resampling leave on a blank slice).
EMPTY_RANGE = 1e-3


def super_resolve_slices(
    model: nn.Module,
    lr: np.ndarray,
    ref: np.ndarray,
    scale: int,
    batch_size: int,
    device: torch.device,
    progress: bool,
    settings: RunSettings | None = None,
    degradation: Any = None,
) -> SliceResult:
    """Run ``model(lr, ref)`` over a stack of slices in batches, each LR slice with its own reference slice.

    The batch and in-plane tiling are planned up front from the memory budget (:mod:`fasr.inference.engine.memory`),
    before any slice runs. Empty slices (constant LR: no content) skip the network: their output is that
    constant, with confidence 0.

    Args:
        model: an SR model in eval mode (``forward(lr, ref) -> SROutput``), already on ``device``.
        lr: (N, h, w) LR slices on [-1, 1].
        ref: (N, h * scale, w * scale) reference slices on [-1, 1], on the SR grid.
        scale: in-plane factor of the model.
        batch_size: slices per forward pass (at most; fewer when the budget needs it).
        device: where the batches run.
        progress: show a progress bar (stderr).
        settings: precision and memory budget (default: fp32, budget from the machine).
        degradation: the scan's own degradation for the model's Ref-down-up (:func:`precision_forward`).

    Raises:
        FasrError: even one tile of a slice cannot fit the memory budget.
    """
    settings = settings or RunSettings()
    n, h, w = lr.shape
    if ref.shape != (n, h * scale, w * scale):
        raise ValueError(f"reference stack {ref.shape} does not match LR {lr.shape} at x{scale}")
    precision = resolve_precision(settings.precision, device)
    settings = RunSettings(**{**settings.__dict__, "precision": precision})
    flat = lr.reshape(n, -1)
    busy = np.flatnonzero(flat.max(axis=1) - flat.min(axis=1) > EMPTY_RANGE)  # slices with content
    plan, budget = _plan((h, w), scale, max(1, min(batch_size, len(busy))), settings, device)
    if plan.tile is not None and degradation is not None:
        raise FasrError(
            f"a {h}x{w} plane does not fit the memory budget ({budget:.1f} GiB) whole, and through-plane models do not "
            "tile planes (their slices would be cut): raise --max-memory-gib or use a machine with more memory"
        )
    forward = precision_forward(model, precision, device, degradation)
    level = flat.mean(axis=1, dtype=np.float64).astype(np.float32)[:, None, None]  # (N, 1, 1) empty slices' value
    sr = np.repeat(level, h * scale, axis=1).repeat(w * scale, axis=2)  # constants, replaced where there is content
    confidence: np.ndarray | None = None
    # A tiled plan counts progress in tiles: one large slice can take many minutes.
    tiles = 1 if plan.tile is None else tile_count(h, w, plan.tile, plan.overlap)
    unit = "slice" if plan.tile is None else "tile"
    start = time.perf_counter()
    # Ours: a heap that keeps freed memory (fasr.heap) adds up to REUSE_OVERHEAD to the peak, and more under tiles
    # of different sizes; within a tight budget, memory goes back to the OS as soon as it is freed.
    tight = device.type == "cpu" and (plan.tile is not None or plan.estimate.peak_gib * REUSE_OVERHEAD > budget)
    heap_mode = ("released eagerly" if tight else "reused") if reusing() else "allocator defaults"
    with torch.inference_mode(), released_eagerly() if tight else contextlib.nullcontext(), tqdm(
        total=n * tiles, desc="super-resolving", unit=unit, disable=not progress
    ) as bar:
        bar.update((n - len(busy)) * tiles)
        for b0 in range(0, len(busy), plan.batch):
            idx = busy[b0 : b0 + plan.batch]
            lr_b = torch.from_numpy(np.ascontiguousarray(lr[idx], dtype=np.float32))[:, None].to(device)
            ref_b = torch.from_numpy(np.ascontiguousarray(ref[idx], dtype=np.float32))[:, None].to(device)
            if plan.tile is None:
                out_sr, out_conf = forward(lr_b, ref_b)  # (b, 1, H, W)
            else:
                out_sr, out_conf, _ = tiled_forward(
                    forward, lr_b, ref_b, scale, plan.tile, plan.margin, plan.overlap, on_tile=_after_tile(bar)
                )
            sr[idx] = out_sr[:, 0].cpu().numpy()
            if out_conf is not None:
                if confidence is None:
                    confidence = np.zeros_like(sr)
                confidence[idx] = out_conf[:, 0].cpu().numpy()
            if plan.tile is None:
                bar.update(len(idx))
    seconds = time.perf_counter() - start
    stats = {
        "slices": n,
        "skipped_empty": int(n - len(busy)),
        "batch": plan.batch,
        "tile": plan.tile,
        "tiles_per_slice": tiles,
        "precision": precision,
        "max_memory_gib": round(budget, 3),
        "estimated_peak_gib": round(plan.estimate.peak_gib, 3),
        "heap": heap_mode,  # fasr.heap: how freed memory was handled
        "seconds": round(seconds, 3),
        "slices_per_second": round(n / seconds, 3) if seconds > 0 else None,
    }
    return SliceResult(sr=sr, confidence=confidence, stats=stats)
