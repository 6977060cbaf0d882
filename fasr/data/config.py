"""Data section of the run config."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["DataConfig", "DegradationConfig"]


@dataclass
class DegradationConfig:
    """How LR (and Ref-down-up) images are made from HR ones.

    Args:
        kind: ``bicubic`` (the paper's, antialiased like PIL/MATLAB) or ``kspace`` (centre crop of k-space).
        window: k-space window: ``none``, ``hamming`` or ``tukey``.
        noise: ``none``, ``gaussian`` or ``rician``.
        snr: signal-to-noise ratio of the added noise (mean foreground / sigma).
    """

    kind: str = "bicubic"
    window: str = "none"
    noise: str = "none"
    snr: float = 30.0


@dataclass
class DataConfig:
    """Which data to read and how to sample it.

    Args:
        kind: ``brats``, ``ixi``, ``fastmri``, ``folder`` or ``cache`` (a ``fasr prepare`` output).
        root: dataset root (relative paths are relative to the working directory).
        target: target contrast (e.g. ``t2``); reference: reference contrast (e.g. ``t1``).
        val_subjects / test_subjects: subject ids held out (split by subject, never by slice).
        patch_size: HR training crop size (LR crop = patch_size / scale).
        slice_size: in-plane size slices are padded/cropped to (256 in the paper).
        misalign: max random reference misalignment as (shift px, rotation deg, scale fraction); 0 = off.
    """

    kind: str = "brats"
    root: str = "../shared/data/brats"
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
    batch_size: int = 4
    num_workers: int = 0
