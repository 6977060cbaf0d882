"""Up-front estimate of one forward pass's peak memory and time, the memory budget, and the tile plan.

The estimate is ours and empirical: FASR-Net's inference working set grows linearly with the HR pixels of a
batch (about 4.1 KB per pixel plus 24 bytes per trunk channel, measured as peak-RSS growth of a forward pass
at 256x256 and 512x512, n_feats 16 and 64, batch 1 and 2, this project's CPU, fp32), plus the correlation
block budget. A 15 % safety margin is added (it also covers ``model.ref_detail``, whose extra full-resolution
channel added 4-12 % to the peak growth of a 2 x 240 x 240 batch at n_feats 32, and ``model.ref_guided``, which
added 0-4 % more to it, with ``model.guide_order`` 1 or 2 alike: 559 and 548 MiB, against 535 without). The
estimate holds for a heap that returns freed memory; the slice loop keeps freed memory for reuse only where the
budget has room for what that adds (``fasr.heap.REUSE_OVERHEAD``).
Time is FLOPs over a throughput: the convolutions (~2.1 TFLOP per HR megapixel for the default model) and the
factorised matching (pixel correlations of the 1/4 grid, 256-dim for M-A and 64-dim for S-A's three key grids),
at rates measured with 2 threads here.

API (used by ``fasr infer`` and the planner):

* :func:`estimate` ``(lr_hw, scale, batch, ...) -> Estimate(peak_gib, seconds)`` for one forward pass.
* :func:`plan_tiles` ``(lr_hw, scale, batch, max_memory_gib, ...) -> TilePlan`` the batch and in-plane
  tile that fit a budget, or a :class:`~fasr.errors.FasrError` when even one tile cannot.
* :func:`default_max_memory_gib` the budget when none is given: 80 % of the memory available now.
"""

from __future__ import annotations

import math
import os
import resource
from typing import NamedTuple

from fasr.errors import FasrError
from fasr.inference.options import DEFAULT_BATCH_SIZE  # noqa: F401 - re-exported; defined there so parsers need no torch
from fasr.models.config import ModelConfig

_MODEL = ModelConfig()  # the defaults below are the default model's settings

__all__ = [
    "Estimate",
    "TilePlan",
    "estimate",
    "plan_tiles",
    "tile_margin",
    "default_max_memory_gib",
    "current_rss_gib",
    "PROCESS_BASE_GIB",
    "DEFAULT_BATCH_SIZE",
]


# Peak RSS of a fresh process with torch and the default model loaded, before the first forward pass.
PROCESS_BASE_GIB = 0.35
_BYTES_PER_PX = 4100.0  # ours, measured (module docstring)
_BYTES_PER_PX_PER_FEAT = 24.0
_SAFETY = 1.15
_CONV_GFLOP_PER_MPX = 2100.0  # default FASR-Net convolutions (torch.utils.flop_counter), n_feats 64
_GFLOPS = {"fp32": 90.0, "bf16": 180.0}  # measured convolution throughput, 2 threads
_MATCH_GFLOPS = 60.0  # pixel GEMMs plus the 9 shifted sums and block maxima, fp32 either way
_MIN_TILE = 16  # LR pixels: smaller tiles are mostly margin
_CONTEXT_HR = 96  # ours: HR pixels of context around a tile (most of the trunk's receptive field)


class Estimate(NamedTuple):
    """``peak_gib``: expected peak resident memory of the process (GiB) during one forward pass;
    ``seconds``: rough wall time of that pass (+-2x: the machine's load is not known)."""

    peak_gib: float
    seconds: float


class TilePlan(NamedTuple):
    """How a stack of slices runs within a budget.

    Attributes:
        batch: slices per forward pass (at most the requested batch).
        tile: LR in-plane tile side in pixels, or None for whole slices.
        margin: LR pixels of context (reference and target) around each tile.
        overlap: LR pixels over which neighbouring tiles are blended.
        estimate: the estimate for one forward pass of this plan.
    """

    batch: int
    tile: int | None
    margin: int
    overlap: int
    estimate: Estimate


def estimate(
    lr_hw: tuple[int, int],
    scale: int,
    batch: int = 1,
    *,
    n_feats: int = _MODEL.n_feats,
    match_memory_mib: float = _MODEL.match_memory_mib,
    search_window: int = _MODEL.search_window,
    precision: str = "fp32",
    base_gib: float = PROCESS_BASE_GIB,
) -> Estimate:
    """Peak memory and time of one FASR-Net forward pass over ``batch`` LR slices of ``lr_hw`` pixels.

    Args:
        lr_hw: (h, w) of the LR input (of a tile, when tiling).
        scale: in-plane factor; the SR output is (h * scale, w * scale).
        batch: slices per forward pass.
        n_feats: trunk width of the model (``model.n_feats``).
        match_memory_mib: correlation block budget (``model.match_memory_mib``).
        search_window: ``model.search_window`` (0 = global matching, quadratic in the pixels).
        precision: ``fp32`` or ``bf16`` (convolutions; matching is fp32 either way).
        base_gib: memory already in use by the process (default: a fresh process with the model loaded).
    """
    hr_px = lr_hw[0] * lr_hw[1] * scale * scale * batch
    work = hr_px * (_BYTES_PER_PX + _BYTES_PER_PX_PER_FEAT * n_feats) * _SAFETY
    peak = base_gib + (work + match_memory_mib * 2**20) / 2**30
    cells = lr_hw[0] * lr_hw[1] * scale * scale / 16  # 1/4-grid queries per slice
    keys = cells if not search_window else min(cells, (16 + 2 * search_window) ** 2)
    match_gflop = batch * cells * keys * 2 * (256 + 3 * 64) / 1e9
    conv_gflop = hr_px / 1e6 * _CONV_GFLOP_PER_MPX * (0.5 + 0.5 * n_feats / 64)
    return Estimate(peak, conv_gflop / _GFLOPS.get(precision, _GFLOPS["fp32"]) + match_gflop / _MATCH_GFLOPS)


def tile_margin(scale: int, search_window: int) -> int:
    """LR pixels of context around a tile: the trunk's receptive field plus the search window (4 HR px/cell)."""
    return math.ceil((_CONTEXT_HR + 4 * search_window) / scale)


def plan_tiles(
    lr_hw: tuple[int, int],
    scale: int,
    batch: int,
    max_memory_gib: float,
    *,
    n_feats: int = _MODEL.n_feats,
    match_memory_mib: float = _MODEL.match_memory_mib,
    search_window: int = _MODEL.search_window,
    precision: str = "fp32",
    base_gib: float = PROCESS_BASE_GIB,
) -> TilePlan:
    """Largest batch of whole slices that fits ``max_memory_gib``; else the largest square tile (batch 1).

    Tiles are ``tile`` LR pixels plus ``margin`` of context on each side (clipped at the image border), so the
    estimate is for a (tile + 2 margin)^2 input.

    Raises:
        FasrError: even one tile of the smallest size does not fit (one line: the budget it would need).
    """
    kw = dict(n_feats=n_feats, match_memory_mib=match_memory_mib, search_window=search_window,
              precision=precision, base_gib=base_gib)
    margin = tile_margin(scale, search_window)
    for b in range(max(1, batch), 0, -1):
        est = estimate(lr_hw, scale, b, **kw)
        if est.peak_gib <= max_memory_gib:
            return TilePlan(b, None, margin, 0, est)
    side = max(lr_hw)
    tile = side
    while tile > _MIN_TILE:
        tile = max(_MIN_TILE, tile * 3 // 4)
        t = min(side, tile + 2 * margin)
        est = estimate((min(lr_hw[0], t), min(lr_hw[1], t)), scale, 1, **kw)
        if est.peak_gib <= max_memory_gib:
            return TilePlan(1, tile, margin, min(tile // 4, margin), est)
    need = estimate((_MIN_TILE + 2 * margin,) * 2, scale, 1, **kw).peak_gib
    raise FasrError(
        f"--max-memory-gib {max_memory_gib:g} is too small: one {_MIN_TILE}x{_MIN_TILE} LR tile with its "
        f"{margin}-pixel margin needs about {need:.2f} GiB; "
        f"raise --max-memory-gib to at least {math.ceil(need * 10) / 10:g}"
    )


def current_rss_gib() -> float:
    """Resident memory of this process now (Linux /proc; else its peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def default_max_memory_gib(device_type: str = "cpu") -> float:
    """80 % of the memory this process can use now: available RAM plus its own RSS (CPU), or the GPU's free
    memory plus this process's CPU RSS (CUDA)."""
    if device_type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return 0.8 * free / 2**30 + current_rss_gib()
    try:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f}
        return 0.8 * info["MemAvailable"] / 2**20 + current_rss_gib()
    except (OSError, KeyError):
        return 0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
