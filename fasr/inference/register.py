"""Rigid registration of the reference to the LR target (``fasr infer --register rigid``, the default).

Two sequences of one session are never aligned to the pixel: the patient moves between them. Before the reference
is resampled onto the SR grid, a 6-degree-of-freedom (Euler 3-D) transform is fitted by maximising the Mattes
mutual information between the LR (fixed) and the reference (moving), coarse to fine, with SimpleITK (ITK's
registration framework: a maintained library with binary wheels for every platform; ``docs/inference.md`` says why
it was chosen). The reference is never resampled here: the transform is folded into its affine, so the one
resampling onto the SR grid (:mod:`fasr.inference.grid`) applies it exactly.

Conventions: SimpleITK works in LPS millimetres, nibabel affines in RAS; :func:`registered_volume` and the
recorded matrix are RAS. The fitted transform maps a point of the LR's space to the point of the reference's space
that shows the same anatomy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from fasr.data.normalize import intensity_floor
from fasr.data.types import Volume
from fasr.errors import FasrError
from fasr.inference.options import REGISTRATIONS  # noqa: F401 - re-exported; defined there so parsers need no torch

__all__ = [
    "REGISTRATIONS", "MIN_VOXELS", "MAX_ROTATION_DEG", "MAX_SHIFT_MM", "Registration", "registration_problem",
    "register_rigid", "registered_volume", "local_agreement", "rigid_matrix", "rotation_angle_deg", "motion_of",
]


_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS (its own inverse)
# Optimiser settings (ours): two levels, 1/2 and full resolution. Smoothing the reference to the LR's resolution
# first (or bin-shrinking it) moved the fit further from the pixel-level optimum on the validation subject
# (network-free fit 33.30 / 33.55 dB against 33.87 without; the dataset's own alignment 34.43), so it is not done.
_SHRINK = (2, 1)
_SMOOTH_MM = (1.0, 0.0)
_BINS = 32
# The metric reads every voxel of the LR's content (below) up to _FULL_MAX of them (a x4 LR of a 240x240x155 brain
# volume: about 140,000): a random sample leaves a fixed random texture in the metric that biases the fit (before the
# mask, with exact truth across a contrast change: 0.43-0.48 mm median with 150,000-450,000 samples, 0.29 mm with
# all; docs/experiments.md). More content (a x2 LR: about 500,000 voxels) is sampled: _SAMPLES at random inside it.
_FULL_MAX = 300_000
_SAMPLES = 150_000
_ITERATIONS = 200
# The metric reads only the LR's content (ours): voxels above _FOREGROUND of the way from its background to its 99.5th
# percentile, dilated by _MASK_DILATE voxels so that the head's edge stays in. Empty background (or its k-space
# ringing) fills one corner of the joint histogram and biased the fit: with exact truth across a contrast change,
# 0.32-0.38 mm without the mask and 0.09-0.22 mm with it, in half the time (validation and a training subject,
# docs/experiments.md); undilated, the edge is lost (0.36-0.47 mm).
_MASK_DILATE = 3
# Plausible motion between two sequences of one session (ours): a larger fit is a failure (unrelated images,
# too little overlap), and the headers' placement is kept.
MAX_ROTATION_DEG = 10.0
MAX_SHIFT_MM = 20.0
_FOREGROUND = 0.05  # fraction of the LR's range above which the metric's mask and local_agreement count a voxel
MIN_VOXELS = 8  # along every axis of both images: a 3-D rigid fit needs a volume, not a slice or a thin slab
_RELAXATION = 0.7


@dataclass(frozen=True)
class Registration:
    """A fitted rigid transform from the LR's space to the reference's.

    Attributes:
        matrix: (4, 4) RAS mm: LR-space point -> reference-space point of the same anatomy.
        metric: final Mattes mutual information (negative; lower is better aligned).
        iterations: optimiser iterations at the last level.
        seconds: wall time.
        stop: the optimiser's reason to stop.
        centre_shift_mm: how far the transform moves the LR's centre (the patient's shift there, free of the
            rotation's lever arm about the scanner's origin).
        agreement: (headers, registered): :func:`local_agreement` of the reference as its header places it and as
            registered; None when not compared.
        applied: whether the transform was used (False: the headers agreed better with the LR, ours).
    """

    matrix: np.ndarray
    metric: float
    iterations: int
    seconds: float
    stop: str
    centre_shift_mm: float = 0.0
    agreement: tuple[float, float] | None = None
    applied: bool = True

    @property
    def rotation_deg(self) -> float:
        """Rotation angle of the transform in degrees."""
        return rotation_angle_deg(self.matrix)

    def to_dict(self) -> dict[str, Any]:
        """The sidecar record."""
        return {
            "method": "rigid",
            "library": f"SimpleITK {_sitk().Version_VersionString()}",
            "metric": "mattes_mutual_information",
            "final_metric": round(self.metric, 6),
            "matrix_ras": np.round(self.matrix, 6).tolist(),
            "rotation_deg": round(self.rotation_deg, 4),
            "translation_mm": np.round(self.matrix[:3, 3], 4).tolist(),  # about the scanner's origin
            "centre_shift_mm": round(self.centre_shift_mm, 4),
            "iterations": self.iterations,
            "stop": self.stop,
            "local_agreement": None if self.agreement is None else dict(
                zip(("headers", "registered"), (round(a, 5) for a in self.agreement))
            ),
            "applied": self.applied,
            "seconds": round(self.seconds, 3),
        }


def _sitk() -> Any:
    try:
        import SimpleITK as sitk  # noqa: N813
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise FasrError("registration needs SimpleITK: pip install SimpleITK (or pass --register none)") from error
    return sitk


def _image(volume: Volume, sitk: Any) -> Any:
    """A SimpleITK image of ``volume``: voxel data in (z, y, x) order, geometry in LPS."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume.data.transpose(2, 1, 0), dtype=np.float32))
    lps = _LPS @ volume.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    if np.any(spacing <= 0):
        raise FasrError(f"'{volume.path}' has a degenerate affine (a zero voxel size); fix its header")
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in lps[:3, 3]])
    image.SetDirection([float(d) for d in (lps[:3, :3] / spacing).ravel()])
    return image


def registration_problem(lr: Volume, ref: Volume) -> str | None:
    """Why ``lr`` and ``ref`` cannot be registered rigidly in 3-D (a 2-D slice, a slab thinner than
    :data:`MIN_VOXELS`), or None."""
    for volume in (lr, ref):
        if min(volume.data.shape) < MIN_VOXELS:
            return (f"'{volume.path}' is {'x'.join(map(str, volume.data.shape))} voxels: a rigid 3-D registration "
                    f"needs at least {MIN_VOXELS} along every axis, so the reference is used as its header places it "
                    "(register it yourself if the patient moved)")
    return None


def _content_mask(lr: Volume) -> np.ndarray | None:
    """The LR's content, dilated (:data:`_MASK_DILATE`), as a boolean array of its shape; None when it would not
    exclude anything (no background) or holds too little to register."""
    data = lr.data
    floor = intensity_floor(data)  # magnitudes: 0; signed data: their background level
    content = data > floor + _FOREGROUND * (np.percentile(data, 99.5) - floor)
    content = ndimage.binary_dilation(content, iterations=_MASK_DILATE)
    if content.all() or content.sum() < MIN_VOXELS**3:
        return None
    return content


def _mask_image(mask: np.ndarray, fixed: Any, sitk: Any) -> Any:
    """``mask`` ((x, y, z), the LR's voxel order) as a SimpleITK image on ``fixed``'s grid."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(mask.transpose(2, 1, 0), dtype=np.uint8))  # (z, y, x)
    image.CopyInformation(fixed)
    return image


def register_rigid(lr: Volume, ref: Volume, seed: int = 1) -> Registration:
    """Fit the rigid transform that aligns ``ref`` to ``lr`` (mutual information, coarse to fine).

    Args:
        lr: the LR target (fixed image).
        ref: the HR reference (moving image).
        seed: seed of the metric's random sampling, >= 1 (the same inputs give the same transform; SimpleITK reads
            0 as "seed from the clock").
    """
    if seed < 1:
        raise ValueError(f"registration seed must be >= 1 (0 seeds from the clock), got {seed}")
    sitk = _sitk()
    start = time.perf_counter()
    fixed, moving = _image(lr, sitk), _image(ref, sitk)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in fixed.GetSize()])
    transform = sitk.Euler3DTransform()
    transform.SetCenter(centre)  # identity start: both scans share the scanner's coordinates
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=_BINS)
    mask = _content_mask(lr)
    if mask is not None:
        method.SetMetricFixedMask(_mask_image(mask, fixed, sitk))
    read = int(np.prod(fixed.GetSize()) if mask is None else mask.sum())  # voxels the metric may read
    if read > _FULL_MAX:  # ITK draws over the whole LR and drops the draws outside the mask: _SAMPLES stay inside
        method.SetMetricSamplingStrategy(method.RANDOM)
        method.SetMetricSamplingPercentage(_SAMPLES / read, seed)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=_ITERATIONS, relaxationFactor=_RELAXATION,
        gradientMagnitudeTolerance=1e-8,
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(_SHRINK))
    method.SetSmoothingSigmasPerLevel(list(_SMOOTH_MM))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(transform, inPlace=True)
    try:
        method.Execute(sitk.Cast(fixed, sitk.sitkFloat32), sitk.Cast(moving, sitk.sitkFloat32))
    except RuntimeError as error:
        raise FasrError(
            f"registration of '{ref.path}' to '{lr.path}' failed ({str(error).strip().splitlines()[-1]}); check that "
            "both scans overlap, or pass --register none"
        ) from None
    rotation = np.asarray(transform.GetMatrix(), dtype=np.float64).reshape(3, 3)
    about = np.asarray(transform.GetCenter(), dtype=np.float64)  # the LR's centre
    translation = np.asarray(transform.GetTranslation(), dtype=np.float64)  # what the LR's centre moves by
    offset = about + translation - rotation @ about
    lps = np.eye(4)
    lps[:3, :3], lps[:3, 3] = rotation, offset  # x_ref = R x_lr + offset, LPS
    # Rounded to 1e-6 (micrometres, microradians, the metric's sixth decimal): ITK's threads sum the metric in a
    # varying order, which moves the results by ~1e-10; rounded, the same inputs give the same record and output
    # bytes unless a value lies within that jitter of a rounding boundary.
    return Registration(
        matrix=np.round(_LPS @ lps @ _LPS, 6) + 0.0, metric=round(float(method.GetMetricValue()), 6),
        iterations=int(method.GetOptimizerIteration()),
        centre_shift_mm=round(float(np.linalg.norm(translation)), 6),
        seconds=time.perf_counter() - start, stop=method.GetOptimizerStopConditionDescription(),
    )


def local_agreement(lr_stack: np.ndarray, ref_lr_stack: np.ndarray, radius: int = 1) -> float:
    """How well a reference explains the LR pixel by pixel (ours): the mean over the LR's foreground of the squared
    correlation of the LR and the reference's LR view (the reference on the SR grid, degraded as the LR was) in
    (2 radius + 1)^2 windows of each slice. The local fit of the model's guide is exact where it is 1; a
    misplacement of a fraction of a voxel lowers it.

    Args:
        lr_stack: (N, h, w) LR slices.
        ref_lr_stack: (N, h, w) the reference's LR view on the same slices.
        radius: window radius in LR pixels.
    """
    from scipy import ndimage

    a, b = lr_stack.astype(np.float64), ref_lr_stack.astype(np.float64)
    size = (1, 2 * radius + 1, 2 * radius + 1)

    def mean(x: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(x, size)

    ma, mb = mean(a), mean(b)
    cov, va, vb = mean(a * b) - ma * mb, mean(a * a) - ma * ma, mean(b * b) - mb * mb
    rho2 = cov * cov / np.maximum(va * vb, 1e-12)
    floor = intensity_floor(a)  # magnitudes: 0; signed data: their background level
    foreground = a > floor + _FOREGROUND * (a.max() - floor)
    return float(rho2[foreground].mean()) if foreground.any() else 0.0


def registered_volume(ref: Volume, registration: Registration) -> Volume:
    """``ref`` with the registration folded into its affine (no resampling): voxel ``v`` shows the anatomy at
    LR-space point ``inv(matrix) @ affine @ v``.

    Args:
        ref: the reference as read.
        registration: output of :func:`register_rigid`.
    """
    return Volume(data=ref.data, affine=np.linalg.inv(registration.matrix) @ ref.affine, path=ref.path)


def rigid_matrix(rotation_deg: tuple[float, float, float], shift_mm: tuple[float, float, float],
                 centre: np.ndarray) -> np.ndarray:
    """(4, 4) RAS rigid motion: rotations about the R, A, S axes (degrees, applied x then y then z) about
    ``centre``, then a shift.

    Args:
        rotation_deg: angles about the three world axes.
        shift_mm: translation in mm.
        centre: (3,) RAS point the rotation is about.
    """
    ax, ay, az = np.radians(rotation_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    matrix = np.eye(4)
    matrix[:3, :3] = rz @ ry @ rx
    matrix[:3, 3] = np.asarray(centre) - matrix[:3, :3] @ np.asarray(centre) + np.asarray(shift_mm)
    return matrix


def rotation_angle_deg(matrix: np.ndarray) -> float:
    """The angle of a rigid transform's rotation, in degrees.

    Args:
        matrix: (4, 4) or (3, 3) rigid transform.
    """
    return float(np.degrees(np.arccos(np.clip((np.trace(matrix[:3, :3]) - 1) / 2, -1.0, 1.0))))


def motion_of(matrix: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """Size of a rigid transform: (rotation angle in degrees, mean displacement in mm over ``points``).

    Args:
        matrix: (4, 4) rigid transform.
        points: (N, 3) points it moves (e.g. the brain's voxels in mm).
    """
    angle = rotation_angle_deg(matrix)
    moved = points @ matrix[:3, :3].T + matrix[:3, 3]
    return angle, float(np.linalg.norm(moved - points, axis=1).mean())
