"""``fasr bench thick``: through-plane super-resolution of thick-slice scans (ours).

On a held-out subject (``--split val`` by default; ``test`` once, for the model card) the 1 mm target volume
(T2) is made into a multi-slice acquisition along its slice axis (:func:`fasr.data.thick.thick_volume`: boxcar
slices of 3, 4 and 6 mm, exact affine) and brought back to the 1 mm grid by:

* ``cubic``: cubic B-spline interpolation through the affines (``scipy.ndimage``, what a viewer or a resampling
  tool does);
* ``no reference``: the same network given the interpolated scan itself as its reference (single-contrast: no
  information beyond the scan);
* ``true reference``: the whole inference job (``fasr infer``, registration included) with the subject's 1 mm T1;
* ``another subject``: the same with another subject's T1 (same atlas space);
* ``true reference, --adapt N``: fine-tuned first for N steps on the scan's own slices (``--adapt``, 0: row left
  out).

Scores: PSNR/SSIM on the 1 mm grid against the true volume (fastMRI convention over its axial slices) and the wall
time per volume.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from fasr.bench.reference import other_pairs
from fasr.checkpoint import load_model, resolve_device
from fasr.config import add_set_argument
from fasr.data.degrade import SliceProfile
from fasr.data.geometry import check_coverage, resample_to_grid
from fasr.data.io import read_volume
from fasr.data.layouts import pairs_for_split
from fasr.data.thick import thick_volume
from fasr.data.types import Volume
from fasr.errors import FasrError, UsageError
from fasr.inference.engine.stacks import Slicer
from fasr.inference.inputs import InputPair
from fasr.inference.plan import read_geometry
from fasr.inference.predict import LoadedModel, predict
from fasr.inference.simulate import score_methods
from fasr.models.config import is_through_plane
from fasr.provenance import provenance

__all__ = ["run_thick_bench", "add_arguments", "run"]

OUT_DIR = "benchmarks/results"
THICKNESSES = (3, 4, 6)


def _held_out(loaded: LoadedModel, split: str) -> tuple[Path, Path, Path]:
    """(target, reference, another subject's reference of the same contrast) of the split's first subject; the other
    subject is the first (validation ones first for the test split) whose scan covers the target's field of view in
    scanner space, as a patient's own scans do."""
    pairs = pairs_for_split(loaded.config.data, split)
    if not pairs:
        raise FasrError(f"no {split} subject in the checkpoint's data config; pass --set data.{split}_subjects=[ID]")
    pair = pairs[0]
    target = read_geometry(pair.target)
    for other in other_pairs(loaded.config, pair, split):  # same root and contrast, validation subjects first
        candidate = read_geometry(other.reference)
        try:
            check_coverage(candidate.shape, candidate.affine, target.shape, target.affine, str(other.reference),
                           str(pair.target))
        except FasrError:
            continue
        return pair.target, pair.reference, other.reference
    raise FasrError(f"no other subject's {pair.reference.name} covers '{pair.target}'; add one in the same space")


def run_thick_bench(
    checkpoint: str, *, split: str = "val", thicknesses: tuple[int, ...] = THICKNESSES, adapt: int = 0,
    overrides: tuple[str, ...] = (), device: str = "auto", batch_size: int = 4, log=print,
) -> dict[str, Any]:
    """Every row of the module docstring, per slice thickness, as a JSON-ready dict.

    Args:
        checkpoint: a through-plane model (file or shipped name).
        split: ``val`` or ``test``.
        thicknesses: slice thicknesses in reference voxels (1 mm).
        adapt: steps of the ``--adapt`` row (0: no such row).
        overrides: ``--set`` strings (data roots, subjects).
        device: where the model runs.
        batch_size: planes per forward pass.
        log: progress lines.
    """
    torch_device = resolve_device(device)
    model, cfg = load_model(checkpoint, torch_device, list(overrides))
    loaded = LoadedModel(model=model.eval(), config=cfg, label=str(checkpoint), path=Path(str(checkpoint)),
                         device=torch_device)
    if not is_through_plane(loaded.config.model):
        raise UsageError(f"'{checkpoint}' is an in-plane model; fasr bench thick takes a through-plane one")
    target_path, ref_path, wrong_path = _held_out(loaded, split)
    hr_full, ref, wrong = (read_volume(str(p)) for p in (target_path, ref_path, wrong_path))
    nominal = loaded.model.ref_degradation
    result: dict[str, Any] = {"checkpoint": checkpoint, "split": split, "subject": target_path.parent.name,
                              "target": target_path.name, "reference": ref_path.name,
                              "wrong_reference": f"{wrong_path.parent.name}/{wrong_path.name}",
                              "profile": nominal.profile, "convention": "fastmri", "thickness": {}}
    for t in thicknesses:
        profile = SliceProfile(t, nominal.profile, nominal.thickness)
        lr = thick_volume(hr_full, 2, profile)
        n = lr.data.shape[2] * t
        hr = np.ascontiguousarray(hr_full.data[:, :, :n])  # the field of view of the thick slices, 1 mm
        start = time.perf_counter()
        cubic = resample_to_grid(lr.data, lr.affine, hr.shape, hr_full.affine, order=3)
        outputs: dict[str, np.ndarray] = {"cubic": cubic}
        seconds = {"cubic": round(time.perf_counter() - start, 2)}
        runs = [("no reference", Volume(cubic, hr_full.affine, "<interpolated scan>"), "none", 0),
                ("true reference", ref, "rigid", 0), ("another subject", wrong, "rigid", 0)]
        if adapt:
            runs.append((f"true reference, --adapt {adapt}", ref, "rigid", adapt))
        for label, reference, register, steps in runs:
            prediction = predict(loaded, InputPair(lr, reference, np.dtype(np.float32)), simulate=False,
                                 batch_size=batch_size, progress=False, register=register,
                                 adapt=steps)
            grid = prediction.result.grid
            if grid.shape != hr.shape or not np.allclose(grid.affine, hr_full.affine, atol=1e-5):
                raise AssertionError(f"output grid {grid.shape} is not the 1 mm grid {hr.shape}")  # a geometry bug
            outputs[label] = prediction.result.sr
            seconds[label] = round(prediction.seconds, 2)
        scores = score_methods(hr, outputs, Slicer.for_grid(hr_full.affine, 2))
        result["thickness"][str(t)] = {
            label: {**{k: round(v, 4) for k, v in scores[label].items()}, "seconds": seconds[label]}
            for label in outputs
        }
        log(f"{t} mm: " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in result["thickness"][str(t)].items()))
    return result


def _machine(m: dict[str, Any]) -> str:
    return f"{m.get('cpu_model', '?')}, {m.get('threads', '?')} thread(s) of {m.get('cores', '?')} cores"


def _markdown(r: dict[str, Any]) -> str:
    rows = list(next(iter(r["thickness"].values())))
    lines = [
        f"# Thick-slice scans: through-plane x3-x6 ({r['split']} subject {r['subject']})", "",
        f"`{r['command']}` at commit {r.get('commit', '?')[:12]} on {_machine(r.get('machine', {}))}, "
        f"{r.get('date', '?')}.", "",
        f"Target {r['target']} averaged into {r['profile']} slices of each thickness (exact affine), reference "
        f"{r['reference']} (1 mm); another subject's: {r['wrong_reference']}. PSNR (dB) / SSIM on the 1 mm grid "
        "against the true volume (fastMRI convention), seconds per volume on this machine.", "",
        "| method | " + " | ".join(f"{t} mm" for t in r["thickness"]) + " |",
        "|---|" + "---|" * len(r["thickness"]),
    ]
    for row in rows:
        cells = [f"{v[row]['psnr']:.2f} / {v[row]['ssim']:.3f} ({v[row]['seconds']:.0f} s)"
                 for v in r["thickness"].values()]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "example: fasr bench thick --checkpoint brats-thick --adapt 50"
    parser.add_argument("--checkpoint", default="brats-thick", help="through-plane model (default brats-thick)")
    parser.add_argument("--split", choices=("val", "test"), default="val",
                        help="held-out subject: val (default; choices are made here) or test (once, for the card)")
    parser.add_argument("--thickness", default=",".join(map(str, THICKNESSES)),
                        help="comma-separated slice thicknesses in mm (1 mm reference; default 3,4,6)")
    parser.add_argument("--adapt", type=int, default=0, metavar="N", help="also the --adapt N row (0: not run)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out-dir", default=OUT_DIR, help="where thick.{json,md} go")
    parser.add_argument("--card", metavar="FILE", help="also write the 4 mm true-reference and cubic scores as a "
                        "model-card JSON ({fasr, bicubic}: the shipped model's listed scores)")
    add_set_argument(parser, "data.root=[../shared/data/brats]")


def run(args: argparse.Namespace) -> int:
    try:
        thicknesses = tuple(int(t) for t in args.thickness.split(","))
    except ValueError:
        raise UsageError(f"--thickness takes comma-separated whole millimetres, got '{args.thickness}'") from None
    made = provenance()
    result = run_thick_bench(args.checkpoint, split=args.split, thicknesses=thicknesses, adapt=args.adapt,
                             overrides=tuple(args.overrides), device=args.device)
    command = " ".join(["fasr bench thick", f"--checkpoint {args.checkpoint}"]
                       + ([f"--split {args.split}"] if args.split != "val" else [])
                       + ([f"--thickness {args.thickness}"] if thicknesses != THICKNESSES else [])
                       + ([f"--adapt {args.adapt}"] if args.adapt else []) + [f"--set {s}" for s in args.overrides])
    result.update({**made, "command": command})
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "thick.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "thick.md").write_text(_markdown(result))
    if args.card:
        if "4" not in result["thickness"]:
            raise UsageError("--card records the 4 mm row; include 4 in --thickness")
        rows = result["thickness"]["4"]
        card = {"fasr": rows["true reference"], "bicubic": rows["cubic"], "thickness_mm": 4,
                "note": "bicubic: cubic B-spline interpolation of the thick slices onto the 1 mm grid", **made,
                "command": command}
        Path(args.card).write_text(json.dumps(card, indent=2) + "\n")
    print(_markdown(result))
    return 0
