"""Whole datasets in one command: a BIDS dataset, a folder of pairs found by two globs, or a CSV of pairs.

    fasr infer --bids ds/ --target T2w --ref T1w --checkpoint brats-x4 [--participant-label 01 02] [--shard 1/4]
    fasr infer --lr-glob 'scans/*/t2.nii.gz' --ref-glob 'scans/*/t1.nii.gz' --checkpoint brats-x4 --out sr/
    fasr infer --pairs pairs.csv --checkpoint brats-x4 --out sr/

BIDS: every ``sub-*/[ses-*/]anat/`` holding a ``*_<target>.nii[.gz]`` and a ``*_<ref>.nii[.gz]`` is one job;
outputs are BIDS derivatives in ``DIR/derivatives/fasr`` (or ``--out``): ``<target entities>_desc-fasr_<target>
.nii.gz``, its JSON sidecar (provenance and ``Sources``), ``..._desc-fasrconfidence_<target>.nii.gz``, and
``dataset_description.json`` with ``GeneratedBy``. Globs: the parts matched by the wildcards pair an LR with its
reference and name the outputs ``<key>_sr.nii.gz``. CSV: columns ``lr``, ``ref`` and optionally ``id`` (paths
relative to the CSV's folder).

The model is loaded once. A job whose sidecar and SR volume exist is finished and skipped (an interrupted run
continues; ``--force`` redoes everything); an SR volume without its sidecar is an interrupted write and is
redone. ``--shard I/N`` keeps subjects number I, I+N, I+2N, ... (1-based, sorted), so N jobs of a cluster array
(``--shard auto``: torchrun's ``RANK``/``WORLD_SIZE``) split a dataset without overlap. One progress bar over
jobs, one summary table at the end; a subject without its reference is skipped with a warning.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from fasr import __version__
from fasr.data.io import NIFTI_SUFFIXES
from fasr.errors import FasrError, UsageError
from fasr.files import atomic_write_text
from fasr.inference.api import load_model, super_resolve
from fasr.inference.output import nifti_stem, sidecar_path
from fasr.inference.predict import LoadedModel

__all__ = [
    "Job",
    "Row",
    "is_batch",
    "refuse_batch_options",
    "parse_shard",
    "shard_jobs",
    "bids_jobs",
    "glob_jobs",
    "csv_jobs",
    "write_dataset_description",
    "run_jobs",
    "summary_table",
    "run",
]

DERIVATIVES = Path("derivatives") / "fasr"
SR_DESC = "fasr"
CONFIDENCE_DESC = "fasrconfidence"
BIDS_VERSION = "1.9.0"  # written when the raw dataset does not say
_BATCH_ONLY = ("target", "participant_label", "shard", "ref_glob")


@dataclass(frozen=True)
class Job:
    """One LR/reference pair of a dataset.

    Attributes:
        subject: what ``--shard`` splits on (``sub-01``; the pair's key for globs and CSVs).
        label: name in messages and the summary (``sub-01/ses-a``).
        lr, ref: input files; None where the subject has none.
        out, confidence: output files (None for a job that cannot run).
        sources: the inputs as the sidecar's ``Sources`` lists them.
        problem: why the job cannot run (e.g. no reference), else None.
    """

    subject: str
    label: str
    lr: Path | None
    ref: Path | None
    out: Path | None
    confidence: Path | None
    sources: tuple[str, ...] = ()
    problem: str | None = None


@dataclass
class Row:
    """One line of the summary table."""

    label: str
    status: str  # done, skipped, finished before, failed
    seconds: float | None = None
    mean_confidence: float | None = None
    warnings: list[str] = field(default_factory=list)


def is_batch(args: argparse.Namespace) -> bool:
    """Whether ``fasr infer`` was given a dataset (``--bids``, ``--lr-glob`` or ``--pairs``)."""
    return args.bids is not None or args.lr_glob is not None or args.pairs is not None


def refuse_batch_options(args: argparse.Namespace) -> None:
    """Dataset options given for a single scan are an error (they would be ignored)."""
    given = [name for name in _BATCH_ONLY if getattr(args, name) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UsageError(f"{flag} applies to datasets (--bids, --lr-glob, --pairs); drop it for a single --lr")


def parse_shard(text: str | None) -> tuple[int, int]:
    """``I/N`` -> (I, N), 1 <= I <= N; ``auto`` -> torchrun's ``RANK + 1``/``WORLD_SIZE``; None -> (1, 1).

    Args:
        text: the ``--shard`` value.
    """
    if text is None:
        return 1, 1
    if text == "auto":
        return int(os.environ.get("RANK", 0)) + 1, int(os.environ.get("WORLD_SIZE", 1))
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if match is None or not 1 <= int(match[1]) <= int(match[2]):
        raise UsageError(f"--shard '{text}' must be I/N with 1 <= I <= N, e.g. 1/4 (or auto under torchrun)")
    return int(match[1]), int(match[2])


def shard_jobs(jobs: list[Job], index: int, count: int) -> list[Job]:
    """The jobs of subjects number ``index``, ``index + count``, ... of the sorted subject list (1-based).

    Args:
        jobs: all jobs of the dataset.
        index, count: the shard, as from :func:`parse_shard`.
    """
    subjects = sorted({job.subject for job in jobs})
    mine = set(subjects[index - 1 :: count])
    return [job for job in jobs if job.subject in mine]


def _nifti_files(folder: Path, suffix: str) -> list[Path]:
    """NIfTI files in ``folder`` whose BIDS suffix (last ``_`` part of the stem) is ``suffix``, sorted."""
    found = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(NIFTI_SUFFIXES)] if folder.is_dir() else []
    return sorted(p for p in found if nifti_stem(p).split("_")[-1] == suffix)


def _entities(path: Path) -> list[str]:
    """BIDS entities of a file name (``sub-01_ses-a_T2w.nii.gz`` -> ``["sub-01", "ses-a"]``)."""
    return nifti_stem(path).split("_")[:-1]


def _derivative_name(target: Path, desc: str, suffix: str) -> str:
    """``sub-01_acq-x_T2w.nii.gz`` -> ``sub-01_acq-x_desc-<desc>_T2w.nii.gz`` (an existing desc is replaced)."""
    kept = [e for e in _entities(target) if not e.startswith("desc-")]
    return "_".join([*kept, f"desc-{desc}", suffix]) + ".nii.gz"


def _pick_reference(target: Path, refs: list[Path], ref_suffix: str) -> tuple[Path | None, str | None]:
    """The reference of ``target`` among the session's ``refs``: the only one, or the one with the same entities."""
    if len(refs) == 1:
        return refs[0], None
    if not refs:
        return None, f"no {ref_suffix} reference in {target.parent}; skipped"
    same = [r for r in refs if _entities(r) == _entities(target)]
    if len(same) == 1:
        return same[0], None
    names = ", ".join(r.name for r in refs)
    return None, f"{len(refs)} {ref_suffix} files ({names}) and none with the entities of {target.name}; skipped"


def bids_jobs(
    root: Path, target: str, ref: str, participants: list[str] | None, out_root: Path
) -> list[Job]:
    """Every target scan of a BIDS dataset with its reference from the same subject/session ``anat`` folder.

    Args:
        root: the dataset folder (holding ``sub-*``).
        target, ref: BIDS suffixes, e.g. ``T2w`` and ``T1w``.
        participants: subject labels to keep (with or without ``sub-``), or None for all.
        out_root: the derivatives folder.

    Raises:
        FasrError: not a BIDS dataset, or a participant label that is not in it.
    """
    if not root.is_dir():
        raise FasrError(f"--bids '{root}' is not a folder; give the root of a BIDS dataset")
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subjects:
        raise FasrError(f"--bids '{root}' has no sub-* folders; give the root of a BIDS dataset")
    if participants is not None:
        wanted = {p if p.startswith("sub-") else f"sub-{p}" for p in participants}
        unknown = sorted(wanted - {s.name for s in subjects})
        if unknown:
            raise FasrError(f"--participant-label {unknown[0]} is not in '{root}' (it has {subjects[0].name}, ...)")
        subjects = [s for s in subjects if s.name in wanted]
    jobs = []
    for subject in subjects:
        sessions = sorted(p for p in subject.glob("ses-*") if p.is_dir()) or [subject]
        for session in sessions:
            anat = session / "anat"
            label = session.relative_to(root).as_posix()
            targets = _nifti_files(anat, target)
            if not targets:
                jobs.append(Job(subject.name, label, None, None, None, None, problem=f"no {target} in {anat}; skipped"))
                continue
            refs = _nifti_files(anat, ref)
            for scan in targets:
                reference, problem = _pick_reference(scan, refs, ref)
                relative = anat.relative_to(root)
                jobs.append(
                    Job(
                        subject=subject.name,
                        label=label if len(targets) == 1 else f"{label}/{nifti_stem(scan)}",
                        lr=scan,
                        ref=reference,
                        out=out_root / relative / _derivative_name(scan, SR_DESC, target),
                        confidence=out_root / relative / _derivative_name(scan, CONFIDENCE_DESC, target),
                        sources=tuple(
                            f"bids:raw:{p.relative_to(root).as_posix()}" for p in (scan, reference) if p is not None
                        ),
                        problem=problem,
                    )
                )
    return jobs


def _pair_job(key: str, lr: Path, ref: Path | None, out_dir: Path, problem: str | None = None) -> Job:
    """A job of a folder of pairs or a CSV: outputs ``<out_dir>/<key>_sr.nii.gz`` and ``<key>_confidence``."""
    return Job(
        subject=key,
        label=key,
        lr=lr,
        ref=ref,
        out=out_dir / f"{key}_sr.nii.gz",
        confidence=out_dir / f"{key}_confidence.nii.gz",
        sources=tuple(str(p) for p in (lr, ref) if p is not None),
        problem=problem,
    )


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex matching what :func:`glob.glob` matches for ``pattern``, one group per wildcard."""
    parts = re.split(r"(\*\*|\*|\?|\[[^\]]*\])", pattern)
    regex = ""
    for part in parts:
        if part == "**":
            regex += "(.*)"
        elif part == "*":
            regex += "([^/]*)"
        elif part == "?":
            regex += "([^/])"
        elif part.startswith("[") and part.endswith("]") and len(part) > 2:
            regex += "(" + part.replace("[!", "[^") + ")"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def glob_jobs(lr_glob: str, ref_glob: str | None, out_dir: Path | None) -> list[Job]:
    """Pairs of a folder: the LR and the reference whose wildcards matched the same text.

    Args:
        lr_glob, ref_glob: patterns with the same wildcards, e.g. ``scans/*/t2.nii.gz``, ``scans/*/t1.nii.gz``.
        out_dir: output folder.
    """
    if ref_glob is None or out_dir is None:
        raise UsageError("--lr-glob needs --ref-glob (same wildcards) and --out (an output folder)")
    lr_re, ref_re = _glob_regex(lr_glob), _glob_regex(ref_glob)
    if lr_re.groups == 0 or lr_re.groups != ref_re.groups:
        raise FasrError(
            f"--lr-glob '{lr_glob}' and --ref-glob '{ref_glob}' need the same wildcards (at least one), in order, "
            "so that each LR finds its reference"
        )

    def keyed(pattern: str, regex: re.Pattern[str]) -> dict[str, Path]:
        files = {}
        for name in sorted(glob.glob(pattern, recursive=True)):
            match = regex.fullmatch(name)
            if match is not None and Path(name).is_file():
                files["_".join(match.groups()).replace("/", "_")] = Path(name)
        return files

    lrs, refs = keyed(lr_glob, lr_re), keyed(ref_glob, ref_re)
    if not lrs:
        raise FasrError(f"--lr-glob '{lr_glob}' matches no file; check the pattern (quote it in the shell)")
    return [
        _pair_job(key, lr, refs.get(key), out_dir, None if key in refs else f"no reference matches {lr}; skipped")
        for key, lr in lrs.items()
    ]


def csv_jobs(path: Path, out_dir: Path | None) -> list[Job]:
    """Pairs listed in a CSV with columns ``lr``, ``ref`` and optionally ``id`` (default: the LR file's stem).

    Args:
        path: the CSV file; relative paths in it are relative to its folder.
        out_dir: output folder.
    """
    if out_dir is None:
        raise UsageError("--pairs needs --out (an output folder)")
    if not path.is_file():
        raise FasrError(f"--pairs '{path}' not found; give a CSV file with columns lr, ref")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"lr", "ref"} <= set(rows[0]):
        raise FasrError(f"--pairs '{path}' needs a header with columns lr and ref (and optionally id)")
    jobs, seen = [], set()
    for number, row in enumerate(rows, start=2):
        lr, ref = (path.parent / (row[c] or "").strip() for c in ("lr", "ref"))
        key = (row.get("id") or "").strip() or nifti_stem(lr)
        if key in seen:
            raise FasrError(f"--pairs '{path}' line {number}: id '{key}' appears twice; give each pair its own id")
        seen.add(key)
        jobs.append(_pair_job(key, lr, ref, out_dir))
    return jobs


def write_dataset_description(out_root: Path, source: Path, description: str) -> Path:
    """Write (or add fasr to) the derivatives' ``dataset_description.json``; atomic, so shards may race.

    Args:
        out_root: the derivatives folder.
        source: the raw BIDS dataset.
        description: what was done, for ``GeneratedBy``.
    """
    path = out_root / "dataset_description.json"
    raw = source / "dataset_description.json"
    raw_version = json.loads(raw.read_text()).get("BIDSVersion") if raw.is_file() else None
    link = os.path.relpath(source.resolve(), out_root.resolve())  # "../.." for DIR/derivatives/fasr
    record = json.loads(path.read_text()) if path.is_file() else {
        "Name": "fasr super-resolution",
        "BIDSVersion": raw_version or BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [],
        "DatasetLinks": {"raw": link},
    }
    if not any(entry.get("Name") == "fasr" for entry in record.setdefault("GeneratedBy", [])):
        record["GeneratedBy"].append({"Name": "fasr", "Version": __version__, "Description": description})
    out_root.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def _finished(job: Job) -> bool:
    return job.out.is_file() and sidecar_path(job.out).is_file()


def run_jobs(
    jobs: list[Job],
    model: str | Path,
    *,
    device: str,
    scale: int | None,
    overrides: list[str],
    batch_size: int,
    force: bool,
    progress: bool,
    precision: str = "auto",
    max_memory_gib: float | None = None,
    register: str = "rigid",
    adapt: int = 0,
) -> list[Row]:
    """Run every job with one model; never stops on one subject's error (it is reported in its row).

    Args:
        jobs: the jobs of this shard.
        model: checkpoint file or shipped model name.
        device, scale, overrides: how the model is loaded (:func:`fasr.inference.api.load_model`).
        batch_size: slices per forward pass.
        precision / max_memory_gib: run settings (``fasr infer --precision`` / ``--max-memory-gib``).
        register: ``rigid`` or ``none`` (``fasr infer --register``).
        adapt: ``fasr infer --adapt`` steps (through-plane models).
        force: redo finished jobs.
        progress: show the progress bar over jobs.
    """
    rows = []
    todo = [job for job in jobs if job.problem is None and (force or not _finished(job))]
    loaded = None
    if todo:
        loaded = load_model(model, device, scale=scale, overrides=overrides)
        loaded = dataclasses.replace(loaded, precision=precision, max_memory_gib=max_memory_gib)
    with tqdm(total=len(jobs), desc="subjects", unit="subject", disable=not progress, file=sys.stderr) as bar:
        for job in jobs:
            if job.problem is not None:
                rows.append(Row(job.label, "skipped", warnings=[job.problem]))
                tqdm.write(f"fasr: warning: {job.label}: {job.problem}", file=sys.stderr)
            elif job not in todo:
                rows.append(Row(job.label, "finished before"))
            else:
                rows.append(_run_job(job, loaded, batch_size, register, adapt))
                for warning in rows[-1].warnings:
                    tqdm.write(f"fasr: warning: {job.label}: {warning}", file=sys.stderr)
            bar.update(1)
    return rows


def _run_job(job: Job, loaded: LoadedModel, batch_size: int, register: str, adapt: int = 0) -> Row:
    """Super-resolve one pair and write its outputs (an unfinished earlier write is replaced)."""
    start = time.perf_counter()
    try:
        result = super_resolve(job.lr, job.ref, loaded, batch_size=batch_size, register=register, adapt=adapt)
        confidence = job.confidence if result.confidence is not None else None
        result.save(job.out, confidence, force=True, extra={"Sources": list(job.sources)})
    except FasrError as exc:
        return Row(job.label, "failed", warnings=[str(exc)])
    return Row(job.label, "done", time.perf_counter() - start, result.mean_confidence, list(result.warnings))


def summary_table(rows: list[Row]) -> str:
    """Markdown table: subject, status, seconds, mean confidence, warnings."""
    lines = ["| subject | status | seconds | mean confidence | warnings |", "|---|---|---|---|---|"]
    for row in rows:
        seconds = "" if row.seconds is None else f"{row.seconds:.1f}"
        confidence = "" if row.mean_confidence is None else f"{row.mean_confidence:.3f}"
        warnings = "; ".join(row.warnings).replace("|", "/")
        lines.append(f"| {row.label} | {row.status} | {seconds} | {confidence} | {warnings} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """``fasr infer`` with ``--bids``, ``--lr-glob`` or ``--pairs``: exit status 1 when a job failed."""
    for flag, value in (("--confidence", args.confidence), ("--simulate-from", args.simulate_from)):
        if value is not None:
            raise FasrError(f"{flag} is for a single scan; datasets always get confidence maps beside the outputs")
    if args.degradation is not None:
        raise UsageError("--degradation only applies with --simulate-from; drop it for a dataset")
    if args.lr_key is not None or args.ref_key is not None:
        raise UsageError("--lr-key / --ref-key name the variables of one .mat pair; a dataset run reads whole files")
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out is not None and (args.out.is_file() or args.out.name.endswith(NIFTI_SUFFIXES)):
        raise UsageError(f"--out '{args.out}' names a file; for a dataset give an output folder")
    if args.bids is not None:
        if args.target is None or args.ref is None:
            raise UsageError("--bids needs --target and --ref suffixes, e.g. --target T2w --ref T1w")
        out_root = args.out if args.out is not None else args.bids / DERIVATIVES
        jobs = bids_jobs(args.bids, args.target, str(args.ref), args.participant_label, out_root)
    else:
        if args.target is not None or args.participant_label is not None:
            raise UsageError("--target and --participant-label apply to --bids only")
        if args.ref is not None:
            raise UsageError("--ref names one file; with --lr-glob use --ref-glob, with --pairs the CSV's ref column")
        jobs = glob_jobs(args.lr_glob, args.ref_glob, args.out) if args.lr_glob else csv_jobs(args.pairs, args.out)
    index, count = parse_shard(args.shard)
    jobs = shard_jobs(jobs, index, count)
    device = args.device
    if args.shard == "auto" and device == "auto" and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"  # one GPU per torchrun rank
    if args.bids is not None and any(job.problem is None for job in jobs):
        done = f"super-resolution of {args.target} with a {args.ref} reference, model {args.checkpoint}"
        write_dataset_description(out_root, args.bids, done)
    rows = run_jobs(
        jobs,
        args.checkpoint,
        device=device,
        scale=args.scale,
        overrides=args.overrides,
        batch_size=args.batch_size,
        force=args.force,
        progress=not args.no_progress,
        precision=args.precision,
        max_memory_gib=args.max_memory_gib,
        register=args.register,
        adapt=args.adapt,
    )
    shard = f" (shard {index}/{count})" if count > 1 else ""
    print(f"{len(rows)} job(s){shard}:")
    print(summary_table(rows))
    return 1 if any(row.status == "failed" for row in rows) else 0
