"""``fasr export``: a training checkpoint reduced to what inference needs (weights, config, provenance).

Optimiser, scheduler and RNG states are dropped and floating-point weights stored in half precision by
default (``--fp32`` keeps them); :func:`fasr.checkpoint.load_model` casts them back to fp32. ``--set`` may
change the model settings that only affect how the model runs (``model.search_window``,
``model.match_memory_mib``): the exported file's default, e.g. the shipped models' search window.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from fasr.checkpoint import load_checkpoint, save_checkpoint, stored_config
from fasr.config import add_set_argument, to_dict
from fasr.errors import FasrError

__all__ = ["add_arguments", "run", "export_checkpoint", "KEPT_KEYS"]

KEPT_KEYS = ("model", "config", "fasr_version", "format", "epoch", "step", "metrics")


def export_checkpoint(src: str | Path, dst: str | Path, half: bool = True, overrides: list[str] | None = None) -> Path:
    """Write the inference part of checkpoint ``src`` to ``dst``.

    Args:
        src: a checkpoint written by ``fasr train`` (``best.pt`` / ``last.pt``).
        dst: output file.
        half: store floating-point weights as fp16.
        overrides: ``--set`` strings for the stored config; only inference settings of the model may change.
    """
    state = load_checkpoint(src)
    kept = {k: state[k] for k in KEPT_KEYS if k in state}
    if overrides:  # refuses a change of a learned setting
        kept["config"] = to_dict(stored_config(state, src, overrides))
    if half:
        kept["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    kept["exported_from"] = str(src)
    return save_checkpoint(dst, kept)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint written by fasr train")
    parser.add_argument("out", type=Path, help="exported file")
    parser.add_argument("--fp32", action="store_true", help="keep full-precision weights")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    add_set_argument(parser, "model.search_window=16")


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise FasrError(f"'{args.out}' exists; pass --force to replace it")
    path = export_checkpoint(args.checkpoint, args.out, half=not args.fp32, overrides=args.overrides)
    n = sum(v.numel() for v in torch.load(path, weights_only=True)["model"].values())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {n / 1e6:.2f} M parameters)")
    return 0
