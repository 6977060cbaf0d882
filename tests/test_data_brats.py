"""The real BraTS-format subjects in ``../shared/data/brats`` (skipped when that folder is absent): every
subject loads with its four contrasts on one grid, aligned, in one display orientation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fasr.data.config import DataConfig
from fasr.data.datasets import build_dataset
from fasr.data.io import read_volume
from fasr.data.layouts import find_pairs
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.data.orient import display_codes, display_volume
from fasr.data.subjects import load_subject

BRATS = Path(__file__).resolve().parents[1].parent / "shared/data/brats"
CONTRASTS = ("t1", "t1c", "t2", "flair")

pytestmark = pytest.mark.skipif(not BRATS.is_dir(), reason=f"{BRATS} not present")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def test_every_subject_has_four_coregistered_contrasts() -> None:
    subjects = sorted(p.name for p in BRATS.iterdir() if p.is_dir())
    assert len(subjects) >= 1
    for subject in subjects:
        volumes = {c: read_volume(BRATS / subject / f"{c}.nii.gz", require_3d=True) for c in CONTRASTS}
        shapes = {v.data.shape for v in volumes.values()}
        assert shapes == {(240, 240, 155)}, subject
        for c, v in volumes.items():
            np.testing.assert_allclose(v.affine, volumes["t2"].affine, atol=1e-4, err_msg=f"{subject} {c}")
            assert display_codes(display_volume(v).affine) == ("L", "P", "S")
            assert _dice(v.data > 0, volumes["t2"].data > 0) > 0.9, f"{subject} {c}: brain masks disagree"


@pytest.mark.parametrize("reference", ["t1", "t1c", "flair"])
def test_t2_from_each_reference_loads_aligned(reference: str) -> None:
    cfg = DataConfig(kind="brats", root=str(BRATS), target="t2", reference=reference)
    for source in find_pairs(cfg):
        subject = load_subject(source, percentiles=cfg.norm_percentiles, min_foreground=cfg.min_foreground,
                               slice_key=None)
        assert subject.target.shape == subject.reference.shape == (155, 240, 240)
        assert 80 < len(subject.slices) < 155  # top/bottom slices without brain are skipped
        middle = subject.slices[len(subject.slices) // 2]
        masks = subject.target[middle] > FOREGROUND_LEVEL, subject.reference[middle] > FOREGROUND_LEVEL
        assert _dice(*masks) > 0.9, f"{source.subject}: t2 and {reference} do not overlap"


def test_dataset_samples_at_the_paper_size() -> None:
    cfg = DataConfig(kind="brats", root=str(BRATS), target="t2", reference="t1")
    sample = build_dataset(cfg, "val", 4, train=False)[0]
    assert sample.hr.shape == sample.ref.shape == (1, 256, 256) and sample.lr.shape == (1, 64, 64)
    assert sample.hr.min() == -1 and sample.hr.max() <= 1
