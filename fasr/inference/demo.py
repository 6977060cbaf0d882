"""``fasr demo``: super-resolve a simulated x4 low-resolution T2 of the bundled subject from its T1.

Writes into ``--out``: ``sr.nii.gz`` (+ ``sr.json`` provenance), ``confidence.nii.gz``, ``figure.png``
(LR, Ref, bicubic, FASR, HR of the central slice with residual maps on one colour scale) and ``metrics.json``
(``{"bicubic": {"psnr", "ssim"}, "fasr": {"psnr", "ssim"}, "seconds"}``), and prints the table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fasr.checkpoint import resolve_device
from fasr.config import add_set_argument
from fasr.data.types import NormStats
from fasr.evaluation.figures import residual_figure
from fasr.inference.output import check_outputs, write_json
from fasr.inference.predict import Prediction, load_for_inference, metrics_table, predict, write_prediction
from fasr.inference.slicing import Slicer
from fasr.scoring.volumes import BICUBIC, VolumePrediction

__all__ = ["DEMO_DIR", "DEMO_SUBJECT", "DEFAULT_CHECKPOINT", "OUTPUTS", "add_arguments", "run", "demo_figure"]

DEMO_DIR = Path(__file__).resolve().parents[1] / "assets" / "demo"
DEMO_SUBJECT = "TCGA-DU-7294"  # see fasr/assets/demo/ATTRIBUTION.md
DEFAULT_CHECKPOINT = "brats-x4"
OUTPUTS = ("sr.nii.gz", "sr.json", "confidence.nii.gz", "figure.png", "metrics.json")
FASR = "fasr"  # key of the model's scores in metrics.json
BATCH_SIZE = 4  # slices per forward pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default demo-out)")
    parser.add_argument("--force", action="store_true", help="overwrite earlier demo outputs in --out")
    parser.add_argument(
        "--checkpoint",
        default=DEFAULT_CHECKPOINT,
        help=f"checkpoint .pt file or shipped model name (default {DEFAULT_CHECKPOINT})",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_argument(parser, "model.search_window=16")


def demo_figure(prediction: Prediction, path: Path) -> Path:
    """Residual-map figure of the central slice (:func:`fasr.evaluation.figures.residual_figure`).

    Images are shown in display orientation on the [-1, 1] scale of the LR's normalisation (the reference on
    its own).

    Args:
        prediction: a simulated prediction (ground truth and bicubic present).
        path: PNG file to write.
    """
    result, simulation = prediction.result, prediction.simulation
    if simulation is None or prediction.bicubic is None:
        raise ValueError("the demo figure needs a simulated prediction")
    stats = result.target_stats
    slicer = Slicer.for_grid(result.grid.affine, result.grid.slice_axis)  # also fits the LR grid

    def stack(volume: np.ndarray, volume_stats: NormStats = stats) -> np.ndarray:
        return slicer.to_stack(volume_stats.normalize(volume))  # (N, H, W) on [-1, 1]

    volume = VolumePrediction(
        subject=DEMO_SUBJECT,
        slices=np.arange(simulation.hr.data.shape[result.grid.slice_axis]),
        hr=stack(simulation.hr.data),
        ref=stack(result.reference, result.ref_stats),
        lr=stack(prediction.lr.data),
        outputs={BICUBIC: stack(prediction.bicubic), FASR: stack(result.sr)},
        target_stats=(stats.low, stats.high),
    )
    return residual_figure([(volume, len(volume.slices) // 2)], [BICUBIC, FASR], path)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    outputs = {name: args.out / name for name in OUTPUTS}
    check_outputs(outputs.values(), [DEMO_DIR / "t1.nii.gz", DEMO_DIR / "t2.nii.gz"], args.force)
    loaded = load_for_inference(args.checkpoint, resolve_device(args.device), None, args.overrides)
    prediction = predict(
        loaded,
        DEMO_DIR / "t2.nii.gz",
        DEMO_DIR / "t1.nii.gz",
        simulate=True,
        degradation_kind=None,
        batch_size=BATCH_SIZE,
        progress=not args.no_progress,
    )
    write_prediction(
        prediction, loaded, outputs["sr.nii.gz"], outputs["confidence.nii.gz"], {"demo_subject": DEMO_SUBJECT}
    )
    demo_figure(prediction, outputs["figure.png"])
    scores = prediction.scores
    assert scores is not None  # simulated predictions are scored
    metrics = {
        BICUBIC: scores[BICUBIC],
        FASR: scores[loaded.config.model.name],
        "seconds": round(time.perf_counter() - start, 2),
    }
    write_json(outputs["metrics.json"], metrics)
    print(
        f"{DEMO_SUBJECT} (fasr/assets/demo): T2 x{loaded.scale} from T1 with {loaded.label}, "
        f"{prediction.lr.data.shape} -> {prediction.result.grid.shape}"
    )
    print(metrics_table({BICUBIC: metrics[BICUBIC], FASR: metrics[FASR]}))
    print(f"{metrics['seconds']:.1f} s; wrote {', '.join(str(p) for p in outputs.values())}")
    return 0
