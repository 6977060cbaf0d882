"""``fasr`` command line: one subcommand per module, imported lazily so ``fasr --help`` is fast.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fasr import __version__
from fasr.errors import FasrError

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("fasr.inference.demo", "run the bundled demo: x4 T2 from T1 on a bundled subject"),
    "infer": ("fasr.inference.cli", "super-resolve a volume or slice with a high-resolution reference"),
    "train": ("fasr.training.cli", "train a model from a YAML config"),
    "eval": ("fasr.evaluation.cli", "score a checkpoint (PSNR/SSIM/NMSE) beside bicubic"),
    "figure": ("fasr.evaluation.figures", "residual-map figures and validation-PSNR curves"),
    "export": ("fasr.training.export", "reduce a training checkpoint to fp16 inference weights"),
    "prepare": ("fasr.data.prepare", "write a memory-mappable slice cache from a dataset"),
    "params": ("fasr.bench.params", "parameters and FLOPs per backbone (Table II)"),
    "bench": ("fasr.bench.cli", "speed and quality benchmarks"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fasr", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fasr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    argv = sys.argv[1:]
    for name, (module, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_)
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
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except FasrError as exc:
        print(f"fasr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fasr: interrupted", file=sys.stderr)
        return 130
