"""``fasr figure``: residual-map comparisons like the paper's Fig. 8-10 and validation-PSNR curves like Fig. 11.

* ``fasr figure residuals --checkpoint A [--checkpoint B ...] --out fig.png``: for each chosen slice a row
  LR | Ref | bicubic | each model | HR, and under each method its absolute residual ``|SR - HR|`` (one colour
  scale shared by the whole figure).
* ``fasr figure curve RUN [RUN ...] --out curve.png``: validation PSNR over training epochs of one or more run
  folders (their ``metrics.jsonl``), bicubic as a dashed line, the end of the L1 warm-up dotted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fasr.errors import FasrError, UsageError
from fasr.evaluation.cli import add_data_arguments, config_overrides, data_config
from fasr.scoring.volumes import BICUBIC, VolumePrediction

__all__ = ["residual_figure", "curve_figure", "add_arguments", "run"]

_PANEL_INCHES = 2.0


def residual_figure(rows: list[tuple[VolumePrediction, int]], methods: list[str], path: str | Path) -> Path:
    """Save a Fig. 8-10 style comparison as PNG.

    Args:
        rows: (volume, position of the slice within ``volume.slices``) per figure row pair.
        methods: outputs to show, in order (e.g. ``["bicubic", "fasr"]``).
        path: PNG file to write.
    """
    columns = ["LR", "Ref", *methods, "HR"]
    residuals = [np.abs(v.outputs[m][i] - v.hr[i]) for v, i in rows for m in methods]
    vmax = float(max(np.percentile(r, 99.9) for r in residuals)) or 1.0  # shared scale, robust to single outliers
    fig = Figure(figsize=(_PANEL_INCHES * len(columns), _PANEL_INCHES * 2 * len(rows)), constrained_layout=True)
    axes = fig.subplots(2 * len(rows), len(columns), squeeze=False)
    for r, (v, i) in enumerate(rows):
        images = {"LR": v.lr[i], "Ref": v.ref[i], "HR": v.hr[i], **{m: v.outputs[m][i] for m in methods}}
        for c, name in enumerate(columns):
            top, bottom = axes[2 * r, c], axes[2 * r + 1, c]
            top.imshow(images[name], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            top.set_title(name if r == 0 else "", fontsize=9)
            if name in methods:
                residual = bottom.imshow(np.abs(images[name] - v.hr[i]), cmap="inferno", vmin=0, vmax=vmax)
            for ax in (top, bottom):
                ax.set_xticks([])
                ax.set_yticks([])
            if name not in methods:
                bottom.axis("off")
        axes[2 * r, 0].set_ylabel(f"{v.subject} #{int(v.slices[i])}", fontsize=8)
    fig.colorbar(residual, ax=axes[1::2, :].ravel().tolist(), shrink=0.8, label="|SR - HR| (on [-1, 1])")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def curve_figure(runs: dict[str, Path], path: str | Path, metric: str = "psnr") -> Path:
    """Save a Fig. 11 style curve: validation ``metric`` per epoch for each run folder.

    Args:
        runs: legend label -> run folder (holding ``metrics.jsonl``).
        path: PNG file to write.
        metric: ``psnr``, ``ssim`` or ``nmse``.
    """
    from fasr.checkpoint import read_history
    from fasr.config import load_config

    fig = Figure(figsize=(6, 4), constrained_layout=True)
    ax = fig.subplots()
    warmups = set()
    for label, run_dir in runs.items():
        history = read_history(run_dir)
        if not history:
            raise FasrError(f"'{run_dir}' has no validation history (metrics.jsonl); pass a `fasr train` run folder")
        line = ax.plot([h["epoch"] for h in history], [h[metric] for h in history], marker=".", label=label)[0]
        if f"{BICUBIC}_{metric}" in history[0]:
            ax.axhline(history[0][f"{BICUBIC}_{metric}"], color=line.get_color(), linestyle="--", linewidth=0.8)
        if (run_dir / "config.yaml").is_file():
            warmups.add(load_config(run_dir / "config.yaml").loss.warmup_epochs)
    for epoch in sorted(w for w in warmups if w > 0):
        ax.axvline(epoch, color="red", linestyle=":", linewidth=1)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {metric.upper()}" + (" (dB)" if metric == "psnr" else ""))
    ax.set_title("dashed: bicubic; dotted: end of L1 warm-up", fontsize=8)
    ax.legend()
    ax.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="figure", metavar="KIND", required=True)
    res = sub.add_parser("residuals", help="LR | Ref | methods | HR with residual maps (Fig. 8-10)")
    res.add_argument("--checkpoint", action="append", required=True, help="a model to show (repeatable)")
    add_data_arguments(res)
    res.add_argument("--subject", help="volume to show (default: the first of the split)")
    res.add_argument("--slices", help="comma-separated slice numbers of that volume (default: its middle slice)")
    curve = sub.add_parser("curve", help="validation PSNR over training of run folders (Fig. 11)")
    curve.add_argument("runs", nargs="+", type=Path, help="run folders written by `fasr train`")
    curve.add_argument("--labels", help="comma-separated legend labels (default: folder names)")
    curve.add_argument("--metric", default="psnr", choices=("psnr", "ssim", "nmse"))
    for p in (res, curve):
        p.add_argument("--out", type=Path, required=True, help="PNG file to write")
        p.add_argument("--force", action="store_true", help="overwrite an existing --out file")


def _pick_indices(dataset, subject: str | None, slices: list[int] | None) -> list[int]:
    """Dataset positions of the requested slices (the middle slice of the volume when none are given)."""
    found: dict[tuple[str, int], int] = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        subject = subject or sample.subject
        if sample.subject == subject:
            found[(subject, int(sample.slice_index))] = i
    if not found:
        raise FasrError(f"subject '{subject}' is not in this split; pick one with --subject or --split")
    numbers = sorted(z for _, z in found)
    wanted = slices or [numbers[len(numbers) // 2]]
    missing = [z for z in wanted if (subject, z) not in found]
    if missing:
        raise FasrError(f"slices {missing} of '{subject}' are not evaluated (no content); choose from {numbers}")
    return [found[(subject, z)] for z in wanted]


def _residuals(args: argparse.Namespace) -> Path:
    import torch

    from fasr.checkpoint import load_model, resolve_checkpoint_path, resolve_device
    from fasr.data.datasets import build_dataset
    from fasr.scoring.volumes import predict_volumes

    device = resolve_device()
    paths = [resolve_checkpoint_path(c) for c in args.checkpoint]
    loaded = [load_model(p, map_location=device, overrides=config_overrides(args)) for p in paths]
    scales = {cfg.model.scale for _, cfg in loaded}
    if len(scales) > 1:
        raise FasrError(f"the checkpoints have different scales {sorted(scales)}; compare models of one scale")
    models: dict[str, torch.nn.Module] = {}
    for path, (model, cfg) in zip(paths, loaded):
        name = cfg.model.name if cfg.model.name not in models else f"{cfg.model.name} ({path.parent.name})"
        models[name] = model
    cfg = data_config(args) or loaded[0][1]
    dataset = build_dataset(cfg.data, args.split, scale=scales.pop(), train=False)
    slices = [int(z) for z in args.slices.split(",")] if args.slices else None
    indices = _pick_indices(dataset, args.subject, slices)
    volumes = predict_volumes(models, dataset, indices, batch_size=len(indices), device=device)
    rows = [(v, i) for v in volumes.values() for i in range(len(v.slices))]
    return residual_figure(rows, [BICUBIC, *models], args.out)


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.force:
        raise FasrError(f"'{args.out}' already exists; pass --force to overwrite it")
    if args.figure == "residuals":
        path = _residuals(args)
    else:
        labels = args.labels.split(",") if args.labels else [p.name for p in args.runs]
        if len(labels) != len(args.runs):
            raise UsageError(f"--labels has {len(labels)} names for {len(args.runs)} runs; give one per run")
        path = curve_figure(dict(zip(labels, args.runs)), args.out, args.metric)
    print(path)
    return 0
