"""``fasr prepare KIND SRC DST``: write a memory-mappable slice cache (:mod:`fasr.data.cache`) of a dataset.

Each subject is read once: reference resampled onto the target grid, both normalised, slices with content
padded/cropped to ``--size``, LR made for every ``--scale`` (with the chosen degradation and noise, seeded so
the cache is reproducible). Training then reads ``kind: cache`` with ``root: DST``.
"""

from __future__ import annotations

import argparse
import math
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fasr import __version__
from fasr.data.cache import FORMAT, MANIFEST, VERSION, write_manifest, write_subject
from fasr.data.config import DataConfig, DegradationConfig
from fasr.data.degrade import NOISES, WINDOWS, Degradation, build_degradation
from fasr.data.layouts import SPLITS, data_roots, split_sources
from fasr.data.samples import check_stored_lr, fit_pair, lr_on_canvas
from fasr.data.subjects import Subject, load_subject
from fasr.errors import FasrError, UsageError

__all__ = ["add_arguments", "run", "DEFAULT_CONTRASTS", "subject_arrays"]

# Dataset kind -> (target, reference) used when --target/--reference are not given (the paper's pairings).
DEFAULT_CONTRASTS: dict[str, tuple[str, str]] = {
    "brats": ("t2", "t1"),
    "ixi": ("t2", "pd"),
    "fastmri": ("pdfs", "pd"),
    "folder": ("hr", "ref"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(DEFAULT_CONTRASTS), help="dataset layout (see docs/data.md)")
    parser.add_argument("src", help="dataset root folder")
    parser.add_argument("dst", help="cache folder to create (must be new or empty; see --force)")
    parser.add_argument("--target", help="target contrast (default: t2; fastmri: pdfs)")
    parser.add_argument("--reference", help="reference contrast (default: brats t1, ixi pd, fastmri pd)")
    parser.add_argument("--scale", type=int, nargs="+", default=[2, 4], help="LR factors to store (default: 2 4)")
    parser.add_argument("--size", type=int, default=256, help="in-plane slice size; 0 keeps the native size")
    parser.add_argument("--val-subjects", nargs="*", default=[], help="validation subject ids (default: last)")
    parser.add_argument("--test-subjects", nargs="*", default=[], help="test subject ids (default: none)")
    parser.add_argument("--pairs-csv", help="fastmri: CSV with header 'pd,pdfs' pairing the files")
    parser.add_argument("--degradation", choices=("bicubic", "kspace"), default="bicubic", help="LR model")
    parser.add_argument("--window", choices=WINDOWS, default="none", help="k-space window (kspace only)")
    parser.add_argument("--noise", choices=NOISES, default="none", help="noise added to the LR slices")
    parser.add_argument("--snr", type=float, default=30.0, help="noise SNR (mean content / sigma)")
    parser.add_argument("--min-foreground", type=float, default=0.05, help="least content fraction of a slice")
    parser.add_argument("--slice-step", type=int, default=1, help="keep every n-th slice with content")
    parser.add_argument("--percentiles", type=float, nargs=2, default=[0.5, 99.5], metavar=("LOW", "HIGH"),
                        help="percentiles mapped to -1 (of all voxels) and +1 (of the foreground)")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored precision")
    parser.add_argument("--seed", type=int, default=0, help="seed of the LR noise")
    parser.add_argument("--slice-key", help="variable to read from .mat slice files holding several")
    parser.add_argument("--skip-incomplete", action="store_true", help="skip subjects missing a contrast")
    parser.add_argument("--force", action="store_true", help="replace a previous cache in DST")


def _data_config(args: argparse.Namespace) -> DataConfig:
    target, reference = DEFAULT_CONTRASTS[args.kind]
    return DataConfig(
        kind=args.kind, root=args.src, target=args.target or target, reference=args.reference or reference,
        val_subjects=list(args.val_subjects), test_subjects=list(args.test_subjects), pairs_csv=args.pairs_csv,
        slice_size=args.size, min_foreground=args.min_foreground, slice_step=args.slice_step,
        degradation=DegradationConfig(kind=args.degradation, window=args.window, noise=args.noise, snr=args.snr),
        norm_percentiles=(args.percentiles[0], args.percentiles[1]), skip_incomplete=args.skip_incomplete,
        slice_key=args.slice_key,
    )


def _clear_destination(dst: Path, force: bool) -> None:
    """Make ``dst`` usable: new or empty, or (with ``force``) a previous cache whose files are removed."""
    if dst.exists() and not dst.is_dir():
        raise FasrError(f"'{dst}' is a file; give a folder for the cache")
    if not dst.exists() or not any(dst.iterdir()):
        return
    if not force:
        raise FasrError(f"'{dst}' is not empty; choose a new folder or pass --force to replace the cache there")
    if not (dst / MANIFEST).is_file():
        raise FasrError(f"'{dst}' holds files but no fasr cache ({MANIFEST}); --force only replaces a cache, "
                        "choose a new folder")
    (dst / MANIFEST).unlink()
    for split in SPLITS:
        if (dst / split).is_dir():
            shutil.rmtree(dst / split)


def subject_arrays(
    subject: Subject,
    *,
    size: int,
    scales: list[int],
    degradation: Degradation,
    noise: str,
    snr: float,
    slice_step: int,
    generator: torch.Generator,
    dtype: str,
) -> dict[str, np.ndarray]:
    """The cached arrays of one subject (see :mod:`fasr.data.cache`).

    Args:
        subject: normalised slices (and content slice indices).
        size: slice size (0: native, rounded up to a multiple of every scale).
        scales: LR factors.
        degradation / noise / snr: how the LR slices are made.
        slice_step: keep every n-th content slice.
        generator: random source of the noise.
        dtype: ``float32`` or ``float16``.
    """
    multiple = math.lcm(*scales)
    keep = subject.slices[:: max(1, slice_step)]
    hr = torch.from_numpy(subject.target[keep])[:, None]  # (N, 1, H, W)
    hr, ref, offset = fit_pair(hr, torch.from_numpy(subject.reference[keep])[:, None], size, multiple)
    arrays = {"target": hr[:, 0].numpy(), "reference": ref[:, 0].numpy()}
    fits = [s for s in scales if subject.lr is not None and subject.lr.shape[-1] * s == subject.target.shape[-1]]
    if subject.lr is not None and not fits:
        check_stored_lr(subject.lr.shape, subject.target.shape, scales[0], subject.subject)  # raises
    for s in scales:
        # A stored LR is used at the factor it was made for; other factors degrade the HR slice.
        stored = torch.from_numpy(subject.lr[keep])[:, None] if s in fits else None
        if stored is not None:
            check_stored_lr(subject.lr.shape, subject.target.shape, s, subject.subject)
        lr = lr_on_canvas(hr, stored, offset, s, degradation, noise, snr, generator, subject.subject)
        arrays[f"lr_x{s}"] = lr[:, 0].numpy()  # (N, H/s, W/s)
    arrays = {name: a.astype(dtype) for name, a in arrays.items()}
    arrays["slices"] = keep.astype(np.int32)
    return arrays


def _manifest(cfg: DataConfig, args: argparse.Namespace, scales: list[int], splits: dict[str, list]) -> dict:
    """The manifest before any subject is written (``complete: false``)."""
    return {
        "format": FORMAT, "version": VERSION, "complete": False, "fasr_version": __version__,
        "kind": cfg.kind, "source": ",".join(str(r.resolve()) for r in data_roots(cfg)), "target": cfg.target,
        "reference": cfg.reference, "size": args.size, "scales": scales, "dtype": args.dtype,
        "normalization": {"method": "percentiles (low: all voxels, high: foreground) -> [-1, 1], clipped",
                          "percentiles": list(cfg.norm_percentiles)},
        "degradation": asdict(cfg.degradation), "noise_seed": args.seed,
        "min_foreground": cfg.min_foreground, "slice_step": cfg.slice_step,
        "splits": {split: [p.subject for p in pairs] for split, pairs in splits.items()},
        "subjects": {}, "counts": {},
    }


def run(args: argparse.Namespace) -> int:
    cfg = _data_config(args)
    scales = sorted(set(args.scale))
    if min(scales) < 2:
        raise UsageError(f"--scale values must be >= 2, got {args.scale}")
    if args.size and args.size % math.lcm(*scales):
        raise UsageError(f"--size {args.size} is not divisible by every scale {scales}; pick a multiple")
    degradation = build_degradation(cfg.degradation)
    splits = split_sources(cfg)
    dst = Path(args.dst)
    _clear_destination(dst, args.force)
    dst.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(cfg, args, scales, splits)
    write_manifest(dst, manifest)
    jobs = [(split, source) for split in SPLITS for source in splits[split]]
    for number, (split, source) in enumerate(tqdm(jobs, desc=f"prepare {cfg.kind}", unit="subject")):
        subject = load_subject(source, percentiles=cfg.norm_percentiles, min_foreground=cfg.min_foreground,
                               slice_key=cfg.slice_key)
        if len(subject.slices) == 0:
            tqdm.write(f"{subject.subject}: no slice with {cfg.min_foreground:.0%} content; nothing stored")
        else:
            seed = int(np.random.SeedSequence([args.seed, number]).generate_state(1)[0])
            arrays = subject_arrays(
                subject, size=args.size, scales=scales, degradation=degradation, noise=cfg.degradation.noise,
                snr=cfg.degradation.snr, slice_step=cfg.slice_step, generator=torch.Generator().manual_seed(seed),
                dtype=args.dtype,
            )
            write_subject(dst, split, subject.subject, arrays)
        manifest["subjects"][subject.subject] = {
            "split": split, "target": str(source.target), "reference": str(source.reference),
            "lr": None if source.lr is None else str(source.lr),
            "slices": len(subject.slices[:: max(1, cfg.slice_step)]),
            "target_stats": [subject.target_stats.low, subject.target_stats.high],
            "ref_stats": [subject.ref_stats.low, subject.ref_stats.high],
        }
    info = manifest["subjects"]
    manifest["counts"] = {
        split: {"subjects": len(names), "slices": sum(info[n]["slices"] for n in names)}
        for split, names in manifest["splits"].items()
    }
    manifest["complete"] = True
    write_manifest(dst, manifest)
    summary = ", ".join(f"{s}: {c['subjects']} subjects / {c['slices']} slices" for s, c in manifest["counts"].items())
    print(f"wrote {dst} ({summary})")
    return 0
