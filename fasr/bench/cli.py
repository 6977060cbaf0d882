"""``fasr bench speed|quality``: dispatches to :mod:`fasr.bench.speed` and :mod:`fasr.bench.quality`."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["add_arguments", "run"]

_SUITES = {
    "speed": ("fasr.bench.speed", "inference time, peak memory and FLOPs per image size"),
    "quality": ("fasr.bench.quality.cli", "train and score every method of a suite on the same data and budget"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, (module, help_) in _SUITES.items():
        p = sub.add_parser(name, help=help_, description=help_)
        if name in sys.argv[2:3]:  # only the chosen benchmark's module is imported
            importlib.import_module(module).add_arguments(p)
        p.set_defaults(_bench_module=module)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(args._bench_module).run(args)
