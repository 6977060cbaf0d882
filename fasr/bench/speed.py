"""``fasr bench speed``: inference seconds per slice, peak memory, FLOPs and GFLOP/s per image size.

Each row runs in a fresh worker process so that its peak RSS is its own, and records the machine's load
average when it started (timings on a shared CPU are only comparable at similar load). Rows:

* one per size for the default model (``--set`` overrides), with the extractor / matching / fusion split;
* ``dense``: the same model with a correlation budget large enough for the whole matrix in one block -- what
  the authors' code does -- to show the memory the blocked matching saves;
* ``--models brats-x4,...``: the same per size for shipped or saved checkpoints;
* ``--volume 240x240x155``: a whole synthetic volume of that SR size through the slice loop of ``fasr infer``
  (batches, memory plan, tiling, precision), seconds and slices/s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fasr.config import add_set_argument, load_config
from fasr.errors import UsageError
from fasr.provenance import cpu_model, provenance

__all__ = ["add_arguments", "run", "measure"]

DENSE_MAX_SIZE = 320  # a full 1/4-grid correlation at 640x640 alone is 2.4 GiB per pyramid level


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="128,256,320,640", help="comma-separated square HR sizes")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1, help="slices per forward pass of the size rows")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"), default="auto",
                        help="convolutions in fp32 or bf16, default as fasr infer (auto: bf16 where the CPU or "
                             "GPU runs it natively); matching is fp32")
    parser.add_argument("--models", default="", help="comma-separated checkpoints or shipped models to time too")
    parser.add_argument("--volume", default="", metavar="XxYxZ",
                        help="also time a whole synthetic volume of this SR size (e.g. 240x240x155)")
    parser.add_argument("--volume-batch", type=int, default=None, metavar="N",
                        help="slices per forward pass of the --volume rows (default: fasr infer's --batch-size)")
    parser.add_argument("--max-memory-gib", type=float, help="memory budget of the slice loop (as fasr infer)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (median reported)")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense-matching reference rows")
    parser.add_argument("--no-train", action="store_true", help="skip the training-throughput measurement")
    parser.add_argument("--patch-size", type=int, default=96, help="HR patch for the training throughput")
    add_set_argument(parser, "model.search_window=16")
    parser.add_argument("--json", type=Path, help="write the results here")


def _model(scale: int, overrides: list[str], device: str, match_memory_mib: float | None = None,
           checkpoint: str | None = None):
    """(model, its model config): the default model for ``scale`` (random weights), or a checkpoint's; with
    ``match_memory_mib`` (the dense rows) that block budget and global search (a window never builds a matrix)."""
    from fasr.checkpoint import load_model
    from fasr.models import build_model

    whole = [] if match_memory_mib is None else [f"model.match_memory_mib={match_memory_mib}", "model.search_window=0"]
    if checkpoint is not None:
        model, cfg = load_model(checkpoint, map_location=device, overrides=[*overrides, *whole])
        return model, cfg.model
    cfg = load_config(None, [*overrides, *whole])
    cfg.model.scale = scale
    return build_model(cfg.model).to(device), cfg.model


def _load() -> float:
    """1-minute load average of the machine (shared CPUs: timings are comparable only at similar load)."""
    return round(os.getloadavg()[0], 2)


def cpu_record() -> dict:
    """The CPU a row was timed on, with whether it has native bf16 (what ``--precision auto`` picks)."""
    from fasr.inference.engine.slices import cpu_native_bf16

    return {"cpu_model": cpu_model(), "cpu_native_bf16": cpu_native_bf16()}


def _peak_mib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(
    size: int,
    scale: int,
    batch: int,
    device: str,
    repeats: int,
    dense: bool,
    precision: str = "fp32",
    overrides: list[str] | None = None,
    checkpoint: str | None = None,
) -> dict:
    """One row: time, peak memory and FLOPs of the model's forward pass at ``size`` x ``size``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from fasr.inference.engine.slices import precision_forward, resolve_precision

    load = _load()
    overrides = overrides or []
    # Dense: a block budget large enough to hold every correlation matrix whole.
    budget = 10**9 if dense else None
    model, model_cfg = _model(scale, overrides, device, match_memory_mib=budget, checkpoint=checkpoint)
    model.eval()
    scale = int(getattr(model, "scale", scale))
    precision = resolve_precision(precision, torch.device(device))
    forward = precision_forward(model, precision, torch.device(device))
    lr = torch.rand(batch, 1, size // scale, size // scale, device=device) * 2 - 1
    ref = torch.rand(batch, 1, size, size, device=device) * 2 - 1
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # Where the time goes: forward time of the extractor passes, the matching (S-A + M-A) and the fusion.
    parts = {"extractor": ("extractor",), "matching": ("align", "ma", "sa"), "fusion": ("fusion",)}
    spent = dict.fromkeys(parts, 0.0)

    def timed(module, part: str) -> None:
        forward = module.forward

        def wrapper(*a, **k):
            sync()
            t0 = time.perf_counter()
            out = forward(*a, **k)
            sync()
            spent[part] += time.perf_counter() - t0
            return out

        module.forward = wrapper

    for part, names in parts.items():
        for name in names:
            module = getattr(model, name, None)
            # A container of alignment modules (``align``) is timed module by module.
            for m in (module.values() if isinstance(module, torch.nn.ModuleDict) else [module] if module else []):
                timed(m, part)
    times, part_times = [], []
    with torch.inference_mode():
        forward(lr, ref)  # warm-up
        for _ in range(repeats):
            spent.update(dict.fromkeys(parts, 0.0))
            sync()
            t0 = time.perf_counter()
            forward(lr, ref)
            sync()
            times.append(time.perf_counter() - t0)
            part_times.append(dict(spent))
        peak = _peak_mib(device)
        counter = FlopCounterMode(display=False)
        with counter:
            forward(lr, ref)
    seconds = statistics.median(times) / batch
    gflops = counter.get_total_flops() / 1e9 / batch
    return {
        "model": checkpoint or "default",
        "size": size,
        "matching": "dense" if dense else "blocked",
        "search_window": getattr(model_cfg, "search_window", None),
        "precision": precision,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "load_avg_1min": load,
        "seconds_per_slice": round(seconds, 4),
        "slices_per_second": round(1.0 / seconds, 3),
        **{f"{part}_seconds_per_slice": round(statistics.median(t[part] for t in part_times) / batch, 4)
           for part in parts},
        "peak_mem_mib": round(peak, 1),
        "gflops": float(f"{gflops:.4g}"),  # significant digits: tiny test models have ~0.01 GFLOP
        "gflops_per_s": float(f"{gflops / seconds:.4g}"),
    }


def measure_volume(
    shape: tuple[int, int, int],
    scale: int,
    batch: int,
    device: str,
    precision: str = "fp32",
    overrides: list[str] | None = None,
    checkpoint: str | None = None,
    max_memory_gib: float | None = None,
    progress: bool = False,
) -> dict:
    """One row: a whole synthetic volume of SR size ``shape`` (X, Y, slices) through the slice loop of
    ``fasr infer`` (:func:`fasr.inference.engine.slices.super_resolve_slices`), model already loaded and warm;
    ``progress`` shows its slice (or tile) progress bar on stderr."""
    import numpy as np
    import torch

    from fasr.inference.engine.slices import RunSettings, super_resolve_slices

    load = _load()
    model, model_cfg = _model(scale, overrides or [], device, checkpoint=checkpoint)
    model.eval()
    scale = int(model_cfg.scale)
    h, w, n = shape[1] // scale, shape[0] // scale, shape[2]
    rng = np.random.default_rng(0)
    ref = np.tanh(rng.normal(0, 1, (n, h * scale, w * scale))).astype(np.float32)  # content in every slice
    lr = ref.reshape(n, h, scale, w, scale).mean((2, 4))
    settings = RunSettings.for_model(model_cfg, precision, max_memory_gib)
    dev = torch.device(device)
    # Warm-up (threads, allocator) on at most 64x64 LR pixels: a whole 1024x1024 LR slice would double the run.
    warm = min(h, w, 64)
    super_resolve_slices(model, lr[:1, :warm, :warm], ref[:1, : warm * scale, : warm * scale], scale, 1, dev,
                         False, settings)
    t0 = time.perf_counter()
    out = super_resolve_slices(model, lr, ref, scale, batch, dev, progress, settings)
    seconds = time.perf_counter() - t0
    return {
        "model": checkpoint or "default",
        "volume": "x".join(map(str, shape)),
        "precision": out.stats["precision"],
        "batch": out.stats["batch"],
        "tile": out.stats["tile"],
        "tiles_per_slice": out.stats["tiles_per_slice"],
        "heap": out.stats["heap"],
        "max_memory_gib": out.stats["max_memory_gib"],
        "estimated_peak_gib": out.stats["estimated_peak_gib"],
        "threads": torch.get_num_threads(),
        "load_avg_1min": load,
        "seconds": float(f"{seconds:.4g}"),  # significant digits: a tiny test volume takes ~0.05 s
        "slices_per_second": float(f"{n / seconds:.4g}"),
        "peak_mem_mib": round(_peak_mib(device), 1),
    }


def train_throughput(scale: int, patch: int, batch: int, device: str, steps: int, overrides: list[str]) -> dict:
    """Training samples per second (forward, L1 backward, Adam step) on random patches, from the median step
    (:func:`fasr.bench.timing.train_step_seconds`)."""
    import torch

    from fasr.bench.timing import train_step_seconds

    model = _model(scale, overrides, device)[0].train()
    l1 = torch.nn.functional.l1_loss
    per_step = train_step_seconds(model, l1, batch=batch, patch=patch, scale=scale, device=device, repeats=steps)
    return {"patch_size": patch, "batch": batch, "samples_per_second": round(batch / per_step, 2)}


def _worker(spec: dict) -> dict:
    if spec["kind"] == "train":
        return train_throughput(**spec["args"])
    if spec["kind"] == "volume":
        return measure_volume(**spec["args"])
    return measure(**spec["args"])


def _spawn(spec: dict) -> dict:
    """Run one measurement in a fresh interpreter (its own peak RSS); returns its JSON row. A worker asked for
    progress (``spec["args"]["progress"]``) writes to this process's stderr instead of a captured pipe."""
    shown = bool(spec["args"].get("progress"))
    proc = subprocess.run(
        [sys.executable, "-m", "fasr.bench.speed", json.dumps(spec)], stdout=subprocess.PIPE,
        stderr=None if shown else subprocess.PIPE, text=True,
    )
    if proc.returncode != 0:
        tail = "see its messages above" if shown else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec["args"], "error": f"worker exited with code {proc.returncode}: {tail}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _emit(rows: list[dict], spec: dict) -> None:
    row = _spawn(spec)
    rows.append(row)
    print(json.dumps(row), flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from fasr.inference.engine.memory import DEFAULT_BATCH_SIZE

    made = provenance()  # the commit the run starts from
    sizes = [int(s) for s in str(args.sizes).split(",") if s]
    models = [m for m in str(args.models).split(",") if m]
    volume = tuple(int(v) for v in str(args.volume).lower().split("x")) if args.volume else None
    if volume is not None and len(volume) != 3:
        raise UsageError(f"--volume '{args.volume}': give the SR size as XxYxZ, e.g. 240x240x155")
    load_config(None, args.overrides)  # a bad --set fails here, not in every worker
    volume_batch = DEFAULT_BATCH_SIZE if args.volume_batch is None else args.volume_batch
    if min(args.batch, volume_batch) < 1:
        raise UsageError(f"--batch / --volume-batch must be >= 1, got {args.batch} / {volume_batch}")
    common = dict(scale=args.scale, batch=args.batch, device=args.device, precision=args.precision,
                  overrides=args.overrides)
    rows: list[dict] = []
    for checkpoint in [None, *models]:
        for size in sizes:
            for dense in (False, True):
                if dense and (args.no_dense or size > DENSE_MAX_SIZE or checkpoint is not None):
                    continue
                _emit(rows, {"kind": "infer", "args": dict(size=size, repeats=args.repeats, dense=dense,
                                                           checkpoint=checkpoint, **common)})
        if volume is not None:
            _emit(rows, {"kind": "volume", "args": dict(shape=volume, checkpoint=checkpoint, progress=True,
                                                        max_memory_gib=args.max_memory_gib,
                                                        **dict(common, batch=volume_batch))})
    result = {
        **made,
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        **cpu_record(),
        "torch": torch.__version__,
        "scale": args.scale,
        "overrides": args.overrides,
        "rows": rows,
    }
    if not args.no_train:
        train = dict(scale=args.scale, patch=args.patch_size, batch=4, device=args.device, steps=3,
                     overrides=args.overrides)
        result["train"] = _spawn({"kind": "train", "args": train})
        print(json.dumps(result["train"]), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":  # worker entry point used by _spawn
    from fasr.heap import reuse_freed_memory

    reused = reuse_freed_memory()  # as every fasr command does (fasr/heap.py)
    print(json.dumps({**_worker(json.loads(sys.argv[1])), "heap_reuse": reused}))
