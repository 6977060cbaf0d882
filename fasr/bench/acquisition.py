"""Scans as scanners make them (``fasr bench reference``, the ``scanner`` section).

Each condition runs the whole inference job (:func:`fasr.inference.predict.predict`, as ``fasr infer
--simulate-from``) on a slab of a held-out subject's target volume: the LR is made by k-space truncation of the
same field of view (optionally with Rician noise), the reference is the subject's own reference volume (or
another subject's), optionally moved by a known rigid motion between the two "sequences", and registered (or
not) before use. Scores: PSNR/SSIM against the HR target on the SR grid (fastMRI convention), beside cubic
interpolation of the same LR.

A motion is applied to the reference's affine (its voxels are not resampled here): the anatomy is displaced in
scanner space exactly as if the patient had moved, and the pipeline's one resampling onto the SR grid is all the
interpolation the reference undergoes, as with a real scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from fasr.data.io import read_volume
from fasr.data.types import Volume
from fasr.inference.inputs import InputPair
from fasr.inference.predict import LoadedModel, predict
from fasr.inference.register import motion_of, rigid_matrix

__all__ = ["MOTIONS", "ScannerCase", "slab", "moved", "scanner_cases", "run_scanner_conditions"]

MOTIONS = ((0.5, 0.5), (1.0, 1.0), (2.0, 2.0))  # (mm, degrees) of the reference's rigid motion
_AXIS = np.ones(3) / math.sqrt(3.0)  # oblique: every axis moves, through-plane included


@dataclass(frozen=True)
class ScannerCase:
    """One condition: how the LR is made, which reference, how it moved, whether it is registered."""

    label: str
    noise: str = "none"
    reference: str = "true"  # or "wrong_subject"
    motion: tuple[float, float] = (0.0, 0.0)
    register: str = "rigid"


def scanner_cases() -> list[ScannerCase]:
    """The conditions of the ``scanner`` section, in report order."""
    cases = [
        ScannerCase("true, registered affines (--register none)", register="none"),
        ScannerCase("true (default: --register rigid)"),
        ScannerCase("wrong subject", reference="wrong_subject"),
        ScannerCase("true, Rician noise", noise="rician"),
    ]
    for mm, deg in MOTIONS:
        for register in ("rigid", "none"):
            cases.append(ScannerCase(f"moved {mm:g} mm / {deg:g} deg, --register {register}", motion=(mm, deg),
                                     register=register))
    return cases


def slab(volume: Volume, slices: int) -> Volume:
    """The central ``slices`` slices of ``volume`` along its last voxel axis (the acquisition axis), with the
    affine of that slab; all of it when ``slices`` is 0 or larger than the volume."""
    n = volume.data.shape[2]
    if not slices or slices >= n:
        return volume
    start = (n - slices) // 2
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.array([0.0, 0.0, start]) + volume.affine[:3, 3]
    return Volume(np.ascontiguousarray(volume.data[:, :, start : start + slices]), affine, volume.path)


def moved(volume: Volume, mm: float, deg: float) -> tuple[Volume, np.ndarray]:
    """``volume`` with its anatomy moved rigidly in scanner space: a rotation of ``deg`` degrees about an oblique
    axis through the volume's centre and a shift of ``mm`` along the same direction. Returns the moved volume and
    the (4, 4) RAS motion."""
    centre = volume.affine[:3, :3] @ ((np.array(volume.data.shape) - 1) / 2) + volume.affine[:3, 3]
    motion = rigid_matrix(tuple(_AXIS * deg), tuple(_AXIS * mm), centre)
    return Volume(volume.data, motion @ volume.affine, f"{volume.path} (moved {mm:g} mm / {deg:g} deg)"), motion


def run_scanner_conditions(
    loaded: LoadedModel, target_path: str, reference_path: str, wrong_path: str, *, slices: int, snr: float,
    batch_size: int = 4, log=print,
) -> dict[str, Any]:
    """Every :func:`scanner_cases` condition on one subject.

    Args:
        loaded: the model under test.
        target_path / reference_path: the subject's HR target and reference volumes.
        wrong_path: another subject's reference volume of the same contrast (same atlas/scanner space).
        slices: central slices of the target used (0: all).
        snr: SNR of the Rician-noise condition (mean foreground / sigma).
        batch_size: slices per forward pass.
        log: progress lines.
    """
    target = slab(read_volume(target_path), slices)
    references = {"true": read_volume(reference_path), "wrong_subject": read_volume(wrong_path)}
    brain = references["true"]
    inside = np.argwhere(brain.data > np.percentile(brain.data[brain.data > 0], 10))[::97]
    points = inside @ brain.affine[:3, :3].T + brain.affine[:3, 3]  # (N, 3) brain voxels, mm
    rows: dict[str, Any] = {}
    for case in scanner_cases():
        ref = references[case.reference]
        record: dict[str, Any] = {"reference": case.reference, "noise": case.noise, "register": case.register,
                                  "motion_mm_deg": list(case.motion)}
        if any(case.motion):
            ref, motion = moved(ref, *case.motion)
            record["motion_mean_displacement_mm"] = round(motion_of(motion, points)[1], 3)
        cfg = loaded.config
        degradation = replace(cfg.data.degradation, kind="kspace", noise=case.noise, snr=snr)
        sim_loaded = replace(loaded, config=replace(cfg, data=replace(cfg.data, degradation=degradation)))
        prediction = predict(
            sim_loaded, InputPair(target, ref, np.dtype(np.float32)), simulate=True,
            batch_size=batch_size, progress=False, register=case.register,
        )
        scores = prediction.scores or {}
        record.update({"psnr": scores[cfg.model.name]["psnr"], "ssim": scores[cfg.model.name]["ssim"],
                       "cubic_psnr": scores["bicubic"]["psnr"], "cubic_ssim": scores["bicubic"]["ssim"],
                       "seconds": round(prediction.seconds, 2)})
        if prediction.registration is not None:
            reg = prediction.registration
            record["registration"] = {"seconds": round(reg.seconds, 2), "rotation_deg": round(reg.rotation_deg, 3),
                                      "applied": reg.applied}
            if any(case.motion):  # the residual motion left after registration (the motion itself when not applied)
                used = reg.matrix if reg.applied else np.eye(4)
                angle, disp = motion_of(np.linalg.inv(motion) @ used, points)  # identity when exact
                record["registration"].update(residual_deg=round(angle, 3), residual_mm=round(disp, 3))
        rows[case.label] = record
        log(f"{case.label}: {record['psnr']:.2f} dB (cubic {record['cubic_psnr']:.2f})")
    return {"slices": int(target.data.shape[2]), "snr": snr, "conditions": rows}
