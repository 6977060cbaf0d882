"""Paired datasets on small files in each real layout: pairing, splits, shapes, alignment, orientation,
resampling onto the target grid, augmentation, misalignment, and one error per bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_brats_subject, write_nifti
from fasr.data.augment import misalign
from fasr.data.config import DataConfig
from fasr.data.datasets import build_dataset
from fasr.data.degrade import Bicubic, KSpace
from fasr.data.layouts import find_pairs, split_pairs, split_sources
from fasr.errors import FasrError
from test_data_support import LPS, as_ras, one_line_error, phantom, write_fastmri, write_ixi

SHAPE = (24, 20, 5)  # (X, Y, Z): slices of 20 rows x 24 columns after display reorientation


def _brats(root: Path, subjects: list[str], same_contrast: bool = False) -> Path:
    """BraTS-format subjects with t2 and t1 (t1 = t2 when ``same_contrast``, else a different image)."""
    for i, subject in enumerate(subjects):
        t2 = phantom(SHAPE, seed=i, empty_slices=1)
        t1 = t2 if same_contrast else (t2.max() - t2) * (t2 > 0)
        write_brats_subject(root, subject, {"t2": t2, "t1": t1.astype(np.int16)}, LPS)
    return root


def _cfg(root: Path, **kw) -> DataConfig:
    defaults = dict(kind="brats", root=str(root), slice_size=24, patch_size=8, min_foreground=0.05)
    return DataConfig(**{**defaults, **kw})


# --- BraTS-format ---------------------------------------------------------------------------------------


def test_brats_split_by_subject_and_whole_slices(tmp_path: Path) -> None:
    root = _brats(tmp_path, ["s1", "s2", "s3", "s4"])
    cfg = _cfg(root, test_subjects=["s1"])
    splits = {split: build_dataset(cfg, split, 4, train=False) for split in ("train", "val", "test")}
    subjects = {split: {s.subject for s in ds} for split, ds in splits.items()}
    assert subjects == {"train": {"s2", "s3"}, "val": {"s4"}, "test": {"s1"}}  # val: last subject by default
    val = list(splits["val"])
    assert [s.slice_index for s in val] == [1, 2, 3]  # the empty end slices are skipped, order is by slice
    sample = val[0]
    assert sample.hr.shape == (1, 24, 24) and sample.ref.shape == (1, 24, 24) and sample.lr.shape == (1, 6, 6)
    assert sample.hr_coords is None and sample.ref_coords is None  # correspondence only for training samples
    assert sample.hr.min() >= -1 and sample.hr.max() <= 1
    torch.testing.assert_close(sample.lr, Bicubic().down(sample.hr[None], 4)[0])  # the paper's degradation
    # 20 -> 24 rows: padded at the bottom (a centred offset of 2 is not a multiple of the scale); the stats
    # map the slice back to the file's intensities.
    assert torch.all(sample.hr[0, 20:] == -1)
    t2 = phantom(SHAPE, seed=3, empty_slices=1)[:, :, 1].T.astype(np.float32)  # LPS is the display order
    low, high = sample.target_stats
    restored = (sample.hr[0, :20].numpy() + 1) / 2 * (high - low) + low
    unclipped = t2 <= high
    assert unclipped.mean() > 0.99
    np.testing.assert_allclose(restored[unclipped], t2[unclipped], atol=0.05)


def test_brats_several_references_one_pair_each(tmp_path: Path) -> None:
    """``reference: t1,t2`` gives one pair per subject and reference; splits stay by subject."""
    root = _brats(tmp_path, ["s1", "s2", "s3"])
    pairs = find_pairs(_cfg(root, reference="t1, t2"))
    assert [(p.subject, p.reference.name) for p in pairs] == [
        (s, f"{c}.nii.gz") for s in ("s1", "s2", "s3") for c in ("t1", "t2")
    ]
    val = build_dataset(_cfg(root, reference="t1,t2"), "val", 4, train=False)
    assert {s.subject for s in val} == {"s3"} and len(val) == 2 * len(build_dataset(_cfg(root), "val", 4, False))


def test_self_reference_adds_own_pairs_to_training_only(tmp_path: Path) -> None:
    root = _brats(tmp_path, ["s1", "s2", "s3"])
    cfg = _cfg(root, reference="t1", self_reference=True, val_subjects=["s3"])
    splits = split_sources(cfg)
    assert [(p.subject, p.reference.name) for p in splits["train"]] == [
        ("s1", "t1.nii.gz"), ("s2", "t1.nii.gz"), ("s1", "t2.nii.gz"), ("s2", "t2.nii.gz")
    ]
    assert [p.reference.name for p in splits["val"]] == ["t1.nii.gz"]
    train = build_dataset(cfg, "train", 4, train=True)
    assert len(train) == 2 * len(build_dataset(_cfg(root, val_subjects=["s3"]), "train", 4, True))
    own, other = train[len(train) - 1], train[0]  # the own pairs come after the cross-contrast ones
    assert torch.equal(own.ref, own.hr) and not torch.equal(other.ref, other.hr)


def test_kspace_degradation_through_the_dataset(tmp_path: Path) -> None:
    cfg = _cfg(_brats(tmp_path, ["a", "b"]))
    cfg.degradation.kind, cfg.degradation.window = "kspace", "hamming"
    sample = build_dataset(cfg, "val", 2, train=False)[0]
    torch.testing.assert_close(sample.lr, KSpace(window="hamming").down(sample.hr[None], 2)[0])


def test_native_slice_size_when_zero(tmp_path: Path) -> None:
    cfg = _cfg(_brats(tmp_path, ["a", "b"]), slice_size=0)
    sample = build_dataset(cfg, "val", 4, train=False)[0]
    assert sample.hr.shape == (1, 20, 24) and sample.lr.shape == (1, 5, 6)  # native, divisible by 4


def test_training_crops_are_aligned_under_augmentation(tmp_path: Path) -> None:
    root = _brats(tmp_path, ["a", "b"], same_contrast=True)
    torch.manual_seed(0)
    dataset = build_dataset(_cfg(root, patch_size=16), "train", 2, train=True)
    for i in range(6):
        s = dataset[i % len(dataset)]
        assert s.hr.shape == (1, 16, 16) and s.lr.shape == (1, 8, 8)
        torch.testing.assert_close(s.ref, s.hr)  # same image as both contrasts: crop and flips are joint
        # The LR crop is the degraded whole slice at the crop: inside its border it equals down(HR crop).
        torch.testing.assert_close(Bicubic().down(s.hr[None], 2)[0, :, 2:-2, 2:-2], s.lr[:, 2:-2, 2:-2])


def test_evaluation_samples_are_deterministic_with_noise_and_misalignment(tmp_path: Path) -> None:
    cfg = _cfg(_brats(tmp_path, ["a", "b"], same_contrast=True), misalign=(2.0, 5.0, 0.05))
    cfg.degradation.noise = "rician"
    dataset = build_dataset(cfg, "val", 2, train=False)
    first, again = dataset[1], dataset[1]
    torch.testing.assert_close(first.lr, again.lr)
    torch.testing.assert_close(first.ref, again.ref)
    assert not torch.allclose(first.ref, first.hr)  # the reference is moved away from the target


def test_misalign_prob_keeps_a_share_of_references_registered(tmp_path: Path) -> None:
    """data.misalign_prob (ours): each sample's reference is misaligned with that probability, else registered
    exactly; deterministic per evaluation slice; out of [0, 1] is refused."""
    root = _brats(tmp_path, ["a", "b"], same_contrast=True)
    moved = {}
    for prob in (0.0, 0.5, 1.0):
        dataset = build_dataset(_cfg(root, misalign=(2.0, 5.0, 0.05), misalign_prob=prob), "val", 2, train=False)
        moved[prob] = [not torch.allclose(s.ref, s.hr) for s in dataset]
        assert moved[prob] == [not torch.allclose(s.ref, s.hr) for s in dataset]  # same draw every time
    assert not any(moved[0.0]) and all(moved[1.0])
    assert 0 < sum(moved[0.5]) < len(moved[0.5])
    with pytest.raises(FasrError, match="misalign_prob must be in"):
        build_dataset(_cfg(root, misalign=(2.0, 0.0, 0.0), misalign_prob=1.5), "val", 2, train=False)[0]


def test_misalign_moves_the_reference_by_at_most_the_limits() -> None:
    image = torch.full((1, 1, 33, 33), -1.0)
    image[..., 14:19, 14:19] = 1.0  # a block centred at (16, 16)
    moved = misalign(image, 3.0, 0.0, 0.0, torch.Generator().manual_seed(1))
    weights = (moved + 1)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    cy, cx = (weights * ys).sum() / weights.sum(), (weights * xs).sum() / weights.sum()
    assert 0 < max(abs(cy - 16), abs(cx - 16)) <= 3.0 + 1e-4
    assert moved[0, 0, 0, 0] == -1.0  # pixels from outside are background
    still = misalign(image, 0.0, 0.0, 0.0, None)
    torch.testing.assert_close(still, image)


def test_orientation_ras_and_lps_subjects_give_the_same_slices(tmp_path: Path) -> None:
    t2 = phantom(SHAPE, seed=7, empty_slices=1)
    write_brats_subject(tmp_path / "lps", "s", {"t2": t2, "t1": t2}, LPS)
    data, affine = as_ras(t2, LPS)
    write_brats_subject(tmp_path / "ras", "s", {"t2": data, "t1": data}, affine)
    a = build_dataset(_cfg(tmp_path / "lps", val_subjects=["s"]), "val", 2, train=False)
    b = build_dataset(_cfg(tmp_path / "ras", val_subjects=["s"]), "val", 2, train=False)
    for sa, sb in zip(a, b):
        torch.testing.assert_close(sa.hr, sb.hr)


def test_reference_on_another_grid_is_resampled_onto_the_target(tmp_path: Path) -> None:
    """Reference stored transposed with 2 mm voxels in-plane: resampled through the affines."""
    t2 = phantom((24, 24, 5), seed=3, empty_slices=1).astype(np.float32)
    coarse = t2[::2, ::2]  # voxel (i, j) of the reference = target voxel (2i, 2j)
    ref = np.ascontiguousarray(coarse.transpose(1, 0, 2))  # axes swapped: ref voxel (j, i)
    ref_affine = LPS @ np.array([[0, 2.0, 0, 0], [2.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    write_nifti(tmp_path / "s" / "t2.nii.gz", t2, LPS)
    write_nifti(tmp_path / "s" / "t1.nii.gz", ref, ref_affine)
    dataset = build_dataset(_cfg(tmp_path, val_subjects=["s"], slice_size=24), "val", 2, train=False)
    sample = dataset[1]
    # On the target's even voxels (where reference voxels sit) the resampled reference equals the target.
    np.testing.assert_allclose(sample.ref[0, ::2, ::2].numpy(), sample.hr[0, ::2, ::2].numpy(), atol=1e-2)


# --- IXI ------------------------------------------------------------------------------------------------

IXI = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212"]


def test_ixi_pairs_t2_with_pd_by_subject_id(tmp_path: Path) -> None:
    write_ixi(tmp_path, IXI, ("T2", "PD"), (16, 16, 4))
    cfg = _cfg(tmp_path, kind="ixi", target="t2", reference="pd", slice_size=16, val_subjects=[IXI[0]])
    pairs = find_pairs(cfg)
    assert [p.subject for p in pairs] == IXI
    assert pairs[1].target.name == "IXI012-HH-1211-T2.nii.gz" and pairs[1].reference.parent.name == "IXI-PD"
    sample = build_dataset(cfg, "val", 2, train=False)[0]
    assert sample.subject == IXI[0]
    assert sample.ref_stats[1] == pytest.approx(1.5 * sample.target_stats[1], rel=0.01)  # PD = 1.5 x T2
    swapped = find_pairs(_cfg(tmp_path, kind="ixi", target="pd", reference="t2"))
    assert swapped[0].target.parent.name == "IXI-PD"


def test_missing_reference_for_a_subject(tmp_path: Path) -> None:
    write_ixi(tmp_path, IXI, ("T2",), (16, 16, 4))
    write_ixi(tmp_path, IXI[:2], ("PD",), (16, 16, 4))
    cfg = _cfg(tmp_path, kind="ixi", target="t2", reference="pd")
    assert IXI[2] in one_line_error("has no reference 'pd'", find_pairs, cfg)
    cfg.skip_incomplete = True
    with pytest.warns(UserWarning, match="skipping subject"):
        assert [p.subject for p in find_pairs(cfg)] == IXI[:2]
    brats = _brats(tmp_path / "brats", ["a"])
    (brats / "a" / "t1.nii.gz").unlink()
    one_line_error("subject 'a' has no reference 't1'", find_pairs, _cfg(brats))


def test_split_never_shares_a_subject_and_rejects_unknown_ids(tmp_path: Path) -> None:
    write_ixi(tmp_path, IXI, ("T2", "PD"), (16, 16, 4))
    pairs = find_pairs(_cfg(tmp_path, kind="ixi", target="t2", reference="pd"))
    splits = split_pairs(pairs, val=[IXI[1]], test=[IXI[0]])
    assert [[p.subject for p in splits[s]] for s in ("train", "val", "test")] == [[IXI[2]], [IXI[1]], [IXI[0]]]
    one_line_error("unknown subject", split_pairs, pairs, ["IXI999-Guys-0000"], [])
    one_line_error("both val and test", split_pairs, pairs, [IXI[0]], [IXI[0]])


# --- fastMRI --------------------------------------------------------------------------------------------


def _fastmri(root: Path) -> Path:
    """Two knees, PD and PDFS files with unrelated names; PDFS has one slice more; 20x20 'native'."""
    rows = []
    for i in range(2):
        pd = np.stack([phantom((20, 20, 1), seed=10 * i + s)[:, :, 0] for s in range(3)]).astype(np.float32)
        pdfs = np.concatenate([0.5 * pd, 0.5 * pd[:1]])
        write_fastmri(root / f"file100{i}001.h5", pd, "CORPD_FBK")
        write_fastmri(root / f"file100{i}777.h5", pdfs, "CORPDFS_FBK")
        rows.append({"pd": f"file100{i}001.h5", "pdfs": f"file100{i}777.h5"})
    with (root / "pairs.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["pd", "pdfs"])
        writer.writeheader()
        writer.writerows(rows)
    return root / "pairs.csv"


def test_fastmri_pairs_from_csv_and_centre_crop(tmp_path: Path) -> None:
    pairs_csv = _fastmri(tmp_path)
    cfg = _cfg(tmp_path, kind="fastmri", target="pdfs", reference="pd", pairs_csv=str(pairs_csv), slice_size=16)
    pairs = find_pairs(cfg)
    assert [(p.subject, p.reference.name) for p in pairs] == [("file1000777", "file1000001.h5"),
                                                               ("file1001777", "file1001001.h5")]
    dataset = build_dataset(cfg, "val", 4, train=False)
    assert len(dataset) == 3  # 3 PD slices vs 4 PDFS: the centred overlap
    sample = dataset[0]
    assert sample.hr.shape == (1, 16, 16)  # centre crop of the 20x20 slices
    torch.testing.assert_close(sample.hr, sample.ref, atol=2e-3, rtol=0)  # PDFS = PD / 2, normalised alike


def test_fastmri_csv_errors(tmp_path: Path) -> None:
    pairs_csv = _fastmri(tmp_path)
    one_line_error("give data.pairs_csv", find_pairs, _cfg(tmp_path, kind="fastmri", target="pdfs", reference="pd"))
    swapped = _cfg(tmp_path, kind="fastmri", target="pd", reference="pdfs", pairs_csv=str(pairs_csv))
    swapped_csv = tmp_path / "swapped.csv"
    swapped_csv.write_text(pairs_csv.read_text().replace("pd,pdfs", "pdfs,pd", 1))
    swapped.pairs_csv = str(swapped_csv)
    one_line_error("is a CORPDFS_FBK scan but .* lists it under 'pd'", find_pairs, swapped)


# --- folders of 2-D slices ------------------------------------------------------------------------------


def _slice_folder(root: Path, names: list[str], with_lr: bool) -> None:
    for i, name in enumerate(names):
        hr = phantom((16, 16, 1), seed=i)[:, :, 0].astype(np.uint16)
        for sub, image in (("hr", hr), ("ref", hr // 2 + 1)):
            (root / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / sub / name)
        if with_lr:
            (root / "lr").mkdir(exist_ok=True)
            Image.fromarray(hr[1::2, 1::2]).save(root / "lr" / name)  # a stored LR: plain subsampling


def test_folder_of_slices_uses_stored_lr(tmp_path: Path) -> None:
    _slice_folder(tmp_path, ["a.png", "b.png", "c.png"], with_lr=True)
    cfg = _cfg(tmp_path, kind="folder", slice_size=16, test_subjects=["a.png"])
    sample = build_dataset(cfg, "val", 2, train=False)[0]
    assert sample.subject == "c.png" and sample.lr.shape == (1, 8, 8)
    torch.testing.assert_close(sample.lr, sample.hr[:, 1::2, 1::2])  # the stored LR, not a degradation
    train = build_dataset(cfg, "train", 2, train=True)
    assert len(train) == 1 and train[0].lr.shape == (1, 4, 4)


def test_pre_split_folder(tmp_path: Path) -> None:
    _slice_folder(tmp_path / "train", ["a.png", "b.png"], with_lr=False)
    _slice_folder(tmp_path / "val", ["c.png"], with_lr=False)
    cfg = _cfg(tmp_path, kind="folder", slice_size=16)
    assert [s.subject for s in build_dataset(cfg, "train", 2, train=False)] == ["a.png", "b.png"]
    assert [s.subject for s in build_dataset(cfg, "val", 2, train=False)] == ["c.png"]
    one_line_error("has no 'test/'", build_dataset, cfg, "test", 2, False)


# --- bad inputs through the dataset -----------------------------------------------------------------------


def test_two_d_file_in_a_volume_dataset(tmp_path: Path) -> None:
    t2 = phantom((16, 16, 1), seed=0)
    write_brats_subject(tmp_path, "s", {"t2": t2[:, :, 0], "t1": t2[:, :, 0]}, LPS)
    one_line_error("is a 2-D image", build_dataset, _cfg(tmp_path, val_subjects=["s"]), "val", 2, False)


def test_nan_and_empty_volumes_in_a_dataset(tmp_path: Path) -> None:
    t2 = phantom(SHAPE, seed=0).astype(np.float32)
    bad = t2.copy()
    bad[3, 3, 3] = np.nan
    write_brats_subject(tmp_path / "nan", "s", {"t2": t2, "t1": bad}, LPS)
    assert "t1.nii.gz" in one_line_error("NaN/inf", build_dataset, _cfg(tmp_path / "nan", val_subjects=["s"]),
                                          "val", 2, False)
    write_brats_subject(tmp_path / "zero", "s", {"t2": np.zeros(SHAPE, np.int16), "t1": t2}, LPS)
    one_line_error("is empty", build_dataset, _cfg(tmp_path / "zero", val_subjects=["s"]), "val", 2, False)


def test_mismatched_field_of_view_names_both_files(tmp_path: Path) -> None:
    t2 = phantom(SHAPE, seed=0)
    write_nifti(tmp_path / "s" / "t2.nii.gz", t2, LPS)
    far = LPS.copy()
    far[:3, 3] += [0.0, 0.0, 400.0]  # another session / broken header: 40 cm away
    write_nifti(tmp_path / "s" / "t1.nii.gz", t2, far)
    message = one_line_error("covers only", build_dataset, _cfg(tmp_path, val_subjects=["s"]), "val", 2, False)
    assert "t1.nii.gz" in message and "t2.nii.gz" in message


def test_empty_split_and_bad_sizes(tmp_path: Path) -> None:
    cfg = _cfg(_brats(tmp_path, ["a", "b"]))
    one_line_error("split 'test' .* has no subjects", build_dataset, cfg, "test", 2, False)
    cfg.slice_size = 18
    one_line_error("not divisible by scale 4", build_dataset, cfg, "val", 4, False)


def test_motion_needs_volumes_not_a_folder_of_slices(tmp_path: Path) -> None:
    """A 2-D slice has no volume to move through-plane: data.motion on a folder dataset is a clear error, not a
    reference blanked by sampling outside its one slice."""
    _slice_folder(tmp_path, ["a.png", "b.png", "c.png"], with_lr=False)
    cfg = _cfg(tmp_path, kind="folder", slice_size=16, test_subjects=["a.png"], motion=(2.0, 2.0))
    with pytest.raises(FasrError, match="data.motion needs the reference volume"):
        build_dataset(cfg, "val", 2, train=False)[0]
