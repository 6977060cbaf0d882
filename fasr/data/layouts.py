"""Where each dataset keeps its files: target/reference pairs per subject, and the split by subject.

Layouts (``DataConfig.kind``):

- ``brats``: ``<root>/<subject>/<contrast>.nii.gz``; BraTS release names (``<subject>-t2w.nii.gz``,
  ``<subject>_t1ce.nii.gz``, ...) are recognised through :data:`BRATS_ALIASES`.
- ``ixi``: ``<root>/IXI-T2/IXI<id>-<site>-<n>-T2.nii.gz`` and ``<root>/IXI-PD/...-PD.nii.gz`` (or all files
  directly in ``<root>``), paired by the subject id ``IXI<id>-<site>-<n>``.
- ``fastmri``: ``.h5`` files paired by a CSV whose header names the contrasts (e.g. ``pd,pdfs``), one pair a
  row, paths relative to ``<root>`` (the public release does not link PD and PDFS scans of one knee).
- ``folder``: ``<root>/hr/``, ``<root>/ref/`` and optional ``<root>/lr/`` with the same file names (2-D
  slices); already split when ``<root>/train/`` exists (``<root>/<split>/hr/`` ...).
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from fasr.data.config import DataConfig
from fasr.data.fastmri import ACQUISITIONS, read_acquisition
from fasr.data.io import NIFTI_SUFFIXES, SLICE_SUFFIXES
from fasr.errors import FasrError

__all__ = [
    "data_roots", "SPLITS", "BRATS_ALIASES", "PairSource", "find_pairs", "split_pairs", "split_sources",
    "pairs_for_split",
]

SPLITS = ("train", "val", "test")
# Contrast name -> file-name stems used for it by BraTS releases.
BRATS_ALIASES: dict[str, tuple[str, ...]] = {
    "t1": ("t1", "t1n"),
    "t1c": ("t1c", "t1ce"),
    "t2": ("t2", "t2w"),
    "flair": ("flair", "t2f"),
}
_IXI_NAME = re.compile(r"^(IXI\d+-[A-Za-z]+-\d+)-([A-Za-z0-9]+)\.nii(\.gz)?$")


@dataclass(frozen=True)
class PairSource:
    """The files of one subject's target/reference pair.

    Attributes:
        subject: subject id (splits are by subject).
        target / reference: volume or slice files (or DICOM folders).
        lr: stored LR slice (folder datasets), or None.
        pairing: how reference slices are matched to target slices: ``affine`` (resampled through the
            headers' geometry), ``index`` (slice i with slice i, centred overlap: fastMRI) or ``grid``
            (already on one grid: 2-D slice folders).
    """

    subject: str
    target: Path
    reference: Path
    lr: Path | None = None
    pairing: Literal["affine", "index", "grid"] = "affine"


def _missing(subject: str, what: str, expected: Path | str, skip: bool) -> None:
    """Stop on (or, with ``skip``, warn about) a subject lacking one of its files."""
    if not skip:
        raise FasrError(
            f"subject '{subject}' has no {what} (expected {expected}); add it, remove the subject, or set "
            "data.skip_incomplete=true"
        )
    warnings.warn(f"skipping subject '{subject}': no {what} ({expected})", stacklevel=3)


def _nifti_stem(path: Path) -> str | None:
    name = path.name.lower()
    return next((name[: -len(s)] for s in NIFTI_SUFFIXES if name.endswith(s)), None)


def _brats_file(folder: Path, contrast: str) -> Path | None:
    names = BRATS_ALIASES.get(contrast.lower(), (contrast.lower(),))
    for path in sorted(folder.iterdir()):
        stem = _nifti_stem(path)
        if stem is not None and (stem in names or any(stem.endswith(sep + n) for sep in "-_" for n in names)):
            return path
    return None


def _find_brats(cfg: DataConfig, root: Path) -> list[PairSource]:
    """One pair per subject and reference contrast (``reference: t1,t1c,flair`` trains with all three)."""
    references = [r.strip() for r in cfg.reference.split(",") if r.strip()]
    pairs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = {c: _brats_file(folder, c) for c in (cfg.target, *references)}
        missing = [c for c, f in files.items() if f is None]
        if missing:
            role = "target" if cfg.target in missing else "reference"
            _missing(folder.name, f"{role} '{missing[0]}'", folder / f"{missing[0]}.nii.gz", cfg.skip_incomplete)
            continue
        pairs.extend(PairSource(folder.name, files[cfg.target], files[r]) for r in references)
    return pairs


def _ixi_files(root: Path, contrast: str) -> dict[str, Path]:
    """Subject id -> file of one IXI contrast."""
    folder = root / f"IXI-{contrast.upper()}"
    folder = folder if folder.is_dir() else root
    files = {}
    for path in folder.iterdir():
        match = _IXI_NAME.match(path.name)
        if match and match.group(2).lower() == contrast.lower():
            files[match.group(1)] = path
    return files


def _find_ixi(cfg: DataConfig, root: Path) -> list[PairSource]:
    targets, references = _ixi_files(root, cfg.target), _ixi_files(root, cfg.reference)
    if not targets:
        raise FasrError(
            f"no IXI {cfg.target.upper()} files in '{root / f'IXI-{cfg.target.upper()}'}' or '{root}'; expected "
            f"names like IXI002-Guys-0828-{cfg.target.upper()}.nii.gz"
        )
    pairs = []
    for subject in sorted(targets):
        if subject not in references:
            expected = root / f"IXI-{cfg.reference.upper()}" / f"{subject}-{cfg.reference.upper()}.nii.gz"
            _missing(subject, f"reference '{cfg.reference}'", expected, cfg.skip_incomplete)
            continue
        pairs.append(PairSource(subject, targets[subject], references[subject]))
    return pairs


def _check_acquisition(path: Path, contrast: str, csv_path: Path) -> None:
    expected = ACQUISITIONS.get(contrast.lower())
    try:
        found = read_acquisition(path) if path.suffix.lower() == ".h5" else None
    except OSError as exc:
        raise FasrError(f"cannot read '{path}' as HDF5 ({exc}); check that the file is complete") from None
    if expected and found and found != expected:
        raise FasrError(
            f"'{path}' is a {found} scan but '{csv_path}' lists it under '{contrast}' ({expected}); fix the CSV"
        )


def _find_fastmri(cfg: DataConfig, root: Path) -> list[PairSource]:
    if not cfg.pairs_csv:
        raise FasrError(
            "fastMRI does not link the PD and PDFS scans of one knee; give data.pairs_csv (a CSV with header "
            "'pd,pdfs' and one file pair per row)"
        )
    csv_path = Path(cfg.pairs_csv)
    csv_path = csv_path if csv_path.is_file() else root / csv_path
    if not csv_path.is_file():
        raise FasrError(f"pairs CSV '{cfg.pairs_csv}' not found (also looked in '{root}')")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        columns, rows = list(reader.fieldnames or []), list(reader)
    if cfg.target not in columns or cfg.reference not in columns:
        raise FasrError(
            f"'{csv_path}' has columns {columns}; it needs '{cfg.target}' (data.target) and '{cfg.reference}' "
            "(data.reference), one file pair per row"
        )
    pairs = []
    for row in rows:
        target = root / row[cfg.target].strip()
        reference = root / row[cfg.reference].strip() if row[cfg.reference] else None
        if not target.is_file():
            raise FasrError(f"'{target}' listed in '{csv_path}' not found; fix the CSV or data.root")
        if reference is None or not reference.is_file():
            _missing(target.stem, f"reference '{cfg.reference}'", reference or csv_path, cfg.skip_incomplete)
            continue
        _check_acquisition(target, cfg.target, csv_path)
        _check_acquisition(reference, cfg.reference, csv_path)
        pairs.append(PairSource(target.stem, target, reference, pairing="index"))
    return sorted(pairs, key=lambda p: p.subject)


def _find_folder(cfg: DataConfig, root: Path) -> list[PairSource]:
    hr_dir, ref_dir, lr_dir = root / "hr", root / "ref", root / "lr"
    if not hr_dir.is_dir() or not ref_dir.is_dir():
        raise FasrError(f"'{root}' needs hr/ and ref/ folders of slice files with the same names (optional lr/)")
    suffixes = (*SLICE_SUFFIXES, *NIFTI_SUFFIXES)
    pairs = []
    for hr in sorted(p for p in hr_dir.iterdir() if p.name.lower().endswith(suffixes)):
        ref, lr = ref_dir / hr.name, (lr_dir / hr.name if lr_dir.is_dir() else None)
        if not ref.is_file():
            _missing(hr.name, "reference slice", ref, cfg.skip_incomplete)
            continue
        if lr is not None and not lr.is_file():
            _missing(hr.name, "LR slice", lr, cfg.skip_incomplete)
            continue
        pairs.append(PairSource(hr.name, hr, ref, lr=lr, pairing="grid"))
    return pairs


_FINDERS = {"brats": _find_brats, "ixi": _find_ixi, "fastmri": _find_fastmri, "folder": _find_folder}


def data_roots(cfg: DataConfig) -> list[Path]:
    """The dataset root(s) of ``cfg.root`` (one path or a list)."""
    return [Path(r) for r in ([cfg.root] if isinstance(cfg.root, str) else cfg.root)]


def find_pairs(cfg: DataConfig, root: Path | None = None) -> list[PairSource]:
    """Every subject's pair in a dataset (all of its roots), sorted by root then subject id.

    Args:
        cfg: ``kind``, ``root``, contrasts, ``pairs_csv``, ``skip_incomplete``.
        root: folder to search instead of ``cfg.root``.
    """
    if cfg.kind not in _FINDERS:
        raise FasrError(f"unknown data.kind '{cfg.kind}'; choose one of {', '.join(_FINDERS)} or cache")
    pairs: list[PairSource] = []
    for folder in data_roots(cfg) if root is None else [Path(root)]:
        if not folder.is_dir():
            raise FasrError(
                f"dataset folder '{folder}' not found; check the path (data.root, --data, or SRC of fasr prepare)"
            )
        found = _FINDERS[cfg.kind](cfg, folder)
        if not found:
            raise FasrError(f"no {cfg.kind} subjects with '{cfg.target}' and '{cfg.reference}' found in '{folder}'")
        clash = sorted({p.subject for p in found} & {p.subject for p in pairs})
        if clash:
            raise FasrError(f"subject id(s) {clash[:3]} occur in several data.root folders; rename them in one")
        pairs += found
    return pairs


def split_pairs(pairs: list[PairSource], val: list[str], test: list[str]) -> dict[str, list[PairSource]]:
    """Split by subject: ``test`` and ``val`` as listed (``val`` empty: the last subject by id), the rest train.

    Args:
        pairs: all pairs, sorted by subject.
        val / test: held-out subject ids.
    """
    ids = [p.subject for p in pairs]
    unknown = sorted((set(val) | set(test)) - set(ids))
    if unknown:
        shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
        raise FasrError(f"unknown subject(s) {unknown} in data.val_subjects/test_subjects; subjects: {shown}")
    if set(val) & set(test):
        raise FasrError(f"subject(s) {sorted(set(val) & set(test))} are in both val and test; list each once")
    if not val:
        val = [s for s in ids if s not in test][-1:]
    return {
        "train": [p for p in pairs if p.subject not in val and p.subject not in test],
        "val": [p for p in pairs if p.subject in val],
        "test": [p for p in pairs if p.subject in test],
    }


def _pre_split(cfg: DataConfig) -> bool:
    """A folder dataset already split into ``<root>/train/``, ``<root>/val/``, ..."""
    return cfg.kind == "folder" and (data_roots(cfg)[0] / "train").is_dir()


def split_sources(cfg: DataConfig) -> dict[str, list[PairSource]]:
    """The pairs of every split (lists may be empty); a pre-split folder dataset uses ``<root>/<split>/``.

    Args:
        cfg: data config.
    """
    root = data_roots(cfg)[0]
    if _pre_split(cfg):
        splits = {split: find_pairs(cfg, root / split) if (root / split).is_dir() else [] for split in SPLITS}
    else:
        splits = split_pairs(find_pairs(cfg), cfg.val_subjects, cfg.test_subjects)
    if cfg.self_reference:  # ours: the target as its own reference, training only (see DataConfig)
        own = {(p.subject, p.target): replace(p, reference=p.target) for p in splits["train"]}
        splits["train"] = splits["train"] + list(own.values())
    return splits


def pairs_for_split(cfg: DataConfig, split: str) -> list[PairSource]:
    """The pairs of one split.

    Args:
        cfg: data config.
        split: ``train``, ``val`` or ``test``.

    Raises:
        FasrError: when the split is empty.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    chosen = split_sources(cfg)[split]
    if not chosen and _pre_split(cfg):
        raise FasrError(f"'{cfg.root}' is split into folders but has no '{split}/' slices; add {split}/hr and ref")
    if not chosen:
        hint = "data.test_subjects" if split == "test" else "data.val_subjects/test_subjects (fewer)"
        raise FasrError(f"split '{split}' of '{cfg.root}' has no subjects; set {hint}")
    return chosen
