"""``fasr bench qa``: calibrate the reference QA of :mod:`fasr.inference.qa` on co-registered subjects.

For every subject folder of every dataset folder under ``--data`` (e.g. ``brats/<subject>/``, ``openms/<subject>/``)
and every pairing (target <- reference: T2 <- T1, T1c, FLAIR; FLAIR <- T2), the target is degraded in-plane by
``--scale`` (k-space truncation of the same field of view, no noise: the LR a scanner makes) and scored against

* ``true``: its own subject's reference (registered: these volumes share one space);
* ``other-patient``: the same contrast of every other subject of the same dataset (same atlas space, so the
  coverage check passes); pairs the coverage check would already refuse are counted apart;
* ``shift-5mm`` / ``shift-10mm``: its own reference moved by 5 or 10 mm along each world axis.

``--register rigid`` (the default, as ``fasr infer``) scores each reference as inference would use it: registered
to the LR first (:func:`fasr.inference.predict.register_reference`). A shifted reference of the same patient is
then brought back, so it is no longer a wrong pair: its rate says how often a moved same-patient scan is still
flagged, and the threshold is chosen on true pairs against other patients. ``--register none`` scores the headers'
placement, where shifted pairs are wrong pairs.

Reported: per kind, how many pairs the QA flags at the threshold (true-positive rate for the wrong kinds,
false-alarm rate for ``true``), the same over a sweep of thresholds, every pair's scores, and a leave-one-subject-out
cross-validation (:func:`cross_validate`): for each subject the threshold is chosen on the pairs of the other
subjects only and applied to its own, so the rates it reports are out of sample. ``--scores FILE`` re-uses the
pairs of an earlier run's JSON instead of scoring them again.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fasr.data.degrade import KSpace
from fasr.data.geometry import check_coverage
from fasr.data.io import read_volume
from fasr.data.types import Volume
from fasr.errors import FasrError
from fasr.inference.engine.volumes import MIN_COVERAGE
from fasr.inference.options import REGISTRATIONS
from fasr.inference.predict import register_reference
from fasr.inference.qa import ALIGNMENT_THRESHOLD, reference_qa
from fasr.inference.simulate import simulate_lr
from fasr.provenance import provenance

__all__ = ["PAIRINGS", "SHIFTS_MM", "add_arguments", "run", "calibrate", "rates", "choose_threshold", "cross_validate"]

PAIRINGS = (("t2", "t1"), ("t2", "t1c"), ("t2", "flair"), ("flair", "t2"))  # (target, reference) contrasts
SHIFTS_MM = (5.0, 10.0)
KINDS = ("true", "other-patient", *(f"shift-{s:g}mm" for s in SHIFTS_MM))
SWEEP = tuple(round(t, 2) for t in np.arange(0.1, 0.55, 0.05))
CANDIDATES = tuple(round(t, 2) for t in np.arange(0.05, 0.61, 0.01))  # thresholds the cross-validation picks from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder of dataset folders")
    parser.add_argument("--scale", type=int, default=4, help="in-plane degradation factor of the LR")
    parser.add_argument("--json", type=Path, help="write every pair's scores and the rates here")
    parser.add_argument("--scores", type=Path, help="re-use the pairs of an earlier --json instead of scoring again")
    parser.add_argument("--register", choices=REGISTRATIONS, default="rigid",
                        help="register each reference to its LR before the QA, as fasr infer does (default rigid)")


def _subjects(root: Path, pairings: tuple[tuple[str, str], ...]) -> Iterator[tuple[str, list[Path]]]:
    """(dataset name, its subject folders holding every contrast of ``pairings``)."""
    contrasts = {c for pairing in pairings for c in pairing}
    for dataset in sorted(p for p in root.iterdir() if p.is_dir()):
        subjects = [s for s in sorted(dataset.iterdir()) if all((s / f"{c}.nii.gz").is_file() for c in contrasts)]
        if len(subjects) >= 2:
            yield dataset.name, subjects


def _shifted(ref: Volume, offset_mm: np.ndarray) -> Volume:
    affine = ref.affine.copy()
    affine[:3, 3] += offset_mm
    return Volume(data=ref.data, affine=affine, path=ref.path)


def _row(kind: str, lr: Volume, ref: Volume, threshold: float, register: str, inplane_axes: tuple[int, int],
         scale: int, **fields: Any) -> dict[str, Any]:
    registration = None
    if register == "rigid":
        try:
            fit, ref, _ = register_reference(lr, ref, scale, inplane_axes, KSpace())
        except FasrError as error:  # refused first (coverage), as inference would: counted apart, like other patients
            return {"kind": kind, **fields, "register": register, "alignment": None, "refused": str(error)}
        registration = None if fit is None else {
            "applied": fit.applied, "rotation_deg": round(fit.rotation_deg, 3),
            "centre_shift_mm": round(fit.centre_shift_mm, 3),
        }
    qa = reference_qa(lr, ref, threshold)
    return {"kind": kind, **fields, "register": register, "registration": registration, **qa.to_dict()}


def calibrate(
    root: Path, scale: int, threshold: float = ALIGNMENT_THRESHOLD, register: str = "rigid",
    pairings: tuple[tuple[str, str], ...] = PAIRINGS,
) -> list[dict[str, Any]]:
    """Score every pair described in the module docstring.

    Args:
        root: folder of dataset folders of co-registered subjects.
        scale: in-plane degradation factor.
        threshold: QA threshold (only recorded; :func:`rates` applies thresholds).
        register: ``rigid`` to register each reference to its LR first (as inference does), or ``none``.
        pairings: (target, reference) contrasts to score.

    Returns:
        One row per pair: kind, dataset, subjects, contrasts, shift, register, registration (fit or None), nmi,
        nmi_shifted, alignment, coverage.
    """
    rows: list[dict[str, Any]] = []
    for dataset, subjects in _subjects(root, pairings):
        lrs: dict[tuple[str, str], tuple[Volume, tuple[int, int]]] = {}
        for subject in subjects:
            for target in sorted({t for t, _ in pairings}):
                hr = read_volume(subject / f"{target}.nii.gz")
                simulation = simulate_lr(
                    hr, hr.affine, scale, KSpace(), noise="none", snr=30.0, norm_percentiles=(0.5, 99.5), seed=0
                )
                lrs[subject.name, target] = simulation.lr, simulation.inplane_axes
        for ref_subject in subjects:
            for reference in sorted({r for _, r in pairings}):
                ref = read_volume(ref_subject / f"{reference}.nii.gz")
                for target in (t for t, r in pairings if r == reference):
                    for subject in subjects:
                        lr, inplane_axes = lrs[subject.name, target]
                        names = {
                            "dataset": dataset,
                            "subject": subject.name,
                            "target": target,
                            "reference_subject": ref_subject.name,
                            "reference": reference,
                        }
                        score = functools.partial(_row, threshold=threshold, register=register,
                                                  inplane_axes=inplane_axes, scale=scale)
                        if subject != ref_subject:
                            coverage = check_coverage(
                                ref.data.shape, ref.affine, lr.data.shape, lr.affine, ref.path, lr.path, 0.0
                            )
                            if coverage < MIN_COVERAGE:
                                rows.append({"kind": "other-patient", **names, "register": register,
                                             "coverage": coverage, "alignment": None})
                                continue
                            rows.append(score("other-patient", lr, ref, **names, coverage=coverage))
                            continue
                        rows.append(score("true", lr, ref, **names, coverage=1.0))
                        for shift in SHIFTS_MM:
                            for axis in range(3):
                                offset = np.zeros(3)
                                offset[axis] = shift
                                rows.append(
                                    score(f"shift-{shift:g}mm", lr, _shifted(ref, offset), **names,
                                          shift_mm=offset.tolist())
                                )
                print(f"{dataset}/{ref_subject.name} {reference}: {len(rows)} pairs", flush=True)
    return rows


def rates(rows: list[dict[str, Any]], threshold: float) -> dict[str, dict[str, Any]]:
    """Per kind: pairs scored by the QA, how many it flags at ``threshold`` (or at the chance level of mutual
    information) and the rate; pairs the coverage check refuses first are counted in ``refused_by_coverage``."""
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        measured = [r for r in rows if r["kind"] == kind and r["alignment"] is not None]
        scored = [r["alignment"] for r in measured]
        flagged = int(sum(_flagged(r, threshold) for r in measured))
        out[kind] = {
            "pairs": len(scored),
            "flagged": flagged,
            "rate": flagged / len(scored) if scored else None,
            "refused_by_coverage": sum(r["kind"] == kind and r["alignment"] is None for r in rows),
            "alignment_range": [min(scored), max(scored)] if scored else None,
        }
    return out


def _wrong(row: dict[str, Any]) -> bool:
    """Whether the QA should flag ``row``: another patient, or a shifted reference left where its header put it (a
    registered one is the same patient brought back)."""
    return row["kind"] == "other-patient" or (row["kind"] != "true" and row.get("register", "none") == "none")


def _flagged(row: dict[str, Any], threshold: float) -> bool:
    return row["alignment"] < threshold or row["mutual_information"] < row["chance_level"]


def choose_threshold(rows: list[dict[str, Any]]) -> float:
    """The candidate threshold with the best balanced accuracy on ``rows``: the mean of the share of true pairs
    passed and the share of wrong pairs (other patients; shifted references where none was registered) flagged;
    ties go to the lowest threshold (fewer false alarms)."""
    scored = [r for r in rows if r["alignment"] is not None]
    true = [r for r in scored if r["kind"] == "true"]
    wrong = [r for r in scored if _wrong(r)]
    if not true or not wrong:
        raise FasrError("choosing a threshold needs both true and wrong pairs")

    def balanced(t: float) -> float:
        return (np.mean([not _flagged(r, t) for r in true]) + np.mean([_flagged(r, t) for r in wrong])) / 2

    return float(max(CANDIDATES, key=lambda t: (balanced(t), -t)))


def cross_validate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Leave-one-subject-out: the threshold for each subject's pairs (the LR's subject) is chosen on the pairs
    that involve neither that subject's LR nor its reference; the out-of-sample rates pool every fold's verdicts."""
    subjects = sorted({r["subject"] for r in rows})
    verdicts: list[dict[str, Any]] = []
    folds = {}
    for subject in subjects:
        train = [r for r in rows if subject not in (r["subject"], r["reference_subject"])]
        try:
            threshold = choose_threshold(train)
        except FasrError:  # the other subjects give no true or no wrong pair: this subject is not judged
            folds[subject] = None
            continue
        folds[subject] = threshold
        verdicts += [{**r, "flagged_out_of_sample": _flagged(r, threshold)}
                     for r in rows if r["subject"] == subject and r["alignment"] is not None]
    out_of_sample = {}
    for kind in KINDS:
        own = [v for v in verdicts if v["kind"] == kind]
        flagged = int(sum(v["flagged_out_of_sample"] for v in own))
        out_of_sample[kind] = {"pairs": len(own), "flagged": flagged, "rate": flagged / len(own) if own else None}
    try:
        on_all = choose_threshold(rows)
    except FasrError:
        on_all = None
    return {"thresholds_per_fold": folds, "out_of_sample": out_of_sample, "chosen_on_all": on_all}


def _registrations(rows: list[dict[str, Any]]) -> list[str]:
    """The ``register`` settings of the scored pairs (a refused pair never reached the QA)."""
    return sorted({r.get("register", "none") for r in rows if r["alignment"] is not None})


def run(args: argparse.Namespace) -> int:
    if not args.data.is_dir():
        raise FasrError(f"--data '{args.data}' is not a folder; give the folder of dataset folders (../shared/data)")
    if args.json is not None and args.json.exists():
        raise FasrError(f"'{args.json}' already exists; remove it or choose another --json path")
    start = time.perf_counter()
    made = provenance()  # the commit the run starts from
    if args.scores is not None:
        rows = json.loads(args.scores.read_text())["pairs"]
    else:
        rows = calibrate(args.data, args.scale, register=args.register)
    if not rows:
        contrasts = sorted({c for pairing in PAIRINGS for c in pairing})
        raise FasrError(f"no dataset folder under '{args.data}' holds two subjects with {contrasts}; check --data")
    summary = rates(rows, ALIGNMENT_THRESHOLD)
    registrations = _registrations(rows)
    placement = ("registered to the LR first: shifted pairs are the same patient" if registrations == ["rigid"]
                 else "as the headers place them")
    lines = [f"threshold {ALIGNMENT_THRESHOLD} (x{args.scale}, references {placement}):",
             "| kind | pairs | flagged | rate | alignment |",
             "|---|---|---|---|---|"]
    for kind, r in summary.items():
        low_high = r["alignment_range"]
        span = "-" if low_high is None else f"{low_high[0]:.2f} .. {low_high[1]:.2f}"
        rate = "-" if r["rate"] is None else f"{r['rate']:.0%}"
        lines.append(f"| {kind} | {r['pairs']} | {r['flagged']} | {rate} | {span} |")
    validation = cross_validate(rows)
    per_fold = sorted({t for t in validation["thresholds_per_fold"].values() if t is not None})
    on_all = "-" if validation["chosen_on_all"] is None else f"{validation['chosen_on_all']:.2f}"
    lines += ["", f"leave-one-subject-out (threshold chosen without the subject; all pairs: {on_all}; "
              f"per fold {per_fold}):",
              "| kind | pairs | flagged out of sample | rate |", "|---|---|---|---|"]
    for kind, r in validation["out_of_sample"].items():
        rate = "-" if r["rate"] is None else f"{r['rate']:.0%}"
        lines.append(f"| {kind} | {r['pairs']} | {r['flagged']} | {rate} |")
    print("\n".join(lines))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            **made,
            "command": f"fasr bench qa --data {args.data} --scale {args.scale}"
            + (f" --scores {args.scores}" if args.scores is not None else f" --register {args.register}"),
            "scale": args.scale,
            "register": registrations,
            "threshold": ALIGNMENT_THRESHOLD,
            "rates": summary,
            "sweep": {str(t): {k: v["rate"] for k, v in rates(rows, t).items()} for t in SWEEP},
            "cross_validation": validation,
            "seconds": round(time.perf_counter() - start, 1),
            "pairs": rows,
        }
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0
