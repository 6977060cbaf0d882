"""``fasr bench reference``: does the reference count?

On the held-out subject(s) of a checkpoint's data config (``--split val`` by default, ``test`` once for the model
card; x scale, fastMRI convention) it measures two sections.

``scanner`` (:mod:`fasr.bench.acquisition`): the whole inference job on a k-space LR, with and without noise, with
the true reference, another subject's, and the true one moved by 0.5 mm / 0.5 deg, 1 / 1 and 2 / 2, each with and
without registration; PSNR beside cubic interpolation of the same LR.

``paper``: the paper's bicubic LR on 2-D slices (the model's Ref-down-up bicubic too):

* PSNR/SSIM with (a) the true reference, (b) another subject's reference of the same contrast (BraTS subjects
  share an atlas space, so it "covers" the target), (c) the true reference with its slices shuffled, (d) uniform
  noise, (e) the HR target itself (oracle);
* matching accuracy: the share of foreground queries whose 1/4-grid match lies within one cell (Chebyshev) of
  the true position, on registered pairs and under known shifts of the reference;
* confidence AUC: per-slice mean confidence over the brain, true vs wrong-subject reference (Mann-Whitney);
* the same five conditions for the network-free local fit (model ``guided``, of the checkpoint's
  ``model.guide_order``: bicubic plus the reference's missing band mapped into the target's contrast,
  :mod:`fasr.models.guided`), which shows how much each reference can say about the missing band without any
  learning;
* a misregistration curve: PSNR vs reference shift (x, pixels) and rotation (degrees) for the checkpoint and any
  ``--compare NAME=CKPT`` models (e.g. TTSR, MINet, MCSR, EDSR trained the same way).

Writes ``reference.json``, ``reference.md`` and ``reference.png`` to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fasr.bench.acquisition import run_scanner_conditions
from fasr.checkpoint import load_model, resolve_device
from fasr.config import RunConfig, add_set_argument
from fasr.data.augment import similarity_warp
from fasr.data.config import DegradationConfig
from fasr.data.datasets import PairedSliceDataset, VolumeSlices
from fasr.data.degrade import build_degradation
from fasr.data.layouts import PairSource, data_roots, find_pairs, pairs_for_split
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.data.samples import RawSlice, SampleMaker
from fasr.data.subjects import Subject, load_subject
from fasr.errors import FasrError, UsageError
from fasr.inference.predict import LoadedModel
from fasr.models import ModelConfig, build_model
from fasr.provenance import provenance
from fasr.scoring.volumes import predict_volumes, score_predictions, spread_indices

__all__ = [
    "CONDITIONS", "SECTIONS", "SHIFTS", "ROTATIONS", "run_reference_bench", "other_pairs", "matching_diagnostics",
    "add_arguments", "run",
]

CONDITIONS = ("true", "wrong_subject", "shuffled", "noise", "oracle")
SHIFTS = (0, 1, 2, 4, 8)  # reference shift along x, HR pixels
ROTATIONS = (2, 5)  # degrees
GUIDED_FIT = "guided"  # the network-free local fit (fasr/models/baselines/guided.py)
OUT_DIR = "benchmarks/results"  # default --out-dir
_FIT_KIND = {1: "linear", 2: "quadratic"}  # model.guide_order -> the network-free fit's name in the report
MATCH_SHIFTS = (0, 4, 8)  # shifts (HR pixels, both axes) at which matching accuracy is measured


class _Variant:
    """A held-out subject's slices with the reference replaced as a condition says (same slices for all).

    Args:
        source: the true pairs' slices.
        mode: one of :data:`CONDITIONS`, or ``warp`` (the true reference shifted/rotated).
        other: the wrong-subject reference stacks (with their pairs) by subject (``wrong_subject``).
        warp: (shift x px, shift y px, degrees) for ``warp``.
    """

    def __init__(self, source: VolumeSlices, mode: str, other: dict[str, tuple[Subject, PairSource]] | None = None,
                 warp: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> None:
        self.source, self.mode, self.other, self.warp = source, mode, other or {}, warp
        # ``shuffled``: each slice takes the reference of the slice half a volume away (same subject).
        by_subject: dict[str, list[int]] = {}
        for i, (subject, _) in enumerate(source.items()):
            by_subject.setdefault(subject, []).append(i)
        self.partner = {}
        for own in by_subject.values():
            self.partner.update({i: own[(n + len(own) // 2) % len(own)] for n, i in enumerate(own)})

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> RawSlice:
        raw = self.source[index]
        ref = raw.reference
        if self.mode == "wrong_subject":
            ref = self.other[raw.subject][0].reference[raw.slice_index].copy()
        elif self.mode == "shuffled":
            ref = self.source[self.partner[index]].reference
        elif self.mode == "noise":
            ref = np.random.default_rng(index).uniform(-1, 1, ref.shape).astype(np.float32)
        elif self.mode == "oracle":
            ref = raw.target.copy()
        elif self.mode == "warp" and any(self.warp):
            t = torch.from_numpy(ref)[None, None]
            shift = torch.tensor([[self.warp[0], self.warp[1]]], dtype=torch.float64)
            angle = torch.tensor([math.radians(self.warp[2])], dtype=torch.float64)
            ref = similarity_warp(t, shift, angle, torch.ones(1, dtype=torch.float64))[0, 0].numpy()
        return raw._replace(reference=ref)


def other_pairs(cfg: RunConfig, pair: PairSource, split: str) -> list[PairSource]:
    """Pairs of other subjects in ``pair``'s data root with the same reference contrast, in order of preference:
    for the test split the validation subjects first; for validation never a test subject."""
    root = next(r for r in data_roots(cfg.data) if pair.target.resolve().is_relative_to(r.resolve()))
    others = [p for p in find_pairs(cfg.data, root)
              if p.subject != pair.subject and p.reference.name == pair.reference.name]  # same contrast
    if split != "test":
        others = [p for p in others if p.subject not in cfg.data.test_subjects]
    if not others:
        raise FasrError(f"no other subject in '{root}' to take a wrong reference from; add one")
    return sorted(others, key=lambda p: p.subject not in cfg.data.val_subjects)


def _wrong_subjects(cfg: RunConfig, held_out: list[PairSource], split: str) -> dict[str, tuple[Subject, PairSource]]:
    """For each held-out pair, the same reference contrast of another subject in the same data root, on the
    held-out target's grid, with the pair it came from."""
    options = dict(percentiles=tuple(cfg.data.norm_percentiles), min_foreground=0.0, slice_key=cfg.data.slice_key)
    out = {}
    for pair in held_out:
        for candidate in other_pairs(cfg, pair, split):  # the first whose scan lies in the same scanner/atlas space
            try:
                subject = load_subject(PairSource(pair.subject, pair.target, candidate.reference), **options)
            except FasrError:
                continue
            out[pair.subject] = (subject, candidate)
            break
        else:
            raise FasrError(f"no other subject covers the field of view of '{pair.target}'")
    return out


def matching_diagnostics(
    model: nn.Module, dataset, indices: list[int], device: torch.device, shift: int = 0
) -> tuple[list[float], float | None]:
    """Per-slice mean confidence over the target's foreground, and the matching accuracy: the share of foreground
    queries matched within one 1/4-grid cell of the truth when the dataset's reference is shifted by ``shift`` HR
    pixels along both axes (a multiple of 4 moves the truth by ``shift / 4`` cells). Empty / None for models
    without a confidence map / matching."""
    confidences, hits, total = [], 0, 0
    m = getattr(model, "multiple", 4)  # the model pads to a multiple of its coarsest grid
    with torch.no_grad():
        for i in indices:
            s = dataset[i]
            out = model(s.lr[None].to(device), s.ref[None].to(device))
            if out.confidence is not None:
                mask = s.hr[None].to(device) > FOREGROUND_LEVEL
                confidences.append(float(out.confidence[mask].mean()) if mask.any() else 0.0)
            if not out.matches:
                continue
            index = next(iter(out.matches.values()))[0]  # (Nq,) of the first module (M-A when present)
            h, w = s.hr.shape[-2:]
            hq, wq = math.ceil(h / m) * m // 4, math.ceil(w / m) * m // 4
            fg = F.avg_pool2d((F.pad(s.hr[None], (0, -w % m, 0, -h % m), value=-1) > FOREGROUND_LEVEL).float(), 4)
            fg = fg.flatten().to(device) > 0.5  # (Nq,)
            q = torch.arange(hq * wq, device=device)
            dy = (index // wq) - (q // wq + shift // 4)
            dx = (index % wq) - (q % wq + shift // 4)
            ok = (dy.abs() <= 1) & (dx.abs() <= 1)
            hits, total = hits + int(ok[fg].sum()), total + int(fg.sum())
    return confidences, (hits / total if total else None)


def _auc(positive: list[float], negative: list[float]) -> float | None:
    """P(positive > negative) + 0.5 P(equal): the ROC AUC of separating the two sets."""
    if not positive or not negative:
        return None
    p, n = np.asarray(positive)[:, None], np.asarray(negative)[None, :]
    return float((p > n).mean() + 0.5 * (p == n).mean())


def _score(models: dict[str, nn.Module], dataset, indices: list[int], device: torch.device) -> dict[str, Any]:
    volumes = predict_volumes(models, dataset, indices, batch_size=4, device=device)
    scores = score_predictions(volumes, "fastmri")
    return {m: {"psnr": scores[m]["psnr"], "ssim": scores[m]["ssim"]} for m in scores["methods"]}


SECTIONS = ("paper", "scanner")


def run_reference_bench(
    checkpoint: str, compare: dict[str, str], *, overrides: list[str], max_slices: int, device: torch.device,
    data: str | None = None, split: str = "val", sections: tuple[str, ...] = SECTIONS, slab: int = 40,
    snr: float = 30.0, log=print,
) -> dict[str, Any]:
    """Every measurement of the module docstring, as a JSON-ready dict.

    Args:
        checkpoint: the model under test (file or shipped name).
        compare: other models for the misregistration curve, name -> checkpoint.
        overrides: ``--set`` strings for the checkpoint's config (data and inference-only model fields).
        max_slices: evenly spaced slices per held-out subject (``paper`` section).
        device: where models run.
        data: dataset root replacing the config's ``data.root``.
        split: ``val`` (default: choices are made here) or ``test`` (scored once, for the model card).
        sections: ``paper`` (the paper's bicubic LR, 2-D slices: conditions, matching, confidence, misregistration
            curve) and/or ``scanner`` (:mod:`fasr.bench.acquisition`: k-space LR, noise, moved and registered
            references through the whole inference job).
        slab: central slices of the target volume in the ``scanner`` section (0: all).
        snr: SNR of its noisy condition.
        log: progress lines.
    """
    sets = list(overrides) + ([f"data.root={data}"] if data else [])
    model, cfg = load_model(checkpoint, device, sets)
    if split not in ("val", "test"):
        raise UsageError(f"--split must be val or test, got '{split}'")
    subjects = cfg.data.test_subjects if split == "test" else cfg.data.val_subjects
    if not subjects:
        raise FasrError(f"the checkpoint's config names no {split} subjects; pass --set data.{split}_subjects=[ID]")
    pairs = pairs_for_split(cfg.data, split)
    # One pair per subject: the first reference contrast of the config (``reference: t1,t1c,flair`` -> t1).
    held_out = [p for p in pairs if p.reference.name == pairs[0].reference.name]
    wrong = _wrong_subjects(cfg, held_out, split)
    result: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": cfg.model.name, "scale": cfg.model.scale, "split": split,
        "subjects": sorted({p.subject for p in held_out}), "reference_contrast": held_out[0].reference.name,
        "convention": "fastmri", "ref_degradation": cfg.model.ref_degradation,
    }
    log(f"held-out {split} subject(s) {result['subjects']}, x{cfg.model.scale}")
    if "scanner" in sections:
        loaded = LoadedModel(model=model.eval(), config=cfg, label=str(checkpoint), path=Path(str(checkpoint)),
                             device=device)
        result["scanner"] = {
            pair.subject: run_scanner_conditions(
                loaded, str(pair.target), str(pair.reference), str(wrong[pair.subject][1].reference), slices=slab,
                snr=snr, log=log,
            )
            for pair in held_out
        }
    if "paper" in sections:
        # The paper's LR is bicubic, and a model is told so: its Ref-down-up is bicubic here too.
        paper_model, paper_cfg = load_model(checkpoint, device, [*sets, "model.ref_degradation=bicubic"])
        result.update(_paper_conditions(paper_model, paper_cfg, held_out, wrong, compare, sets, max_slices, device,
                                        log))
    return result


def _paper_conditions(
    model: nn.Module, cfg: RunConfig, held_out: list[PairSource], wrong: dict[str, tuple[Subject, PairSource]],
    compare: dict[str, str], sets: list[str], max_slices: int, device: torch.device, log,
) -> dict[str, Any]:
    """The ``paper`` section: bicubic LR of 2-D slices, registered references and the conditions a-e."""
    source = VolumeSlices(held_out, percentiles=tuple(cfg.data.norm_percentiles),
                          min_foreground=cfg.data.min_foreground, slice_key=cfg.data.slice_key, slice_step=1,
                          cache_size=max(8, len(held_out)))
    scale = cfg.model.scale
    paper = DegradationConfig(kind="bicubic")
    maker_cfg = replace(cfg.data, misalign=(0.0, 0.0, 0.0), motion=(0.0, 0.0), degradation=paper)
    maker = SampleMaker.from_config(maker_cfg, scale, False, build_degradation(paper))
    indices = spread_indices(len(source), max_slices)
    name = cfg.model.name
    models = {name: model}
    for other, path in compare.items():
        models[other] = load_model(path, device, [s for s in sets if not s.startswith("model.")])[0]

    def dataset(mode: str, **kw) -> PairedSliceDataset:
        return PairedSliceDataset(_Variant(source, mode, **kw), maker)

    log(f"paper section: bicubic LR, {len(indices)} slices")
    fit = build_model(ModelConfig(name=GUIDED_FIT, scale=scale, ref_degradation="bicubic",
                                  guide_order=cfg.model.guide_order)).to(device)
    conditions = {}
    for mode in CONDITIONS:
        conditions[mode] = _score({name: model, GUIDED_FIT: fit}, dataset(mode, other=wrong), indices, device)
        log(f"{mode}: {conditions[mode][name]['psnr']:.2f} dB (network-free fit "
            f"{conditions[mode][GUIDED_FIT]['psnr']:.2f})")
    bicubic = conditions["true"]["bicubic"]
    accuracy, conf_true = {}, []
    for s in MATCH_SHIFTS:  # the true reference, shifted
        warped = dataset("warp", warp=(s, s, 0.0))
        confidences, accuracy[str(s)] = matching_diagnostics(model, warped, indices, device, s)
        if s == 0:
            conf_true = confidences
    conf_wrong, _ = matching_diagnostics(model, dataset("wrong_subject", other=wrong), indices, device)
    conf_shuffled, _ = matching_diagnostics(model, dataset("shuffled"), indices, device)
    curve: dict[str, dict[str, float]] = {m: {} for m in models}
    for label, warp in [*((f"shift {s} px", (float(s), 0.0, 0.0)) for s in SHIFTS),
                        *((f"rotation {r} deg", (0.0, 0.0, float(r))) for r in ROTATIONS)]:
        scores = _score(models, dataset("warp", warp=warp), indices, device)
        for m in models:
            curve[m][label] = scores[m]["psnr"]
        log(f"{label}: " + ", ".join(f"{m} {curve[m][label]:.2f}" for m in models))
    true_psnr, wrong_psnr = conditions["true"][name]["psnr"], conditions["wrong_subject"][name]["psnr"]
    gain = true_psnr - wrong_psnr
    return {
        "slices": len(indices),
        "bicubic": bicubic,
        "conditions": {m: conditions[m][name] for m in CONDITIONS},
        "network_free_fit": {m: conditions[m][GUIDED_FIT] for m in CONDITIONS},
        "network_free_fit_order": cfg.model.guide_order,
        "true_minus_wrong_db": gain,
        "oracle_minus_wrong_db": conditions["oracle"][name]["psnr"] - wrong_psnr,
        "matching_accuracy": accuracy,
        "confidence": {
            "mean_true": float(np.mean(conf_true)) if conf_true else None,
            "mean_wrong_subject": float(np.mean(conf_wrong)) if conf_wrong else None,
            "mean_shuffled": float(np.mean(conf_shuffled)) if conf_shuffled else None,
            "auc_true_vs_wrong_subject": _auc(conf_true, conf_wrong),
            "auc_true_vs_shuffled": _auc(conf_true, conf_shuffled),
        },
        "misregistration_psnr": curve,
        "gain_kept_at_4px": ((curve[name]["shift 4 px"] - wrong_psnr) / gain) if gain > 0 else None,
    }


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _scanner_markdown(subject: str, r: dict[str, Any]) -> list[str]:
    """The ``scanner`` section's table for one subject, with each condition's gain over cubic interpolation and
    the share of the registered reference's gain it keeps."""
    rows = r["conditions"]
    exact = next(iter(rows.values()))  # "true, registered affines": the reference gain every other row is held to
    exact_gain = exact["psnr"] - exact["cubic_psnr"]
    lines = [
        f"### {subject}: k-space LR, {r['slices']}-slice slab",
        "",
        "| LR / reference | PSNR (dB) | SSIM | cubic interpolation (dB) | gain over cubic (dB) | share of the "
        "registered gain | registration residual (deg / mm) | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, row in rows.items():
        gain = row["psnr"] - row["cubic_psnr"]
        reg = row.get("registration") or {}
        residual = f"{reg['residual_deg']:.2f} / {reg['residual_mm']:.2f}" if "residual_deg" in reg else "-"
        share = f"{gain / exact_gain:.0%}" if exact_gain > 0 and row["noise"] == "none" else "-"
        lines.append(f"| {label} | {row['psnr']:.2f} | {row['ssim']:.4f} | {row['cubic_psnr']:.2f} | {gain:+.2f} | "
                     f"{share} | {residual} | {row['seconds']:.1f} |")
    noisy = [row for row in rows.values() if row["noise"] != "none"]
    lines += ["", f"Noise: Rician, SNR {r['snr']:g} (mean foreground over sigma)." if noisy else "", ""]
    return lines


def _markdown(r: dict[str, Any], command: str) -> str:
    lines = [
        f"# Does the reference count? (`{r['checkpoint']}`, x{r['scale']}, {r['split']} subject(s) "
        f"{', '.join(r['subjects'])}, reference {r['reference_contrast']}, fastMRI convention)",
        "",
        f"Command: `{command}`",
        "",
    ]
    if "scanner" in r:
        lines += [
            "## Scans as scanners make them",
            "",
            "The whole inference job (`fasr infer --simulate-from`) per condition: the LR is a centre crop of "
            "k-space (same field of view), the reference the subject's own volume (or another subject's), moved "
            "by a rigid motion about an oblique axis where stated, and registered unless `--register none`. The "
            f"model makes its Ref-down-up with `{r.get('ref_degradation', '?')}`.",
            "",
        ]
        for subject, section in r["scanner"].items():
            lines += _scanner_markdown(subject, section)
    if "conditions" in r:
        lines += _paper_markdown(r)
    return "\n".join(lines)


def _paper_markdown(r: dict[str, Any]) -> list[str]:
    conf, acc = r["confidence"], r["matching_accuracy"]
    fit = r.get("network_free_fit")  # absent from reports written before it existed
    rows = [f"| ({chr(97 + i)}) {c.replace('_', ' ')} | {r['conditions'][c]['psnr']:.2f} | "
            f"{r['conditions'][c]['ssim']:.4f} |" + (f" {fit[c]['psnr']:.2f} |" if fit else "")
            for i, c in enumerate(CONDITIONS)]
    curve = r["misregistration_psnr"]
    labels = list(next(iter(curve.values())))
    return [
        f"## The paper's setting: bicubic LR, registered 2-D slices ({r['slices']} slices)",
        "",
        "| reference | PSNR (dB) | SSIM |" + (" network-free fit PSNR (dB) |" if fit else ""),
        "|---|---|---|" + ("---|" if fit else ""),
        *rows,
        f"| bicubic (no reference) | {r['bicubic']['psnr']:.2f} | {r['bicubic']['ssim']:.4f} |"
        + (f" {r['bicubic']['psnr']:.2f} |" if fit else ""),
        "",
        f"True minus wrong subject: {r['true_minus_wrong_db']:+.2f} dB; oracle minus wrong subject: "
        f"{r['oracle_minus_wrong_db']:+.2f} dB.",
        *(["", "Network-free fit: bicubic plus the reference's missing band mapped into the target's contrast in "
            f"5x5 windows ({_FIT_KIND.get(r.get('network_free_fit_order', 1))}, model `guided`, no training, "
            "no matching)."] if fit else []),
        "",
        "Matching accuracy (foreground queries within one 1/4-grid cell of the true position): "
        + ", ".join(f"shift {s} px {_fmt(v)}" for s, v in acc.items()) + ".",
        "",
        f"Mean confidence: true {_fmt(conf['mean_true'])}, wrong subject {_fmt(conf['mean_wrong_subject'])}, "
        f"shuffled {_fmt(conf['mean_shuffled'])}; per-slice AUC true vs wrong subject "
        f"{_fmt(conf['auc_true_vs_wrong_subject'])}, true vs shuffled {_fmt(conf['auc_true_vs_shuffled'])}.",
        "",
        "### Misregistration (PSNR, dB)",
        "",
        "| model | " + " | ".join(labels) + " |",
        "|---|" + "---|" * len(labels),
        *(f"| {m} | " + " | ".join(f"{v:.2f}" for v in row.values()) + " |" for m, row in curve.items()),
        "",
        f"Reference gain (true minus wrong subject) kept at a 4 px shift: {_fmt(r['gain_kept_at_4px'])}.",
        "",
    ]


def _figure(r: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(CONDITIONS)
    a.bar(range(len(names)), [r["conditions"][c]["psnr"] for c in names], color="tab:blue")
    a.axhline(r["bicubic"]["psnr"], color="gray", ls="--", label="bicubic")
    a.set_xticks(range(len(names)), [n.replace("_", "\n") for n in names])
    a.set_ylabel("PSNR (dB)")
    a.set_ylim(min(r["bicubic"]["psnr"], *(r["conditions"][c]["psnr"] for c in names)) - 1, None)
    a.legend()
    a.set_title("reference condition")
    for m, row in r["misregistration_psnr"].items():
        b.plot(range(len(row)), list(row.values()), marker="o", label=m)
    labels = list(next(iter(r["misregistration_psnr"].values())))
    b.set_xticks(range(len(labels)), [lab.replace(" px", "px").replace(" deg", "°") for lab in labels], rotation=30)
    b.set_ylabel("PSNR (dB)")
    b.set_title("misregistered reference")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "example: fasr bench reference --checkpoint brats-x4 --compare ttsr=runs/ttsr/best.pt"
    parser.add_argument("--checkpoint", required=True, help="model under test (file or shipped name)")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=CKPT",
                        help="another model for the misregistration curve (repeatable)")
    parser.add_argument("--data", metavar="ROOT", help="dataset root (overrides data.root of the checkpoint)")
    parser.add_argument("--max-slices", type=int, default=32,
                        help="evenly spaced slices per held-out subject (paper section)")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="held-out subject(s): val (default; choices are made here) or test (once, for the card)")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated: paper (bicubic LR, 2-D slices), scanner (k-space LR, motion, "
                        "registration; whole volumes through fasr infer's job); default both")
    parser.add_argument("--slab", type=int, default=40, help="central slices of the target in the scanner section "
                        "(0: all; default 40)")
    parser.add_argument("--snr", type=float, default=30.0, help="SNR of the scanner section's noisy LR (default 30)")
    parser.add_argument("--quick", action="store_true", help="4 slices (a smoke test)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out-dir", default=OUT_DIR, help="where reference.{json,md,png} go")
    parser.add_argument("--json", help="also write the JSON here")
    add_set_argument(parser, "model.search_window=16")


def run(args: argparse.Namespace) -> int:
    compare = {}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--compare expects NAME=CKPT, got '{item}'")
        compare[name] = path
    sections = tuple(part.strip() for part in args.sections.split(",") if part.strip())
    if not sections or any(part not in SECTIONS for part in sections):
        raise UsageError(f"--sections takes a comma-separated list of {', '.join(SECTIONS)}, got '{args.sections}'")
    made = provenance()  # the commit the run starts from
    result = run_reference_bench(
        args.checkpoint, compare, overrides=args.overrides, max_slices=4 if args.quick else args.max_slices,
        device=resolve_device(args.device), data=args.data, split=args.split, sections=sections,
        slab=4 if args.quick else args.slab, snr=args.snr,
    )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    command = "fasr bench reference " + " ".join(
        [f"--checkpoint {args.checkpoint}", *(f"--compare {c}" for c in args.compare)]
        + (["--quick"] if args.quick else [f"--max-slices {args.max_slices}"]) + [f"--set {s}" for s in args.overrides]
        + ([f"--out-dir {args.out_dir}"] if args.out_dir != OUT_DIR else [])
        + ([f"--split {args.split}"] if args.split != "val" else [])
        + ([f"--sections {','.join(sections)}"] if sections != SECTIONS else [])
        + ([f"--slab {args.slab}"] if args.slab != 40 and not args.quick else [])
        + ([f"--snr {args.snr:g}"] if args.snr != 30.0 else [])
    )
    result.update({**made, "command": command})
    text = json.dumps(result, indent=2)
    (out / "reference.json").write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(text + "\n")
    (out / "reference.md").write_text(_markdown(result, command))
    if "conditions" in result:
        _figure(result, out / "reference.png")
    print(_markdown(result, command))
    return 0
