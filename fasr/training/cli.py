"""``fasr train``: train from a YAML config (``torchrun --nproc_per_node=N -m fasr train ...`` for DDP)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fasr.errors import FasrError
from fasr.options import add_set_argument

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="YAML run config (see configs/); with --resume it defaults to <out>/config.yaml"
    )
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out from last.pt")
    parser.add_argument("--force", action="store_true", help="overwrite a run already in --out")
    add_set_argument(parser, "schedule.epochs=20")
    parser.add_argument(
        "--perceptual-weights",
        type=Path,
        metavar="FILE",
        help="torchvision-format VGG19 checkpoint for the fixed perceptual network (default: the shipped MRI VGG19, "
        "loss.perceptual_weights=mri)",
    )
    parser.add_argument(
        "--backbone-weights",
        type=Path,
        metavar="FILE",
        help="torchvision-format checkpoint of model.backbone to start the texture extractor from (e.g. ImageNet "
        "vgg19-dcbb9e9d.pth or a fasr pretrain-extractor output; default: the shipped MRI extractor of that backbone)",
    )


def run(args: argparse.Namespace) -> int:
    from fasr.config import load_config  # torch-heavy: import after parsing
    from fasr.training.trainer import TrainingInterrupted, train

    if args.config is None and not (args.resume and args.out):
        raise FasrError("fasr train needs --config FILE (or --out DIR --resume to continue a run)")
    out = args.out or Path("runs") / args.config.stem
    overrides = list(args.overrides)
    if args.perceptual_weights is not None:
        overrides.append(f"loss.perceptual_weights={args.perceptual_weights}")
    if args.backbone_weights is not None:
        overrides.append(f"model.backbone_weights={args.backbone_weights}")
    cfg = load_config(args.config or out / "config.yaml", overrides)
    try:
        best = train(cfg, out, resume=args.resume, force=args.force)
    except TrainingInterrupted as exc:
        print(f"fasr train: {exc}", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one line, from rank 0
        print(best)
    return 0
