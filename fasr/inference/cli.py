"""``fasr infer``: super-resolve a low-resolution scan with a high-resolution reference contrast.

    fasr infer --lr t2_lowres.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz \\
        --confidence t2_conf.nii.gz
    fasr infer --simulate-from t2.nii.gz --ref t1.nii.gz --checkpoint brats-x4 --out t2_sr.nii.gz
    fasr infer --bids ds/ --target T2w --ref T1w --checkpoint brats-x4      # whole datasets: fasr.inference.batch

Writes the SR volume (input data type, SR-grid affine, header description naming tool, version, checkpoint
and reference), optionally the confidence map (float32), and a JSON sidecar with full provenance. A thin layer
over :func:`fasr.inference.api.super_resolve` (public as ``fasr.super_resolve``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from fasr.errors import UsageError
from fasr.inference.options import DEFAULT_BATCH_SIZE, PRECISIONS, REGISTRATIONS, add_dataset_arguments
from fasr.options import add_set_argument

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
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                        help=f"slices per forward pass (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="auto",
        help="convolutions in fp32 or bf16; auto (default): bf16 on CUDA and on CPUs with native bf16, else fp32; "
        "matching is always fp32",
    )
    parser.add_argument(
        "--max-memory-gib", type=float,
        help="peak memory budget; larger slices run in tiles (default: 80%% of the memory available now)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    parser.add_argument(
        "--strict", action="store_true", help="refuse a reference that looks like another patient or misregistered"
    )
    parser.add_argument("--lr-key", metavar="NAME", help="the variable to read from a .mat --lr file holding several")
    parser.add_argument("--ref-key", metavar="NAME", help="the variable to read from a .mat --ref file holding several")
    parser.add_argument(
        "--register", choices=REGISTRATIONS, default="rigid",
        help="rigid (default): register the reference to the LR (6 degrees of freedom, mutual information; 5-20 s "
        "on 2 cores) before it is used; none: trust the two scans' affines",
    )
    parser.add_argument(
        "--adapt", type=int, default=0, metavar="N",
        help="through-plane models: fine-tune for N steps on the thick-slice scan's own slices first (0: off)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_set_argument(parser, "model.search_window=16")
    add_dataset_arguments(parser, source)


def _warn(message: str) -> None:
    print(f"fasr: warning: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: building the parser (``--help``) must not import torch.
    from fasr.checkpoint import resolve_device
    from fasr.inference import batch
    from fasr.inference.api import run_job
    from fasr.inference.job import InferenceJob
    from fasr.inference.output import require_nifti, resolved, sidecar_path
    from fasr.inference.plan import check_output_paths
    from fasr.inference.predict import metrics_table

    if batch.is_batch(args):
        return batch.run(args)
    batch.refuse_batch_options(args)
    if args.ref is None or args.out is None:
        raise UsageError("--ref and --out are required with --lr/--simulate-from; see fasr infer --help")
    if args.degradation is not None and args.simulate_from is None:
        raise UsageError("--degradation only applies with --simulate-from; drop it for a real LR scan")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_memory_gib is not None and args.max_memory_gib <= 0:
        raise UsageError(f"--max-memory-gib must be > 0, got {args.max_memory_gib:g}")
    target = args.simulate_from if args.simulate_from is not None else args.lr
    outputs = {"--out": args.out, "sidecar": sidecar_path(args.out)}
    if args.confidence is not None:
        outputs["--confidence"] = args.confidence
    require_nifti(args.out, "--out")
    if args.confidence is not None:
        require_nifti(args.confidence, "--confidence")
    if args.confidence is not None and resolved(args.confidence) == resolved(args.out):
        raise UsageError("--confidence and --out name the same file; give two different paths")
    check_output_paths(outputs, [target, args.ref], args.force)
    resolve_device(args.device)
    # Every refusal and the plan come before the model is loaded.
    job = InferenceJob.prepare(
        target, args.ref, args.checkpoint, lr_key=args.lr_key, ref_key=args.ref_key, overrides=args.overrides,
        simulate=args.simulate_from is not None, degradation=args.degradation, batch_size=args.batch_size,
        strict=args.strict, register=args.register, adapt=args.adapt,
    )
    print(job.plan.summary(), flush=True)
    for message in job.plan.warnings:
        _warn(message)
    loaded = dataclasses.replace(job.load(args.device, args.scale), precision=args.precision,
                                 max_memory_gib=args.max_memory_gib)
    result = run_job(job, loaded, progress=not args.no_progress, warn=_warn)
    written = result.save(args.out, args.confidence, force=args.force)
    prediction, grid = result.prediction, result.prediction.result.grid
    print(
        f"x{grid.scale} {'x'.join(map(str, prediction.lr.data.shape))} -> {'x'.join(map(str, grid.shape))} "
        f"(slice axis {grid.slice_axis}) in {prediction.seconds:.1f} s with {result.model.label}"
    )
    if prediction.registration is not None:
        reg = prediction.registration
        fit = (f"{reg.rotation_deg:.2f} deg, {reg.centre_shift_mm:.2f} mm at the LR's centre, mutual information "
               f"{reg.metric:.4f} ({reg.seconds:.1f} s)")
        if reg.applied:
            print(f"registered the reference: {fit}")
        else:
            print(f"kept the reference where its header places it: it agrees better with the LR than the rigid fit "
                  f"({fit})")
    if result.mean_confidence is not None:
        print(f"mean confidence {result.mean_confidence:.3f} (how strongly matched reference texture drove the output)")
    if prediction.scores is not None:
        print(metrics_table(prediction.scores))
    for path in written:
        print(f"wrote {path}")
    return 0
