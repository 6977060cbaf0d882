"""What a suite reports: rows as mean and standard deviation over runs, provenance, Markdown and figures."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fasr.bench.quality.runs import RunResult

__all__ = [
    "RowSummary",
    "summarize",
    "markdown",
    "score_figure",
    "residual_figure",
    "curve_figure",
]


@dataclass
class RowSummary:
    """A results-table row: scores as mean and sample standard deviation over the row's runs.

    ``gain_mean`` is the mean PSNR gain over bicubic on the same slices (dB).
    """

    label: str
    psnr_mean: float
    psnr_std: float
    ssim_mean: float
    ssim_std: float
    gain_mean: float
    params: int
    steps: int
    wall_s: float
    runs: int


def summarize(results: list[RunResult]) -> list[RowSummary]:
    """One row per label (in first-seen order): mean and sample standard deviation over its runs."""
    rows = []
    for label in dict.fromkeys(r.label for r in results):
        runs = [r for r in results if r.label == label]
        psnr, ssim = [r.psnr for r in runs], [r.ssim for r in runs]
        rows.append(
            RowSummary(
                label=label,
                psnr_mean=statistics.fmean(psnr),
                psnr_std=statistics.stdev(psnr) if len(runs) > 1 else 0.0,
                ssim_mean=statistics.fmean(ssim),
                ssim_std=statistics.stdev(ssim) if len(runs) > 1 else 0.0,
                gain_mean=statistics.fmean(r.psnr - r.bicubic_psnr for r in runs),
                params=runs[0].params,
                steps=runs[0].steps,
                wall_s=statistics.fmean(r.wall_s for r in runs),
                runs=len(runs),
            )
        )
    return rows


def markdown(rows: list[RowSummary], meta: dict[str, Any]) -> str:
    """The ``<suite>.md`` table with its provenance lines."""
    lines = [
        f"# Quality benchmark: `{meta['suite']}`",
        "",
        f"{meta['task']}. Scores of the final weights on the held-out subject ({meta['eval']}), mean ± sample "
        f"standard deviation over {meta['runs_per_row']} run(s) per row (seeds x held-out subjects).",
        "",
        "| row | PSNR (dB) | SSIM | PSNR - bicubic (dB) | params | steps | wall time / run (min) | runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.label} | {r.psnr_mean:.2f} ± {r.psnr_std:.2f} | {r.ssim_mean:.4f} ± {r.ssim_std:.4f} | "
        f"{r.gain_mean:+.2f} | {r.params:,} | {r.steps} | {r.wall_s / 60:.1f} | {r.runs} |"
        for r in rows
    ]
    lines += [
        "",
        f"- command: `{meta['command']}`",
        f"- git commit: `{meta['commit']}`",
        f"- machine: {', '.join(f'{k} {v}' for k, v in meta['machine'].items())}",
        f"- date (UTC): {meta['date']}",
        f"- data: `{meta['data']}`; base config: `{meta['base']}`, plus `{json.dumps(meta['deltas'])}`"
        + (f" and `--set {' '.join(meta['overrides'])}`" if meta["overrides"] else ""),
        f"- held-out subject(s): {', '.join(meta['held_out'])}; seeds: {meta['seeds']}",
        f"- step budget: {meta['budget']}",
        "",
    ]
    return "\n".join(lines)


def score_figure(rows: list[RowSummary], title: str, path: Path) -> Path:
    """Bars of PSNR and SSIM per row with standard-deviation error bars."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.1 * len(rows) + 2), 3.4), constrained_layout=True)
    for ax, metric, unit in zip(fig.subplots(1, 2), ("psnr", "ssim"), ("PSNR (dB)", "SSIM")):
        means = [getattr(r, f"{metric}_mean") for r in rows]
        stds = [getattr(r, f"{metric}_std") for r in rows]
        ax.bar([r.label for r in rows], means, yerr=stds, capsize=3, color="tab:blue")
        low, high = min(m - s for m, s in zip(means, stds)), max(m + s for m, s in zip(means, stds))
        pad = 0.15 * (high - low) or 0.05 * abs(high) or 1e-3
        ax.set_ylim(low - pad, high + pad)  # the differences matter, not the distance from zero
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", rotation=45)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=120)
    return path


def residual_figure(runs: dict[str, RunResult], path: Path) -> Path:
    """Fig. 8-style outputs and residual maps of every row's first run on the middle held-out slice (on CPU)."""
    import torch

    from fasr.checkpoint import load_model
    from fasr.data.datasets import build_dataset
    from fasr.evaluation.figures import residual_figure as draw
    from fasr.scoring.volumes import BICUBIC, predict_volumes

    cpu = torch.device("cpu")
    loaded = {label: load_model(Path(r.run_dir) / "last.pt", map_location=cpu) for label, r in runs.items()}
    models = {label: model for label, (model, _) in loaded.items()}
    cfg = next(iter(loaded.values()))[1]  # every run of the suite shares the data section and scale
    dataset = build_dataset(cfg.data, "val", scale=cfg.model.scale, train=False)
    volumes = predict_volumes(models, dataset, [len(dataset) // 2], batch_size=1, device=cpu)
    methods = list(dict.fromkeys([BICUBIC, *models]))  # bicubic first, also where it is not a row
    return draw([(volume, 0) for volume in volumes.values()], methods, path)


def curve_figure(runs: dict[str, RunResult], path: Path) -> Path | None:
    """Fig. 11-style validation PSNR during training of every trained row's first run (None if none trained)."""
    from fasr.checkpoint import METRICS_FILE
    from fasr.evaluation.figures import curve_figure as draw

    trained = {label: Path(r.run_dir) for label, r in runs.items() if (Path(r.run_dir) / METRICS_FILE).is_file()}
    return draw(trained, path) if trained else None
