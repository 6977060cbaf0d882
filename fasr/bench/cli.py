"""``fasr bench speed|reference|quality|registration|thick|qa``: dispatches to the module of each benchmark."""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["add_arguments", "run"]

_SUITES = {
    "speed": ("fasr.bench.speed", "inference time, peak memory and FLOPs per image size"),
    "reference": ("fasr.bench.reference", "does the reference count: wrong/shuffled/noise/oracle references, "
                  "matching accuracy, confidence AUC, misregistration curve"),
    "quality": ("fasr.bench.quality.cli", "train and score every method of a suite on the same data and budget"),
    "registration": ("fasr.bench.registration", "accuracy of the rigid registration of the reference under known "
                     "motions"),
    "thick": ("fasr.bench.thick", "through-plane super-resolution of 3/4/6 mm slices: cubic, no reference, true and "
              "another subject's reference, --adapt"),
    "qa": ("fasr.bench.qa", "calibrate the reference QA: true pairs vs other patients and 5/10 mm shifts"),
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
