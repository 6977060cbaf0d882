"""The options and defaults of ``fasr infer`` / ``fasr demo`` that their parsers need, without torch (``--help``
answers at once; the modules that use them import them from here)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["DEFAULT_BATCH_SIZE", "DEFAULT_MODEL", "PRECISIONS", "REGISTRATIONS", "add_dataset_arguments"]

DEFAULT_BATCH_SIZE = 4  # slices per forward pass of `fasr infer` / `fasr.super_resolve` (fewer if memory needs)
DEFAULT_MODEL = "brats-x4"
PRECISIONS = ("fp32", "bf16", "auto")
REGISTRATIONS = ("rigid", "none")


def add_dataset_arguments(parser: argparse.ArgumentParser, source: argparse._MutuallyExclusiveGroup) -> None:
    """The dataset options of ``fasr infer`` (the three sources join ``--lr``/``--simulate-from``'s group)."""
    source.add_argument("--bids", type=Path, metavar="DIR",
                        help="a BIDS dataset: every subject/session with both a --target and a --ref scan is "
                        "super-resolved into DIR/derivatives/fasr")
    source.add_argument("--lr-glob", metavar="GLOB", help="LR files, e.g. 'scans/*/t2.nii.gz' (with --ref-glob)")
    source.add_argument("--pairs", type=Path, metavar="CSV", help="CSV with columns lr, ref[, id]")
    parser.add_argument("--ref-glob", metavar="GLOB", help="reference files, same wildcards as --lr-glob")
    parser.add_argument("--target", metavar="SUFFIX", help="with --bids: the target's suffix, e.g. T2w")
    parser.add_argument(
        "--participant-label", nargs="+", metavar="LABEL", help="with --bids: only these subjects (01 or sub-01)"
    )
    parser.add_argument(
        "--shard", metavar="I/N", help="only subjects I, I+N, ... of the sorted list (1-based); auto: torchrun rank"
    )
