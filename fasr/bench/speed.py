"""``fasr bench speed``: inference seconds per slice, peak memory, FLOPs and GFLOP/s per image size.

Each (size, matching) row runs in a fresh worker process so that its peak RSS is its own. The ``dense`` rows
run the same model with a correlation budget large enough for the whole matrix in one block -- what the
authors' code does -- to show the memory the blocked matching saves.
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

__all__ = ["add_arguments", "run", "measure"]

DENSE_MAX_SIZE = 320  # a full 1/4-grid correlation at 640x640 alone is 2.4 GiB per pyramid level


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="128,256,320,640", help="comma-separated square HR sizes")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per size (median reported)")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense-matching reference rows")
    parser.add_argument("--no-train", action="store_true", help="skip the training-throughput measurement")
    parser.add_argument("--patch-size", type=int, default=96, help="HR patch for the training throughput")
    add_set_argument(parser, "model.search_window=16")
    parser.add_argument("--json", type=Path, help="write the results here")


def _model(scale: int, overrides: list[str], device: str, match_memory_mib: float | None = None):
    from fasr.config import load_config
    from fasr.models import build_model

    cfg = load_config(None, overrides)
    cfg.model.scale = scale
    if match_memory_mib is not None:
        cfg.model.match_memory_mib = match_memory_mib
    return build_model(cfg.model).to(device)


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
    bf16: bool = False,
    overrides: list[str] | None = None,
) -> dict:
    """One row: time, peak memory and FLOPs of the model's forward pass at ``size`` x ``size``."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    overrides = overrides or []
    # Dense: a block budget large enough to hold every correlation matrix whole.
    model = _model(scale, overrides, device, match_memory_mib=1e9 if dense else None).eval()
    lr = torch.rand(batch, 1, size // scale, size // scale, device=device) * 2 - 1
    ref = torch.rand(batch, 1, size, size, device=device) * 2 - 1
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    # Where the time goes: forward time of the extractor passes, the matching (S-A + M-A) and the fusion.
    parts = {"extractor": ("extractor",), "matching": ("ma", "sa"), "fusion": ("fusion",)}
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
            if getattr(model, name, None) is not None:
                timed(getattr(model, name), part)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16)
    times, part_times = [], []
    with torch.inference_mode(), autocast:
        model(lr, ref)  # warm-up
        for _ in range(repeats):
            spent.update(dict.fromkeys(parts, 0.0))
            sync()
            t0 = time.perf_counter()
            model(lr, ref)
            sync()
            times.append(time.perf_counter() - t0)
            part_times.append(dict(spent))
        peak = _peak_mib(device)
        counter = FlopCounterMode(display=False)
        with counter:
            model(lr, ref)
    seconds = statistics.median(times) / batch
    gflops = counter.get_total_flops() / 1e9 / batch
    return {
        "size": size,
        "matching": "dense" if dense else "blocked",
        "batch": batch,
        "seconds_per_slice": round(seconds, 4),
        "slices_per_second": round(1.0 / seconds, 3),
        **{f"{part}_seconds_per_slice": round(statistics.median(t[part] for t in part_times) / batch, 4)
           for part in parts},
        "peak_mem_mib": round(peak, 1),
        "gflops": round(gflops, 2),
        "gflops_per_s": round(gflops / seconds, 1),
    }


def train_throughput(scale: int, patch: int, batch: int, device: str, steps: int, overrides: list[str]) -> dict:
    """Training samples per second (forward, L1 backward, Adam step) on random patches, from the median step
    (:func:`fasr.bench.timing.train_step_seconds`)."""
    import torch

    from fasr.bench.timing import train_step_seconds

    model = _model(scale, overrides, device).train()
    l1 = torch.nn.functional.l1_loss
    per_step = train_step_seconds(model, l1, batch=batch, patch=patch, scale=scale, device=device, repeats=steps)
    return {"patch_size": patch, "batch": batch, "samples_per_second": round(batch / per_step, 2)}


def _worker(spec: dict) -> dict:
    if spec["kind"] == "train":
        return train_throughput(**spec["args"])
    return measure(**spec["args"])


def _spawn(spec: dict) -> dict:
    """Run one measurement in a fresh interpreter (its own peak RSS); returns its JSON row."""
    proc = subprocess.run(
        [sys.executable, "-m", "fasr.bench.speed", json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {**spec["args"], "error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    import torch

    sizes = [int(s) for s in str(args.sizes).split(",") if s]
    load_config(None, args.overrides)  # a bad --set fails here, not in every worker
    rows = []
    for size in sizes:
        for dense in (False, True):
            if dense and (args.no_dense or size > DENSE_MAX_SIZE):
                continue
            spec = {"kind": "infer", "args": dict(size=size, scale=args.scale, batch=args.batch, device=args.device,
                                                   repeats=args.repeats, dense=dense, bf16=args.bf16,
                                                   overrides=args.overrides)}
            row = _spawn(spec)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
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
    print(json.dumps(_worker(json.loads(sys.argv[1]))))
