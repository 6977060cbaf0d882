"""``fasr demo``: x4 super-resolution of a simulated T2-weighted image from a T1-weighted reference.

Input (:mod:`fasr.inference.demo_subject`): 12 axial slices of the ICBM152 2009a template that the ``nilearn``
package ships; the T1 is the template's, the T2-weighted ground truth is simulated from its tissue maps, and the
low-resolution input is made from it with the checkpoint's training degradation. Writes into ``--out``:
``sr.nii.gz`` (+ ``sr.json`` provenance), ``confidence.nii.gz``, ``figure.png`` (the central slice: LR,
reference, bicubic, FASR, ground truth and the confidence map, residuals under bicubic and FASR on one colour
scale, PSNR/SSIM in the titles) and ``metrics.json`` (``{"bicubic": {"psnr", "ssim"}, "fasr": {"psnr", "ssim"},
"seconds"}``), and prints the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fasr.inference.options import DEFAULT_MODEL
from fasr.options import add_set_argument

if TYPE_CHECKING:
    from fasr.inference.api import SRResult

__all__ = ["DEMO_SUBJECT", "OUTPUTS", "add_arguments", "run", "demo_figure"]

DEMO_SUBJECT = "ICBM152 2009a template (nilearn), T2-weighted image simulated from its tissue maps"
OUTPUTS = ("sr.nii.gz", "sr.json", "confidence.nii.gz", "figure.png", "metrics.json")
BICUBIC = "bicubic"
FASR = "fasr"  # key of the model's scores in metrics.json
BATCH_SIZE = 4  # slices per forward pass
_PANEL_INCHES = 2.2
_OPPOSITE = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    parser.add_argument("--force", action="store_true", help="overwrite earlier demo outputs in --out")
    parser.add_argument(
        "--checkpoint",
        default=DEFAULT_MODEL,
        help=f"checkpoint .pt file or shipped model name (default {DEFAULT_MODEL}; list: fasr models)",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_argument(parser, "model.search_window=16")


def demo_figure(result: SRResult, path: Path) -> Path:
    """The central slice in display orientation: LR | Ref | bicubic | FASR | HR | confidence, and under bicubic
    and FASR their residual ``|SR - HR|`` on one colour scale; PSNR/SSIM of the volume in the titles.

    Images are on the [-1, 1] scale of the LR's normalisation (the reference on its own), clipped for display.

    Args:
        result: a simulated super-resolution (ground truth, bicubic and confidence present).
        path: PNG file to write.
    """
    from matplotlib.figure import Figure

    from fasr.data.orient import display_codes
    from fasr.inference.engine.stacks import Slicer

    prediction = result.prediction
    inference, simulation, scores = prediction.result, prediction.simulation, prediction.scores
    if simulation is None or prediction.bicubic is None or scores is None or inference.confidence is None:
        raise ValueError("the demo figure needs a simulated prediction with a confidence map")
    stats = inference.target_stats
    slicer = Slicer.for_grid(inference.grid.affine, inference.grid.slice_axis)  # also fits the LR grid
    middle = simulation.hr.data.shape[inference.grid.slice_axis] // 2

    def shown(volume: np.ndarray, normalise=stats.normalize) -> np.ndarray:
        return slicer.to_stack(normalise(volume))[middle]  # (H, W)

    hr = shown(simulation.hr.data)
    images = {
        "LR (x4 input)": shown(prediction.lr.data),
        "Ref (T1w)": shown(inference.reference, inference.ref_stats.normalize),
        BICUBIC: shown(prediction.bicubic),
        FASR: shown(inference.sr),
        "HR (simulated T2w)": hr,
    }
    methods = {BICUBIC: scores[BICUBIC], FASR: scores[result.model.config.model.name]}
    residuals = {name: np.abs(images[name] - hr) for name in methods}
    vmax = float(max(np.percentile(r, 99.9) for r in residuals.values())) or 1.0  # robust to single outliers

    columns = len(images) + 1
    fig = Figure(figsize=(_PANEL_INCHES * columns, _PANEL_INCHES * 2 + 0.4), constrained_layout=True)
    axes = fig.subplots(2, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    col_to, row_to, _ = display_codes(inference.grid.affine)  # where columns / rows run, e.g. ("L", "P", "S")
    for c, (name, image) in enumerate(images.items()):
        gray = axes[0, c].imshow(image, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        for x, y, text in ((0.05, 0.5, _OPPOSITE[col_to]), (0.95, 0.5, col_to), (0.5, 0.94, _OPPOSITE[row_to]),
                           (0.5, 0.06, row_to)):  # patient orientation at the image edges (radiological display)
            axes[0, c].text(x, y, text, transform=axes[0, c].transAxes, ha="center", va="center", fontsize=8,
                            color="yellow", fontweight="bold")
        title = name
        if name in methods:
            title = f"{name}\n{methods[name]['psnr']:.2f} dB / SSIM {methods[name]['ssim']:.3f}"
            residual = axes[1, c].imshow(residuals[name], cmap="inferno", vmin=0, vmax=vmax)
            axes[1, c].set_title(f"|{name} - HR|", fontsize=9)
        axes[0, c].set_title(title, fontsize=9)
    confidence = axes[0, -1].imshow(slicer.to_stack(inference.confidence)[middle], cmap="viridis", vmin=0, vmax=1)
    axes[0, -1].set_title(f"confidence\nmean {result.mean_confidence:.2f}", fontsize=9)
    fig.colorbar(confidence, ax=axes[0, -1], shrink=0.8)
    fig.colorbar(residual, ax=axes[1, -1], shrink=0.8, label="|SR - HR| (on [-1, 1])")
    fig.colorbar(gray, ax=axes[1, 0], orientation="horizontal", shrink=0.9,
                 label="intensity (-1: background)")
    fig.suptitle(f"fasr demo: {DEMO_SUBJECT}; x{inference.grid.scale}, {result.model.label}", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: building the parser (``--help``) must not import torch.
    from fasr.inference.api import super_resolve
    from fasr.inference.demo_subject import demo_pair
    from fasr.inference.output import check_outputs, write_json
    from fasr.inference.predict import metrics_table

    start = time.perf_counter()
    outputs = {name: args.out / name for name in OUTPUTS}
    check_outputs(outputs.values(), [], args.force)
    target, reference = demo_pair()
    result = super_resolve(
        target,
        reference,
        args.checkpoint,
        device=args.device,
        overrides=args.overrides,
        batch_size=BATCH_SIZE,
        progress=not args.no_progress,
        simulate=True,
    )
    result.save(
        outputs["sr.nii.gz"], outputs["confidence.nii.gz"], force=args.force, extra={"demo_subject": DEMO_SUBJECT}
    )
    demo_figure(result, outputs["figure.png"])
    scores = result.prediction.scores
    assert scores is not None  # simulated predictions are scored
    metrics = {
        BICUBIC: scores[BICUBIC],
        FASR: scores[result.model.config.model.name],
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(outputs["metrics.json"], metrics)
    grid = result.prediction.result.grid
    print(
        f"{DEMO_SUBJECT}: x{grid.scale} LR {result.prediction.lr.data.shape} -> {grid.shape} with {result.model.label} "
        "(the ground truth is simulated; see fasr/inference/demo_subject.py)"
    )
    print(metrics_table({BICUBIC: metrics[BICUBIC], FASR: metrics[FASR]}))
    print(f"{metrics['seconds']:.1f} s; wrote {', '.join(str(p) for p in outputs.values())}")
    return 0
