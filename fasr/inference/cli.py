"""``fasr infer``: super-resolve a low-resolution scan with a high-resolution reference contrast.

    fasr infer --lr t2_lowres.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz \\
        --confidence t2_conf.nii.gz
    fasr infer --simulate-from t2.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz
    fasr infer --bids ds/ --target T2w --ref T1w --checkpoint brats-x4      # whole datasets: fasr.inference.bids

Writes the SR volume (input data type, SR-grid affine, header description naming tool, version, checkpoint
and reference), optionally the confidence map (float32), and a JSON sidecar with full provenance. A thin layer
over :func:`fasr.inference.frontend.super_resolve` (public as ``fasr.super_resolve``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fasr.config import add_set_argument
from fasr.errors import FasrError
from fasr.inference import bids
from fasr.inference.frontend import super_resolve
from fasr.inference.output import check_outputs, require_nifti, sidecar_path
from fasr.inference.predict import metrics_table

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--lr", type=Path, help="low-resolution target: NIfTI file, DICOM series folder or 2-D slice file"
    )
    source.add_argument(
        "--simulate-from",
        type=Path,
        metavar="HR",
        help="high-resolution target to degrade first (as in training); PSNR/SSIM against it are reported",
    )
    parser.add_argument(
        "--ref", type=Path, help="high-resolution reference contrast, same patient (with --bids: its suffix, e.g. T1w)"
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint .pt file or shipped model name (list: fasr models)"
    )
    parser.add_argument(
        "--out", type=Path, help="super-resolved NIfTI (.nii.gz / .nii); with --lr-glob/--pairs: output folder"
    )
    parser.add_argument("--confidence", type=Path, help="also write the soft-attention confidence map here")
    parser.add_argument("--scale", type=int, help="required in-plane factor (default: the checkpoint's)")
    parser.add_argument(
        "--degradation",
        choices=("bicubic", "kspace"),
        help="with --simulate-from: how the LR is made (default: the checkpoint's training degradation)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="slices per forward pass (default 4)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_argument(parser, "model.search_window=16")
    bids.add_arguments(parser, source)


def run(args: argparse.Namespace) -> int:
    if bids.is_batch(args):
        return bids.run(args)
    bids.refuse_batch_options(args)
    if args.ref is None or args.out is None:
        raise FasrError("--ref and --out are required with --lr/--simulate-from; see fasr infer --help")
    if args.degradation is not None and args.simulate_from is None:
        raise FasrError("--degradation only applies with --simulate-from; drop it for a real LR scan")
    if args.batch_size < 1:
        raise FasrError(f"--batch-size must be >= 1, got {args.batch_size}")
    target = args.simulate_from if args.simulate_from is not None else args.lr
    outputs = [args.out, sidecar_path(args.out)] + ([args.confidence] if args.confidence else [])
    require_nifti(args.out, "--out")
    if args.confidence is not None:
        require_nifti(args.confidence, "--confidence")
    if args.confidence is not None and args.confidence.resolve() == args.out.resolve():
        raise FasrError("--confidence and --out name the same file; give two different paths")
    check_outputs(outputs, [target, args.ref], args.force)

    result = super_resolve(
        target,
        args.ref,
        args.checkpoint,
        device=args.device,
        scale=args.scale,
        overrides=args.overrides,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        simulate=args.simulate_from is not None,
        degradation=args.degradation,
    )
    written = result.save(args.out, args.confidence, force=args.force)
    for warning in result.warnings:
        print(f"fasr: warning: {warning}", file=sys.stderr)
    prediction, grid = result.prediction, result.prediction.result.grid
    print(
        f"x{grid.scale} {'x'.join(map(str, prediction.lr.data.shape))} -> {'x'.join(map(str, grid.shape))} "
        f"(slice axis {grid.slice_axis}) in {prediction.seconds:.1f} s with {result.model.label}"
    )
    if prediction.scores is not None:
        print(metrics_table(prediction.scores))
    for path in written:
        print(f"wrote {path}")
    return 0
