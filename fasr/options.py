"""Command-line options shared by several commands, in a module that imports nothing heavy: a command's parser is
built from these without importing torch, so ``fasr COMMAND --help`` answers at once."""

from __future__ import annotations

import argparse

__all__ = ["add_set_argument"]


def add_set_argument(parser: argparse.ArgumentParser, example: str, dest: str = "overrides") -> None:
    """The repeatable ``--set KEY=VALUE`` option every command that reads a run config shares.

    Args:
        parser: the command's parser.
        example: an override shown in the help, e.g. ``schedule.epochs=20``.
        dest: attribute name on the parsed namespace.
    """
    parser.add_argument(
        "--set",
        dest=dest,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )
