"""``fasr prepare``: the slice cache matches direct reading, manifest contents, --force, cache errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import write_brats_subject
from fasr.cli import main
from fasr.data.config import DataConfig
from fasr.data.datasets import build_dataset
from fasr.errors import FasrError
from test_data_support import LPS, phantom


def _brats(root: Path) -> Path:
    for i, subject in enumerate(["s1", "s2", "s3"]):
        t2 = phantom((24, 20, 5), seed=i, empty_slices=1)
        write_brats_subject(root, subject, {"t2": t2, "t1": ((t2.max() - t2) * (t2 > 0)).astype(np.int16)}, LPS)
    return root


def _prepare(src: Path, dst: Path, *extra: str) -> int:
    return main(["prepare", "brats", str(src), str(dst), "--size", "24", "--scale", "2", "4",
                 "--test-subjects", "s1", *extra])


def test_cache_matches_direct_reading(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    src, dst = _brats(tmp_path / "brats"), tmp_path / "cache"
    assert _prepare(src, dst) == 0
    out = capsys.readouterr()
    assert "prepare brats" in out.err  # the progress bar
    assert "train: 1 subjects / 3 slices" in out.out
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["complete"] and manifest["scales"] == [2, 4] and manifest["target"] == "t2"
    assert manifest["splits"] == {"train": ["s2"], "val": ["s3"], "test": ["s1"]}
    assert manifest["counts"]["test"] == {"subjects": 1, "slices": 3}
    assert manifest["degradation"]["kind"] == "bicubic"
    assert np.load(dst / "val" / "s3" / "lr_x4.npy", mmap_mode="r").shape == (3, 6, 6)
    direct_cfg = DataConfig(root=str(src), test_subjects=["s1"], slice_size=24)
    cache_cfg = DataConfig(kind="cache", root=str(dst), slice_size=24)
    for split in ("val", "test"):
        direct, cached = build_dataset(direct_cfg, split, 4, False), build_dataset(cache_cfg, split, 4, False)
        assert len(direct) == len(cached) == 3
        for a, b in zip(direct, cached):
            assert (a.subject, a.slice_index) == (b.subject, b.slice_index)
            for name in ("hr", "ref", "lr"):
                torch.testing.assert_close(getattr(a, name), getattr(b, name))
            assert a.target_stats == pytest.approx(b.target_stats)
    train = build_dataset(DataConfig(kind="cache", root=str(dst), patch_size=8), "train", 2, True)
    assert train[0].hr.shape == (1, 8, 8) and train[0].lr.shape == (1, 4, 4)


def test_force_is_needed_to_replace_a_cache_and_never_touches_other_folders(tmp_path: Path) -> None:
    src, dst = _brats(tmp_path / "brats"), tmp_path / "cache"
    assert _prepare(src, dst) == 0
    assert _prepare(src, dst) == 1  # FasrError -> exit status 1, nothing overwritten
    assert _prepare(src, dst, "--force", "--scale", "2") == 0
    assert json.loads((dst / "manifest.json").read_text())["scales"] == [2]
    assert not (dst / "val" / "s3" / "lr_x4.npy").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert _prepare(src, mine, "--force") == 1  # not a cache: --force does not apply
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_cache_errors(tmp_path: Path) -> None:
    src, dst = _brats(tmp_path / "brats"), tmp_path / "cache"
    assert _prepare(src, dst, "--scale", "2") == 0
    with pytest.raises(FasrError, match="not x4"):
        build_dataset(DataConfig(kind="cache", root=str(dst)), "val", 4, False)
    manifest = json.loads((dst / "manifest.json").read_text())
    (dst / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    with pytest.raises(FasrError, match="incomplete"):
        build_dataset(DataConfig(kind="cache", root=str(dst)), "val", 2, False)
    with pytest.raises(FasrError, match="not a fasr slice cache"):
        build_dataset(DataConfig(kind="cache", root=str(src)), "val", 2, False)
    assert main(["prepare", "brats", str(src), str(tmp_path / "c2"), "--size", "30", "--scale", "4"]) == 2


def test_folder_cache_keeps_stored_lr_and_degrades_other_scales(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        hr = phantom((16, 16, 1), seed=len(name) + ord(name[0]))[:, :, 0].astype(np.uint16)
        for sub, image in (("hr", hr), ("ref", hr), ("lr", hr[1::2, 1::2])):
            (tmp_path / "src" / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp_path / "src" / sub / name)
    dst = tmp_path / "cache"
    assert main(["prepare", "folder", str(tmp_path / "src"), str(dst), "--size", "16", "--scale", "2", "4"]) == 0
    hr = np.load(dst / "val" / "b.png" / "target.npy")
    np.testing.assert_allclose(np.load(dst / "val" / "b.png" / "lr_x2.npy"), hr[:, 1::2, 1::2])  # stored
    lr4 = np.load(dst / "val" / "b.png" / "lr_x4.npy")
    assert lr4.shape == (1, 4, 4) and not np.allclose(lr4, hr[:, 2::4, 2::4])  # degraded (bicubic)


def test_subject_without_content_is_recorded_with_no_slices(tmp_path: Path) -> None:
    src = _brats(tmp_path / "brats")
    speck = np.zeros((24, 20, 5), np.int16)
    speck[10, 10, 2] = 100  # one voxel: no slice reaches 5 % content
    write_brats_subject(src, "s0", {"t2": speck, "t1": speck}, LPS)
    dst = tmp_path / "cache"
    assert main(["prepare", "brats", str(src), str(dst), "--size", "24", "--val-subjects", "s0"]) == 0
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["counts"]["val"] == {"subjects": 1, "slices": 0}
    assert len(build_dataset(DataConfig(kind="cache", root=str(dst)), "train", 4, False)) == 9
