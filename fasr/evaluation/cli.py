"""``fasr eval``: PSNR/SSIM/NMSE of a checkpoint beside bicubic, per slice, per volume and overall.

Prints a Markdown table; ``--json``, ``--csv`` and ``--markdown`` write the full result (see
:mod:`fasr.scoring.volumes` for the JSON layout).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from fasr.options import add_set_argument

if TYPE_CHECKING:
    from fasr.config import RunConfig
from fasr.errors import FasrError

__all__ = ["add_arguments", "run", "add_data_arguments", "config_overrides", "data_config", "require_data_root"]


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that pick the data a checkpoint is scored on and its inference settings (shared with ``fasr figure``)."""
    parser.add_argument("--config", type=Path, help="run config whose data section to use (default: the checkpoint's)")
    parser.add_argument("--data", metavar="ROOT", help="dataset root (overrides data.root)")
    parser.add_argument("--split", default="val", choices=("train", "val", "test"), help="subjects (default: val)")
    add_set_argument(parser, "model.search_window=16 or data.val_subjects=[TCGA-DU-7294]")


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` values, with ``--data`` as ``data.root``."""
    return list(args.overrides) + ([f"data.root={args.data}"] if args.data else [])


def data_config(args: argparse.Namespace) -> RunConfig | None:
    """The ``--config`` file with :func:`config_overrides`, or None: the data then come from the checkpoint's own
    config, which :func:`fasr.checkpoint.load_model` returns with the same overrides."""
    from fasr.config import load_config  # torch-heavy: import after parsing

    return load_config(args.config, config_overrides(args)) if args.config is not None else None


def require_data_root(args: argparse.Namespace, checkpoint: Path) -> None:
    """Refuse, before the model is loaded, a dataset folder that does not exist, saying that ``--data`` sets it.

    Args:
        args: parsed options of :func:`add_data_arguments`.
        checkpoint: the checkpoint whose stored config gives the folder when neither ``--data`` nor ``--config`` does.
    """
    from fasr.checkpoint import load_checkpoint
    from fasr.config import apply_overrides

    cfg = data_config(args)
    if cfg is not None:
        root = cfg.data.root
    else:
        stored = apply_overrides(load_checkpoint(checkpoint)["config"], config_overrides(args))
        root = stored.get("data", {}).get("root")
    roots = root if isinstance(root, (list, tuple)) else [root]
    missing = [str(r) for r in roots if r is not None and not Path(r).is_dir()]
    if missing:
        source = "--data" if args.data else "data.root of --config" if args.config else "the checkpoint's data.root"
        raise FasrError(
            f"dataset folder '{missing[0]}' ({source}, relative to '{Path.cwd()}') not found; pass --data ROOT to "
            "set the dataset folder (e.g. --data ../shared/data/brats)"
        )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="best.pt/last.pt of a run, or a shipped model name")
    add_data_arguments(parser)
    parser.add_argument(
        "--convention",
        default="fastmri",
        choices=("fastmri", "paper"),
        help="fastmri: volume-max data range, SSIM 7x7 (default); paper: 8-bit, SSIM 11x11 Gaussian",
    )
    parser.add_argument(
        "--mask",
        type=float,
        nargs="?",
        const=0.05,
        default=None,
        metavar="FRACTION",
        help="score only the foreground: ground truth above FRACTION x volume max, holes filled (default 0.05)",
    )
    parser.add_argument("--max-slices", type=int, default=0, help="score at most this many evenly spaced slices")
    parser.add_argument("--batch-size", type=int, default=4, help="slices per forward pass")
    parser.add_argument("--json", type=Path, help="write the full result as JSON")
    parser.add_argument("--csv", type=Path, help="write per-volume and per-slice rows as CSV")
    parser.add_argument("--markdown", type=Path, help="write the summary table as Markdown")
    parser.add_argument("--force", action="store_true", help="overwrite existing output files")


def run(args: argparse.Namespace) -> int:
    from fasr.checkpoint import resolve_checkpoint_path
    from fasr.evaluation.evaluate import evaluate_checkpoint
    from fasr.evaluation.report import markdown_table, write_csv, write_json
    from fasr.provenance import provenance

    outputs = [p for p in (args.json, args.csv, args.markdown) if p is not None]
    clashing = [str(p) for p in outputs if p.exists()]
    if clashing and not args.force:
        raise FasrError(f"output file(s) {', '.join(clashing)} already exist; pass --force to overwrite them")
    checkpoint = resolve_checkpoint_path(args.checkpoint)
    require_data_root(args, checkpoint)
    made = provenance()  # the commit the evaluation starts from
    result = evaluate_checkpoint(
        checkpoint,
        data_config(args),
        overrides=config_overrides(args),
        split=args.split,
        convention=args.convention,
        max_slices=args.max_slices,
        batch_size=args.batch_size,
        mask_threshold=args.mask,
    )
    table = markdown_table(result)
    print(table, end="")
    if args.json:
        write_json({**made, **result}, args.json)
    if args.csv:
        write_csv(result, args.csv)
    if args.markdown:
        args.markdown.write_text(table)
    return 0
