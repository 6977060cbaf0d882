"""``fasr infer``: super-resolve a low-resolution scan with a high-resolution reference contrast.

    fasr infer --lr t2_lowres.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz \\
        --confidence t2_conf.nii.gz
    fasr infer --simulate-from t2.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz

Writes the SR volume (input data type, SR-grid affine, header description naming tool, version, checkpoint
and reference), optionally the confidence map (float32), and a JSON sidecar with full provenance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fasr.checkpoint import resolve_device
from fasr.config import add_set_argument
from fasr.errors import FasrError
from fasr.inference.output import check_outputs, require_nifti, sidecar_path
from fasr.inference.predict import load_for_inference, metrics_table, predict, write_prediction

__all__ = ["add_arguments", "run", "RATIO_WARNING"]

# Relative deviation of the LR/reference spacing ratio from the scale above which the user is warned.
RATIO_WARNING = 0.25


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
    parser.add_argument("--ref", type=Path, required=True, help="high-resolution reference contrast, same patient")
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint .pt file or shipped model name (brats-x4, brats-x2)"
    )
    parser.add_argument("--out", type=Path, required=True, help="super-resolved NIfTI (.nii.gz / .nii)")
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


def run(args: argparse.Namespace) -> int:
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

    loaded = load_for_inference(args.checkpoint, resolve_device(args.device), args.scale, args.overrides)
    prediction = predict(
        loaded,
        target,
        args.ref,
        simulate=args.simulate_from is not None,
        degradation_kind=args.degradation,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    written = write_prediction(prediction, loaded, args.out, args.confidence, {})
    grid = prediction.result.grid
    if any(abs(r / grid.scale - 1) > RATIO_WARNING for r in grid.ref_ratio):
        ratio = " x ".join(f"{r:.2g}" for r in grid.ref_ratio)
        print(
            f"fasr: warning: in-plane, the LR voxels are {ratio} times the reference spacing, not {grid.scale}: "
            "the reference was interpolated onto the SR grid (check that --lr is the low-resolution scan)",
            file=sys.stderr,
        )
    print(
        f"x{grid.scale} {'x'.join(map(str, prediction.lr.data.shape))} -> {'x'.join(map(str, grid.shape))} "
        f"(slice axis {grid.slice_axis}) in {prediction.seconds:.1f} s with {loaded.label}"
    )
    if prediction.scores is not None:
        print(metrics_table(prediction.scores))
    for path in written:
        print(f"wrote {path}")
    return 0
