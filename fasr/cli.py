"""``fasr`` command line: one subcommand per module, imported lazily so ``fasr --help`` is fast.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fasr import __version__
from fasr.errors import EXIT_INTERRUPTED, FasrError
from fasr.heap import reuse_freed_memory

__all__ = ["main", "COMMANDS", "EXAMPLES", "DESCRIPTION"]

DESCRIPTION = """\
Multi-contrast MRI super-resolution (FASR-Net): a low-resolution scan of one
contrast is reconstructed at high resolution with the help of a high-resolution
scan of another contrast of the same patient.

  fasr demo      a first run on a bundled example (no data needed)
  fasr infer     your scans: one pair, a BIDS dataset, or a folder of pairs
  fasr models    the shipped models"""

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("fasr.inference.demo", "x4 super-resolution of a simulated T2w from a T1 template: a first run"),
    "infer": ("fasr.inference.cli", "super-resolve a volume or slice with a high-resolution reference"),
    "models": ("fasr.inference.models_cli", "list the shipped models: contrasts, scale, training data, scores"),
    "train": ("fasr.training.cli", "train a model from a YAML config"),
    "eval": ("fasr.evaluation.cli", "score a checkpoint (PSNR/SSIM/NMSE) beside bicubic"),
    "figure": ("fasr.evaluation.figures", "residual-map figures and validation-PSNR curves"),
    "pretrain-extractor": ("fasr.training.pretrain", "train an MRI feature network (VGG19 or a Table II ResNet)"),
    "export": ("fasr.training.export", "reduce a training checkpoint to fp16 inference weights"),
    "prepare": ("fasr.data.prepare", "write a memory-mappable slice cache from a dataset"),
    "params": ("fasr.bench.params", "parameters and FLOPs per backbone (Table II)"),
    "bench": ("fasr.bench.cli", "speed and quality benchmarks"),
}


# name -> one example shown by `fasr NAME --help` (tests/test_cli_help.py parses each one).
EXAMPLES: dict[str, str] = {
    "demo": "fasr demo --out demo-out",
    "infer": "fasr infer --lr t2_lowres.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz",
    "models": "fasr models",
    "train": "fasr train --config configs/cpu-quick.yaml --out runs/quick",
    "eval": "fasr eval --checkpoint runs/quick/best.pt --config configs/cpu-quick.yaml --split val --json eval.json",
    "figure": "fasr figure curve runs/quick --out curve.png",
    "pretrain-extractor": "fasr pretrain-extractor --config configs/pretrain-extractor.yaml --out mri-vgg19.pth",
    "export": "fasr export runs/quick/best.pt model.pt",
    "prepare": "fasr prepare brats ../shared/data/brats cache/brats",
    "params": "fasr params --scale 4",
    "bench": "fasr bench speed --json speed.json",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fasr",
        description=DESCRIPTION,
        epilog="fasr COMMAND --help shows a command's options and an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fasr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:]
    for name, (module, help_) in COMMANDS.items():
        example = f"example:\n  {EXAMPLES[name]}" if name in EXAMPLES else None
        p = sub.add_parser(
            name, help=help_, description=help_, epilog=example, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        # Only the chosen command's module is imported (keeps `fasr --help` light).
        if name in argv[:1]:
            importlib.import_module(module).add_arguments(p)
            p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args()
    if not getattr(args, "_module", None):
        parser.print_help()
        return 0
    reuse_freed_memory()  # ours: no mmap + page faults per large tensor (fasr/heap.py)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except FasrError as exc:
        print(f"fasr: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("fasr: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
