"""One inference job, shared by the Python API, ``fasr infer`` and ``fasr demo``: load the checkpoint, simulate
the LR when asked, super-resolve, score against the ground truth when simulated, build and write the results.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from torch import nn

from fasr import __version__
from fasr.checkpoint import INFERENCE_FIELDS, load_model, model_from_state
from fasr.config import RunConfig, to_dict
from fasr.data.config import DegradationConfig
from fasr.data.degrade import Degradation, build_degradation
from fasr.data.geometry import resample_to_grid
from fasr.data.normalize import intensity_floor, robust_stats
from fasr.data.thick import along_axis
from fasr.data.types import Volume
from fasr.errors import FasrError, UsageError
from fasr.inference.engine.slices import RunSettings
from fasr.inference.engine.stacks import Slicer
from fasr.inference.engine.volumes import (
    MIN_COVERAGE,
    InferenceResult,
    reference_coverage,
    super_resolve_thick,
    super_resolve_volume,
)
from fasr.inference.grid import voxel_sizes
from fasr.inference.inputs import InputPair
from fasr.inference.output import cast_like, nifti_image, save_nifti, sidecar_path, write_json
from fasr.inference.plan import CheckpointFile, check_thick_task, thick_profile, volume_geometry
from fasr.inference.qa import ReferenceQA, check_reference, mean_confidence, reference_qa
from fasr.inference.register import (
    MAX_ROTATION_DEG,
    MAX_SHIFT_MM,
    REGISTRATIONS,
    Registration,
    local_agreement,
    register_rigid,
    registered_volume,
    registration_problem,
)
from fasr.inference.simulate import Simulation, bicubic_volume, score_methods, simulate_lr
from fasr.models.config import ModelConfig, is_through_plane
from fasr.pretrained import PRETRAINED, resolve_checkpoint

__all__ = [
    "LoadedModel",
    "Prediction",
    "load_for_inference",
    "check_adapt",
    "predict",
    "register_reference",
    "prediction_images",
    "sidecar_record",
    "write_prediction",
    "metrics_table",
]


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for inference.

    Attributes:
        model: in eval mode on ``device``.
        config: the run config stored in the checkpoint.
        label: short name for headers: the registry name, or the checkpoint's file name.
        path: the checkpoint file.
        device: where it runs.
        precision: ``fp32``, ``bf16`` or ``auto`` (``fasr infer --precision``; matching is fp32 always).
        max_memory_gib: peak memory budget (``--max-memory-gib``); None = from the machine.
    """

    model: nn.Module
    config: RunConfig
    label: str
    path: Path
    device: torch.device
    precision: str = "fp32"
    max_memory_gib: float | None = None

    @property
    def scale(self) -> int:
        return int(self.config.model.scale)


@dataclass(frozen=True)
class Prediction:
    """Result of :func:`predict`.

    Attributes:
        result: the super-resolved volume and its grid.
        lr: the LR target that was super-resolved (read, or simulated).
        simulation: the ground truth and LR when simulated, else None.
        degradation: how the LR was simulated, else None.
        bicubic: (X', Y', Z') bicubic baseline on the SR grid when simulated, else None.
        scores: method -> {"psnr", "ssim"} against the ground truth when simulated, else None.
        dtype: data type of the input target (outputs are written in it).
        ref_path: the reference file (or the label of an in-memory reference).
        seconds: wall time of simulating, resampling and super-resolving.
        qa: reference QA (:mod:`fasr.inference.qa`), with the output's mean confidence.
        registration: the rigid transform fitted from the LR to the reference (``register="rigid"``), else None.
        clipped: the floor the output was clipped at (the target's background level: 0 for a magnitude image) and
            how many voxels were below it.
    """

    result: InferenceResult
    lr: Volume
    simulation: Simulation | None
    degradation: DegradationConfig | None
    bicubic: np.ndarray | None
    scores: dict[str, dict[str, float]] | None
    dtype: np.dtype
    ref_path: Path
    seconds: float
    qa: ReferenceQA | None = None
    registration: Registration | None = None
    clipped: dict[str, float] | None = None  # None only for predictions made before it existed


# Data settings inference reads from a checkpoint's config (``data.degradation.*`` too, when simulating).
INFERENCE_DATA_FIELDS = ("data.norm_percentiles",)


def load_for_inference(
    checkpoint: str, device: torch.device, scale: int | None, overrides: Sequence[str] = (),
    read: CheckpointFile | None = None,
) -> LoadedModel:
    """Load a checkpoint file or shipped model by name, checking it was trained for ``scale``.

    Args:
        checkpoint: ``.pt`` file or a name from :mod:`fasr.pretrained` (e.g. ``brats-x4``).
        device: where the model runs.
        scale: required upsampling factor, or None to take the checkpoint's.
        overrides: ``--set key=value`` strings for its config (e.g. ``model.search_window=16``).
        read: the same checkpoint already read (:func:`fasr.inference.plan.read_checkpoint`): not read again.
    """
    settable = [f"model.{name}" for name in INFERENCE_FIELDS] + list(INFERENCE_DATA_FIELDS)
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key not in settable and not key.startswith("data.degradation."):
            raise UsageError(
                f"--set {key} has no effect on inference; it takes {', '.join(settable)} and, with --simulate-from, "
                "data.degradation.* (a .mat file's variable: --lr-key / --ref-key)"
            )
    if read is None:
        path = resolve_checkpoint(checkpoint)
        model, config = load_model(path, map_location=device, overrides=overrides)
    else:
        path = read.path
        model, config = model_from_state(read.state, path, device, overrides)
    if scale is not None and scale != config.model.scale:
        raise FasrError(
            f"checkpoint '{checkpoint}' is trained for x{config.model.scale}, not x{scale}; drop --scale or "
            f"pass a x{scale} checkpoint (shipped: {', '.join(f'{m.name} (x{m.scale})' for m in PRETRAINED.values())})"
        )
    label = checkpoint if checkpoint in PRETRAINED else path.name
    return LoadedModel(model=model, config=config, label=label, path=path, device=device)


def check_adapt(adapt: int, model: ModelConfig) -> None:
    """Refuse an ``--adapt`` that is negative or given to an in-plane model."""
    if adapt < 0:
        raise FasrError(f"--adapt takes a number of steps >= 0, got {adapt}")
    if adapt and not is_through_plane(model):
        raise FasrError("--adapt fine-tunes a through-plane model on a thick-slice scan; drop it for an in-plane model")


def predict(
    loaded: LoadedModel,
    inputs: InputPair,
    *,
    simulate: bool,
    batch_size: int,
    progress: bool,
    degradation: str | None = None,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    register: str = "rigid",
    adapt: int = 0,
) -> Prediction:
    """Super-resolve a target with its reference; with ``simulate``, degrade the target first and score.

    Args:
        loaded: the model.
        inputs: LR target (or the HR target to simulate the LR from) and the HR reference of the same
            patient, read by :func:`fasr.inference.inputs.read_inputs`.
        simulate: treat the target as ground truth and make the LR with the checkpoint's degradation.
        degradation: simulation only: ``bicubic`` or ``kspace`` instead of the checkpoint's LR degradation
            (``fasr infer --degradation``).
        batch_size: slices per forward pass.
        progress: show a progress bar.
        strict: refuse a reference that the QA flags (another patient, misregistered) instead of warning.
        warn: called with each warning as soon as it is found (before the slices run); None: not reported.
        register: ``rigid`` (default): fit a rigid transform of the reference to the LR by mutual information
            and apply it before reference QA and resampling (:mod:`fasr.inference.register`); ``none``: trust the
            affines.
        adapt: through-plane models: fine-tune a copy for this many steps on the scan's own slices first
            (:mod:`fasr.inference.engine.adapt`; 0: off).
    """
    check_adapt(adapt, loaded.config.model)
    if register not in REGISTRATIONS:
        raise FasrError(f"unknown registration '{register}'; choose one of {', '.join(REGISTRATIONS)}")
    start = time.perf_counter()
    cfg = loaded.config
    target, ref = inputs.target, inputs.ref
    simulation = simulated = bicubic = scores = None
    inplane_axes = None
    lr = target
    if simulate and is_through_plane(cfg.model):
        raise FasrError(
            "--simulate-from with a through-plane model: make the thick-slice LR first (fasr.data.thick.thick_volume, "
            "or `fasr bench thick`) and pass it as --lr"
        )
    if simulate:
        simulated = cfg.data.degradation  # how the LR is simulated: the checkpoint's, or the kind asked for
        if degradation is not None:
            simulated = dataclasses.replace(simulated, kind=degradation)
        simulation = simulate_lr(
            target,
            ref.affine,
            loaded.scale,
            build_degradation(simulated),
            noise=simulated.noise,
            snr=simulated.snr,
            norm_percentiles=cfg.data.norm_percentiles,
            seed=cfg.seed,
        )
        lr, inplane_axes = simulation.lr, simulation.inplane_axes
    # What the model assumes the LR went through (its Ref-down-up), for the registration's agreement check.
    assumed = getattr(loaded.model, "ref_degradation", None) or build_degradation(cfg.data.degradation)
    scale, thick_axis = loaded.scale, None
    if is_through_plane(cfg.model):  # ours: the factor and the thick axis come from this scan's headers
        thick_axis, scale = check_thick_task(volume_geometry(lr), volume_geometry(ref))
        assumed = thick_profile(volume_geometry(lr), thick_axis, scale, assumed)  # the header's thickness
    registration = None
    if register == "rigid":
        robust_stats(lr, *cfg.data.norm_percentiles)  # an LR without content is refused before registration
        registration, ref, note = register_reference(lr, ref, scale, inplane_axes, assumed, thick_axis)
        if note is not None and warn is not None:
            warn(note)
    qa = reference_qa(lr, ref)
    warning = check_reference(qa, lr.path, ref.path, strict)
    if warning is not None and warn is not None:
        warn(warning)
    run = dict(norm_percentiles=cfg.data.norm_percentiles, batch_size=batch_size, device=loaded.device,
               progress=progress, settings=RunSettings.for_model(cfg.model, loaded.precision, loaded.max_memory_gib))
    if thick_axis is None:
        result = super_resolve_volume(loaded.model, lr, ref, scale, inplane_axes=inplane_axes, **run)
    else:
        result = super_resolve_thick(loaded.model, lr, ref, assumed, thick_axis, adapt=adapt, **run)
    # Nothing below the input's background level (0 for a magnitude image, a standardised one's own background):
    # the residual and interpolation undershoot there.
    floor = intensity_floor(inputs.target.data)
    below = result.sr < floor
    clipped = {"floor": round(floor, 6), "voxels": int(below.sum()), "share": round(float(below.mean()), 6),
               "min_before": round(float(result.sr.min()), 4)}
    if below.any():
        result = dataclasses.replace(result, sr=np.maximum(result.sr, floor))
    if simulation is not None:
        hr = simulation.hr.data
        assert hr.shape == result.grid.shape and np.allclose(simulation.hr.affine, result.grid.affine, atol=1e-6)
        slicer = Slicer.for_grid(result.grid.affine, result.grid.slice_axis)
        bicubic = bicubic_volume(lr.data, slicer, loaded.scale)
        bicubic = np.maximum(bicubic, floor)  # the baseline gets the output's floor too
        scores = score_methods(hr, {"bicubic": bicubic, cfg.model.name: result.sr}, slicer)
    return Prediction(
        result=result,
        lr=lr,
        simulation=simulation,
        degradation=simulated,
        bicubic=bicubic,
        scores=scores,
        dtype=inputs.dtype,
        ref_path=Path(ref.path),
        seconds=time.perf_counter() - start,
        qa=qa.with_confidence(mean_confidence(result.confidence, result.sr, result.target_stats)),
        registration=registration,
        clipped=clipped,
    )


def _agreement(
    lr: Volume, ref: Volume, scale: int, inplane_axes: tuple[int, int] | None, degradation: Degradation,
    thick_axis: int | None = None,
) -> float:
    """:func:`fasr.inference.register.local_agreement` of ``lr`` and ``ref`` as its affine places it: the reference
    resampled onto the SR grid as the pipeline does, then degraded to the LR grid as the model assumes the LR was
    (a through-plane grid: along ``thick_axis``)."""
    grid = reference_coverage(lr, ref, scale, inplane_axes, 0.0, thick_axis)[0]
    on_grid = resample_to_grid(ref.data, ref.affine, grid.shape, grid.affine, order=1)
    if thick_axis is not None:
        return local_agreement(lr.data, along_axis(on_grid, thick_axis, "down", degradation))
    slicer = Slicer.for_grid(grid.affine, grid.slice_axis)
    with torch.no_grad():
        view = degradation.down(torch.from_numpy(slicer.to_stack(on_grid)).float()[:, None], scale)[:, 0].numpy()
    return local_agreement(slicer.to_stack(lr.data), view)


def register_reference(
    lr: Volume, ref: Volume, scale: int, inplane_axes: tuple[int, int] | None, degradation: Degradation,
    thick_axis: int | None = None,
) -> tuple[Registration | None, Volume, str | None]:
    """The reference registered to the LR, when that is possible, plausible and better than the headers' placement;
    else as its header places it, with the reason (None when the headers simply agreed better). A reference that
    does not cover the LR is refused first (as the pipeline would).

    Args:
        lr: the LR target.
        ref: the HR reference as its header places it.
        scale: in-plane factor of the LR (1 for a through-plane grid).
        inplane_axes: the LR's in-plane voxel axes, or None to take them from its geometry.
        degradation: how the model assumes the LR was made (for the agreement check).
        thick_axis: the LR's slice axis when the grid refines it, else None.

    Returns:
        (the fit or None, the reference to use, a warning or None).
    """
    reference_coverage(lr, ref, scale, inplane_axes, thick_axis=thick_axis)
    problem = registration_problem(lr, ref)
    if problem is not None:  # said for a thin volume; a 2-D slice cannot be registered in 3-D and is not expected to
        return None, ref, None if 1 in lr.data.shape or 1 in ref.data.shape else problem
    registration = register_rigid(lr, ref)
    moved = registered_volume(ref, registration)
    # Mutual information between contrasts can settle a fraction of a millimetre away from the pixel-level optimum
    # (ours, measured: benchmarks/results/registration.md): the transform is used only when the registered
    # reference explains the LR better than the headers' placement does.
    agreement = (_agreement(lr, ref, scale, inplane_axes, degradation, thick_axis),
                 _agreement(lr, moved, scale, inplane_axes, degradation, thick_axis))
    registration = dataclasses.replace(registration, agreement=agreement, applied=agreement[1] > agreement[0])
    if not registration.applied:
        return registration, ref, None
    shift = registration.centre_shift_mm
    lost = reference_coverage(lr, moved, scale, inplane_axes, 0.0, thick_axis)[1] < MIN_COVERAGE
    if registration.rotation_deg > MAX_ROTATION_DEG or shift > MAX_SHIFT_MM or lost:
        return None, ref, (
            f"registration of '{ref.path}' found an implausible motion ({registration.rotation_deg:.1f} degrees, "
            f"{shift:.1f} mm at the LR's centre; at most {MAX_ROTATION_DEG:g} and {MAX_SHIFT_MM:g} between sequences "
            "of one session) or lost coverage: the reference is used as its header places it"
        )
    return registration, moved, None


def _descrip(loaded: LoadedModel, what: str, ref_path: Path) -> str:
    """Short NIfTI description: tool, version, checkpoint, reference (cut to the 79-byte field)."""
    return f"fasr {__version__} {what} ckpt={loaded.label} ref={ref_path.name}"


def _absolute(path: str | Path | None) -> str | None:
    """A file path made absolute (without resolving links); labels of in-memory inputs (``<lr array>``) as they are."""
    if path is None:
        return None
    return os.path.abspath(path) if not str(path).startswith("<") else str(path)


def sidecar_record(
    prediction: Prediction, loaded: LoadedModel, out: Path | None, confidence_out: Path | None
) -> dict[str, Any]:
    """Full provenance of one prediction (the JSON sidecar).

    Args:
        prediction: output of :func:`predict`.
        loaded: the model that made it.
        out, confidence_out: where the SR volume and the confidence map are written (None: not written).
    """
    result, grid = prediction.result, prediction.result.grid
    simulated = None
    if prediction.degradation is not None:
        simulated = {"degradation": to_dict(prediction.degradation), "lr_shape": list(prediction.lr.data.shape)}
    return {
        "tool": "fasr",
        "version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "checkpoint": {"name": loaded.label, "path": _absolute(loaded.path), "model": to_dict(loaded.config.model)},
        "target": _absolute(prediction.simulation.hr.path if prediction.simulation else prediction.lr.path),
        "simulated": simulated,
        "reference": _absolute(prediction.ref_path),
        "reference_coverage": result.coverage,
        "registration": None if prediction.registration is None else prediction.registration.to_dict(),
        "reference_qa": None if prediction.qa is None else prediction.qa.to_dict(),
        "grid": {
            "shape": list(grid.shape),
            "voxel_size_mm": [round(float(v), 6) for v in voxel_sizes(grid.affine)],
            "slice_axis": grid.slice_axis,
            "inplane_axes": list(grid.inplane_axes),
            "scale": grid.scale,
            "thick_axis": grid.thick_axis,
            "lr_over_reference_spacing": list(grid.ref_ratio),
            "affine": grid.affine.tolist(),
        },
        "normalisation": {
            "target": [result.target_stats.low, result.target_stats.high],
            "reference": [result.ref_stats.low, result.ref_stats.high],
        },
        "outputs": {
            "sr": _absolute(out),
            "sr_dtype": str(prediction.dtype),
            "confidence": _absolute(confidence_out),
        },
        "clipped": prediction.clipped,
        "seconds": round(prediction.seconds, 3),
        "throughput": result.stats,
        "scores": prediction.scores,
    }


def prediction_images(
    prediction: Prediction, loaded: LoadedModel
) -> tuple[nib.Nifti1Image, nib.Nifti1Image | None]:
    """The SR volume (input data type) and the confidence map (float32, None without reference matching) as the
    NIfTI images that are written: SR-grid affine as qform and sform, ``descrip`` naming tool, checkpoint, reference.

    Args:
        prediction: output of :func:`predict`.
        loaded: the model that made it.
    """
    result, ref_path = prediction.result, prediction.ref_path
    sr = nifti_image(cast_like(result.sr, prediction.dtype), result.grid.affine, _descrip(loaded, "SR", ref_path))
    if result.confidence is None:
        return sr, None
    confidence = result.confidence.astype(np.float32)
    return sr, nifti_image(confidence, result.grid.affine, _descrip(loaded, "conf", ref_path))


def write_prediction(
    prediction: Prediction,
    loaded: LoadedModel,
    out: Path,
    confidence_out: Path | None,
    extra: dict[str, Any],
) -> list[Path]:
    """Write the SR volume (input data type), the confidence map (float32) and the JSON sidecar.

    Args:
        prediction: output of :func:`predict`.
        loaded: the model that made it.
        out: SR NIfTI path.
        confidence_out: confidence NIfTI path, or None.
        extra: more sidecar fields (e.g. the demo subject).

    Raises:
        FasrError: a confidence map was requested from a model without reference matching.
    """
    sr, confidence = prediction_images(prediction, loaded)
    if confidence_out is not None and confidence is None:
        raise FasrError(
            f"model '{loaded.config.model.name}' of '{loaded.label}' has no reference matching, so no confidence "
            "map; drop --confidence or use a FASR-Net checkpoint"
        )
    written = [save_nifti(out, sr)]
    if confidence_out is not None:
        written.append(save_nifti(confidence_out, confidence))
    record = {**sidecar_record(prediction, loaded, out, confidence_out), **extra}
    written.append(write_json(sidecar_path(out), record))
    return written


def metrics_table(scores: dict[str, dict[str, float]]) -> str:
    """A small Markdown table of PSNR/SSIM per method."""
    lines = ["| method | PSNR (dB) | SSIM |", "|---|---|---|"]
    lines += [f"| {name} | {s['psnr']:.2f} | {s['ssim']:.4f} |" for name, s in scores.items()]
    return "\n".join(lines)
