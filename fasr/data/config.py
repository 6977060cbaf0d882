"""Data section of the run config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["DataConfig", "DegradationConfig"]


@dataclass
class DegradationConfig:
    """How LR (and Ref-down-up) images are made from HR ones.

    Args:
        kind: ``bicubic`` (the paper's, antialiased like PIL/MATLAB), ``kspace`` (centre crop of k-space, as a
            scanner acquires a smaller matrix of the same field of view) or ``random`` (ours, degradation
            randomisation: every training sample draws one of ``random_kinds``; evaluation, validation and
            inference use the nominal ``kspace`` with ``window``, what a scanner does).
        window: k-space window: ``none``, ``hamming`` or ``tukey`` (the scanner's optional filter).
        noise: ``none``, ``gaussian`` or ``rician`` (complex Gaussian noise, magnitude taken: MR magnitude images).
        snr: signal-to-noise ratio of the added noise (mean foreground / sigma); evaluation's SNR, and training's
            unless ``snr_range`` is set.
        snr_range: ours: (low, high) > 0: training draws each sample's SNR log-uniformly in it; (0, 0) = ``snr``.
        noise_prob: ours: share of training samples that get noise (evaluation: all, when ``noise`` is set).
        tukey_alpha: tapered fraction of the tukey window (0: box, 1: Hann).
        random_kinds: ``random`` only: the degradations drawn from, uniformly, as specs (``bicubic``,
            ``kspace``, ``kspace:hamming``, ``kspace:tukey:0.5``, or only slice profiles ``slice:4:gaussian``;
            ``fasr.data.degrade.degradation_from_spec``).
        slice_factor / slice_profile / slice_thickness: ``slice`` (and ``random`` over slice profiles): the nominal
            thick-slice acquisition of a through-plane model (ours): slice spacing over the reference's spacing,
            ``boxcar`` or ``gaussian`` profile, thickness over spacing (1: contiguous; below 1: a gap). Inference
            takes the factor from the scan's headers and keeps the profile and thickness.
    """

    kind: Literal["bicubic", "kspace", "slice", "random"] = "bicubic"
    window: Literal["none", "hamming", "tukey"] = "none"
    noise: Literal["none", "gaussian", "rician"] = "none"
    snr: float = 30.0
    snr_range: tuple[float, float] = (0.0, 0.0)
    noise_prob: float = 1.0
    tukey_alpha: float = 0.5
    random_kinds: list[str] = field(default_factory=lambda: ["bicubic", "kspace", "kspace:hamming", "kspace:tukey"])
    slice_factor: int = 4
    slice_profile: Literal["boxcar", "gaussian"] = "boxcar"
    slice_thickness: float = 1.0


@dataclass
class DataConfig:
    """Which data to read and how to sample it.

    Args:
        kind: ``brats``, ``ixi``, ``fastmri``, ``folder`` or ``cache`` (a ``fasr prepare`` output).
        root: dataset root, or a list of roots of the same layout whose subjects are pooled (relative paths are
            relative to the working directory).
        target: target contrast (e.g. ``t2``); reference: reference contrast (e.g. ``t1``); brats layouts
            also take a comma-separated list (``t1,t1c,flair``: one pair per subject and reference).
        val_subjects / test_subjects: subject ids held out (split by subject, never by slice).
        pairs_csv: fastMRI only: CSV whose header names the two contrasts (e.g. ``pd,pdfs``), one file pair a row.
        patch_size: HR training crop size (LR crop = patch_size / scale).
        slice_size: in-plane size slices are padded/cropped to (256 in the paper); 0 keeps the native size
            (padded to a multiple of the scale).
        min_foreground: slices whose target (and reference) has less content than this fraction are skipped.
        slice_step: keep every n-th slice with content.
        misalign: max random reference misalignment as (shift px, rotation deg, scale fraction); 0 = off.
        motion: ours: max (shift mm, rotation degrees) per axis of a random rigid 3-D motion of the reference
            volume; training, validation and evaluation samples (the latter deterministically per slice) take the
            reference slice from the moved volume (through-plane motion included), as when the patient moves
            between two sequences; (0, 0) = off (the model card scores registered references: data.motion=[0,0]).
        misalign_prob: share of samples whose reference is misaligned or moved; the others keep it registered (ours:
            with every training pair misaligned a model learns to distrust pixel-exact detail it could use on
            well-registered scans; 1 = all).
        self_reference: training also pairs each target slice with itself as the reference (misaligned like
            the others when ``misalign`` is on), so that the fusion learns to copy texture a reference has;
            validation and test never do (ours, not the paper's).
        intensity_jitter: random joint gain of the training target's HR and LR, in [1 - j, 1 + j] about the
            background (robustness to LR-only normalisation at inference; 0 = off, as the paper).
        norm_percentiles: percentile of all voxels mapped to -1 (background) and of the foreground mapped to +1
            (``fasr.data.normalize.robust_stats``).
        volume_cache: decoded subjects kept in memory per data-loader worker.
        planes: ``axial`` (the volume's slices, in-plane models) or ``thick`` (ours, through-plane models: the
            two families of planes that contain the slice axis, e.g. coronal and sagittal of an axial stack, with
            the slice axis as rows; augmentation keeps it as rows).
        skip_incomplete: skip subjects missing the target or reference (instead of stopping with an error).
        slice_key: variable to read from ``.mat`` slice files holding several.
    """

    kind: Literal["brats", "ixi", "fastmri", "folder", "cache"] = "brats"
    root: str | list[str] = "../shared/data/brats"
    target: str = "t2"
    reference: str = "t1"
    val_subjects: list[str] = field(default_factory=list)
    test_subjects: list[str] = field(default_factory=list)
    pairs_csv: str | None = None
    patch_size: int = 96
    slice_size: int = 256
    min_foreground: float = 0.05
    slice_step: int = 1
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    augment: bool = True
    misalign: tuple[float, float, float] = (0.0, 0.0, 0.0)
    motion: tuple[float, float] = (0.0, 0.0)
    misalign_prob: float = 1.0
    self_reference: bool = False
    intensity_jitter: float = 0.0
    batch_size: int = 4
    num_workers: int = 0
    norm_percentiles: tuple[float, float] = (0.5, 99.5)
    volume_cache: int = 8
    planes: Literal["axial", "thick"] = "axial"
    skip_incomplete: bool = False
    slice_key: str | None = None
