"""The Python API (public as :mod:`fasr.api`: ``fasr.load_model``, ``fasr.super_resolve``). ``fasr infer``, its
dataset runner (``--bids``, ``--lr-glob``, ``--pairs``) and ``fasr demo`` are thin layers over it.

    import fasr
    result = fasr.super_resolve("t2_lowres.nii.gz", "t1.nii.gz", model="brats-x4")
    result.sr, result.confidence  # nibabel images, geometry exactly as `fasr infer` writes them
    result.save("t2_sr.nii.gz", confidence="t2_conf.nii.gz")  # the same files `fasr infer` writes
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch

from fasr.errors import FasrError
from fasr.inference.inputs import ImageInput
from fasr.inference.job import InferenceJob, load_model
from fasr.inference.options import DEFAULT_BATCH_SIZE, DEFAULT_MODEL
from fasr.inference.output import require_nifti, resolved, sidecar_path
from fasr.inference.plan import check_output_paths
from fasr.inference.predict import LoadedModel, Prediction, prediction_images, sidecar_record, write_prediction

__all__ = ["DEFAULT_MODEL", "SRResult", "load_model", "super_resolve", "run_job"]



@dataclass(frozen=True)
class SRResult:
    """What :func:`super_resolve` returns.

    Attributes:
        sr: the super-resolved target as ``fasr infer`` writes it: the LR's data type, the SR-grid affine as
            qform and sform (LR voxels divided by the scale in-plane, same field of view), provenance in
            ``descrip``. A 2-D input gives a one-slice (W', H', 1) image: ``sr.get_fdata()[:, :, 0].T``.
        confidence: the soft-attention confidence map (float32 in [0, 1], same grid), or None for models
            without reference matching.
        metadata: the provenance record ``fasr infer`` writes as the JSON sidecar (checkpoint, inputs, grid,
            normalisation, seconds, and PSNR/SSIM when simulated).
        warnings: things the user should check (e.g. an LR that does not look low-resolution).
        prediction: the full prediction (also the bicubic baseline and ground truth when simulated).
        model: the model that made it.
    """

    sr: nib.Nifti1Image
    confidence: nib.Nifti1Image | None
    metadata: dict[str, Any]
    warnings: tuple[str, ...]
    prediction: Prediction
    model: LoadedModel

    @property
    def mean_confidence(self) -> float | None:
        """Mean confidence over the target's foreground (:func:`fasr.inference.qa.mean_confidence`; also in the
        sidecar's ``reference_qa``)."""
        return None if self.prediction.qa is None else self.prediction.qa.mean_confidence

    def save(
        self,
        out: str | Path,
        confidence: str | Path | None = None,
        *,
        force: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> list[Path]:
        """Write the SR volume, the confidence map (when given a path) and the JSON sidecar beside ``out``.

        Args:
            out: SR NIfTI path (``.nii.gz`` / ``.nii``); the sidecar is ``<stem>.json`` beside it.
            confidence: confidence NIfTI path, or None.
            force: replace existing files (inputs are never replaced).
            extra: more sidecar fields.

        Returns:
            The files written.
        """
        out = Path(out)
        confidence_out = None if confidence is None else Path(confidence)
        require_nifti(out, "out")
        if confidence_out is not None:
            require_nifti(confidence_out, "confidence")
            if resolved(confidence_out) == resolved(out):
                raise FasrError("the confidence map and the SR volume name the same file; give two different paths")
        outputs = {"out": out, "sidecar": sidecar_path(out)}
        if confidence_out is not None:
            outputs["confidence"] = confidence_out
        inputs = [Path(self.prediction.ref_path), Path(self.metadata["target"])]
        check_output_paths(outputs, inputs, force, force_hint="pass force=True")
        return write_prediction(self.prediction, self.model, out, confidence_out, extra or {})


def super_resolve(
    lr: ImageInput,
    ref: ImageInput,
    model: str | Path | LoadedModel = DEFAULT_MODEL,
    *,
    lr_affine: np.ndarray | None = None,
    ref_affine: np.ndarray | None = None,
    lr_key: str | None = None,
    ref_key: str | None = None,
    device: str | torch.device = "auto",
    scale: int | None = None,
    overrides: Sequence[str] = (),
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    simulate: bool = False,
    degradation: str | None = None,
    strict: bool = False,
    warn: Callable[[str], None] | None = None,
    register: str = "rigid",
    adapt: int = 0,
) -> SRResult:
    """Super-resolve a low-resolution scan in-plane with a high-resolution reference contrast of the same patient.

    Args:
        lr: the low-resolution target: a file (NIfTI, DICOM series folder, PNG/TIFF/NPY/MAT slice), a nibabel
            image, or a numpy array (with ``lr_affine``; a 2-D array may go without, as a slice of the
            reference's field of view).
        ref: the high-resolution reference, in the same forms; any grid covering the target.
        model: shipped model name, checkpoint file, or a model from :func:`load_model` (to load it once).
        lr_affine, ref_affine: (4, 4) voxel -> world matrices (RAS mm) of numpy inputs.
        lr_key, ref_key: the variable to read from a ``.mat`` file that holds several (e.g. fastMRI-style slices).
        device: where the model runs when it is loaded here (see :func:`load_model`).
        scale: required in-plane factor; None: the model's.
        overrides: ``key=value`` settings when the model is loaded here (as ``--set``).
        batch_size: slices per forward pass.
        progress: show a progress bar over slices.
        simulate: treat ``lr`` as high-resolution ground truth: degrade it first with the checkpoint's
            training degradation and score the result (``metadata["scores"]``) beside bicubic.
        degradation: with ``simulate``: ``bicubic`` or ``kspace`` instead of the checkpoint's.
        strict: refuse a reference that the reference QA flags (another patient, misregistered) instead of
            warning (:mod:`fasr.inference.qa`).
        warn: called with each warning as soon as it is found, before the slices run (``fasr infer`` prints
            them); they are also in ``warnings`` of the result.
        register: ``rigid`` (default): register the reference to the LR (6 degrees of freedom, mutual information)
            before anything else uses it; ``none``: trust the two scans' affines (:mod:`fasr.inference.register`).
        adapt: through-plane models: fine-tune a copy for this many steps on the scan's own slices first (0: off).

    Raises:
        FasrError: bad inputs, or a job that is not in-plane super-resolution by the model's factor
            (:func:`fasr.inference.plan.plan_inference`), before the model is loaded.
    """
    job = InferenceJob.prepare(
        lr, ref, model, lr_affine=lr_affine, ref_affine=ref_affine, lr_key=lr_key, ref_key=ref_key,
        overrides=overrides, simulate=simulate, degradation=degradation, batch_size=batch_size, strict=strict,
        register=register, adapt=adapt,
    )
    for message in job.plan.warnings:
        if warn is not None:
            warn(message)
    return run_job(job, job.load(device, scale), progress=progress, warn=warn)


def run_job(
    job: InferenceJob, loaded: LoadedModel, *, progress: bool = False, warn: Callable[[str], None] | None = None
) -> SRResult:
    """Run a prepared job with its loaded model (``job.load``) and package the result as the API returns it.

    Args:
        job: the job (:meth:`fasr.inference.job.InferenceJob.prepare`).
        loaded: its model, with the run settings wanted (precision, memory budget).
        progress: show a progress bar over slices.
        warn: called with each warning found while running (the plan's are in ``job.plan.warnings``); the result
            holds both.
    """
    found: list[str] = []

    def report(message: str) -> None:
        found.append(message)
        if warn is not None:
            warn(message)

    prediction = job.run(loaded, progress=progress, warn=report)
    sr, confidence = prediction_images(prediction, loaded)
    return SRResult(
        sr=sr,
        confidence=confidence,
        metadata=sidecar_record(prediction, loaded, None, None),
        warnings=(*job.plan.warnings, *found),
        prediction=prediction,
        model=loaded,
    )
