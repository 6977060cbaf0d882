"""``fasr infer`` on whole datasets: a generated BIDS tree (derivatives, sidecars, skipping, resuming, shards),
a folder of pairs found by globs, and a CSV of pairs; with the probe model on tiny volumes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fasr.inference.batch import Job, parse_shard, shard_jobs
from test_infer_support import run_cli, world_field, write_checkpoint

LR_AFFINE = np.diag([4.0, 4.0, 2.0, 1.0])  # 8 x 8 x 2 LR voxels: a 32 x 32 x 4 mm field of view
REF_AFFINE = np.array([[1.0, 0, 0, -4], [0, 1.0, 0, -4], [0, 0, 1.0, -3], [0, 0, 0, 1]])  # 40 x 40 x 8, covering


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "probe.pt")


def write_pair(lr_path: Path | None, ref_path: Path | None, offset: float = 0.0) -> None:
    """A tiny int16 LR (world-linear intensities) and a float reference covering it."""
    for path, affine, shape, field in (
        (lr_path, LR_AFFINE, (8, 8, 2), (500.0 + offset, 5.0, 3.0, 1.0)),
        (ref_path, REF_AFFINE, (40, 40, 8), (300.0, -2.0, 4.0, 1.0)),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            data = world_field(affine, shape, field)
            nib.save(nib.Nifti1Image(np.rint(data).astype(np.int16), affine), path)


@pytest.fixture()
def dataset(tmp_path) -> Path:
    """sub-01 (T2w + T1w), sub-02 (T2w only: no reference), sub-03 with a session ses-a (T2w + T1w)."""
    root = tmp_path / "ds"
    write_pair(root / "sub-01/anat/sub-01_T2w.nii.gz", root / "sub-01/anat/sub-01_T1w.nii.gz")
    write_pair(root / "sub-02/anat/sub-02_T2w.nii.gz", None)
    write_pair(root / "sub-03/ses-a/anat/sub-03_ses-a_T2w.nii.gz", root / "sub-03/ses-a/anat/sub-03_ses-a_T1w.nii.gz")
    (root / "dataset_description.json").write_text(json.dumps({"Name": "toy", "BIDSVersion": "1.8.0"}))
    return root


def table_rows(printed: str) -> dict[str, str]:
    """subject -> status from the printed summary table."""
    rows = re.findall(r"^\| (\S+) \| (done|skipped|finished before|failed) \|", printed, flags=re.M)
    return dict(rows)


def test_bids_dataset_gives_derivatives_and_skips_the_incomplete_subject(dataset, probe, capsys):
    args = ["infer", "--bids", dataset, "--target", "T2w", "--ref", "T1w", "--checkpoint", probe, "--no-progress"]
    assert run_cli(args) == 0
    captured = capsys.readouterr()
    assert table_rows(captured.out) == {"sub-01": "done", "sub-02": "skipped", "sub-03/ses-a": "done"}
    assert "fasr: warning: sub-02: no T1w reference" in captured.err

    deriv = dataset / "derivatives" / "fasr"
    written = sorted(p.relative_to(deriv).as_posix() for p in deriv.rglob("*") if p.is_file())
    assert written == [
        "dataset_description.json",
        "sub-01/anat/sub-01_desc-fasr_T2w.json",
        "sub-01/anat/sub-01_desc-fasr_T2w.nii.gz",
        "sub-01/anat/sub-01_desc-fasrconfidence_T2w.nii.gz",
        "sub-03/ses-a/anat/sub-03_ses-a_desc-fasr_T2w.json",
        "sub-03/ses-a/anat/sub-03_ses-a_desc-fasr_T2w.nii.gz",
        "sub-03/ses-a/anat/sub-03_ses-a_desc-fasrconfidence_T2w.nii.gz",
    ]
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative" and description["BIDSVersion"] == "1.8.0"
    assert [g["Name"] for g in description["GeneratedBy"]] == ["fasr"]
    assert description["DatasetLinks"] == {"raw": "../.."}

    sr = nib.load(deriv / "sub-01/anat/sub-01_desc-fasr_T2w.nii.gz")
    assert sr.shape == (32, 32, 2) and sr.get_data_dtype() == np.int16
    sidecar = json.loads((deriv / "sub-01/anat/sub-01_desc-fasr_T2w.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-01/anat/sub-01_T2w.nii.gz", "bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert sidecar["outputs"]["confidence"].endswith("sub-01_desc-fasrconfidence_T2w.nii.gz")

    # The same pair through `fasr infer`: the same voxels.
    single = dataset.parent / "single.nii.gz"
    anat = dataset / "sub-01/anat"
    assert run_cli(["infer", "--lr", anat / "sub-01_T2w.nii.gz", "--ref", anat / "sub-01_T1w.nii.gz",
                    "--checkpoint", probe, "--out", single, "--no-progress"]) == 0
    np.testing.assert_array_equal(np.asanyarray(nib.load(single).dataobj), np.asanyarray(sr.dataobj))


def test_rerun_skips_finished_outputs_and_redoes_interrupted_ones(dataset, probe, capsys):
    args = ["infer", "--bids", dataset, "--target", "T2w", "--ref", "T1w", "--checkpoint", probe, "--no-progress"]
    assert run_cli(args) == 0
    deriv = dataset / "derivatives" / "fasr"
    first = deriv / "sub-01/anat/sub-01_desc-fasr_T2w.nii.gz"
    third = deriv / "sub-03/ses-a/anat/sub-03_ses-a_desc-fasr_T2w.nii.gz"
    stamps = {p: p.stat().st_mtime_ns for p in (first, third)}
    capsys.readouterr()

    assert run_cli(args) == 0
    out = capsys.readouterr().out
    assert table_rows(out) == {"sub-01": "finished before", "sub-02": "skipped", "sub-03/ses-a": "finished before"}
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    (deriv / "sub-03/ses-a/anat/sub-03_ses-a_desc-fasr_T2w.json").unlink()  # as if stopped before the sidecar
    third.write_bytes(b"half a file")
    assert run_cli(args) == 0
    assert table_rows(capsys.readouterr().out)["sub-03/ses-a"] == "done"
    assert nib.load(third).shape == (32, 32, 2) and first.stat().st_mtime_ns == stamps[first]


def test_shards_cover_every_subject_once(dataset, probe, capsys):
    seen = []
    for shard in ("1/2", "2/2"):
        out = dataset.parent / f"shard{shard[0]}"
        assert run_cli(["infer", "--bids", dataset, "--target", "T2w", "--ref", "T1w", "--checkpoint", probe,
                        "--out", out, "--shard", shard, "--no-progress"]) == 0
        seen.append(set(table_rows(capsys.readouterr().out)))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == {"sub-01", "sub-02", "sub-03/ses-a"}


def test_sharding_keeps_the_sessions_of_a_subject_together():
    jobs = [Job(f"sub-{s}", f"sub-{s}/ses-{t}", None, None, None, None) for s in "1234567" for t in "ab"]
    shards = [shard_jobs(jobs, i, 3) for i in (1, 2, 3)]
    assert sorted(j.label for shard in shards for j in shard) == sorted(j.label for j in jobs)
    assert [sorted({j.subject for j in shard}) for shard in shards] == [
        ["sub-1", "sub-4", "sub-7"], ["sub-2", "sub-5"], ["sub-3", "sub-6"]
    ]
    assert parse_shard(None) == (1, 1) and parse_shard("2/5") == (2, 5)


def test_shard_auto_follows_torchrun(monkeypatch):
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard("auto") == (3, 4)


def test_dataset_option_errors(dataset, probe, capsys):
    base = ["infer", "--checkpoint", probe, "--no-progress"]
    cases = [  # (options, message, exit status: 2 a usage error, 1 the data)
        (["--bids", dataset, "--target", "T2w", "--ref", "T1w", "--shard", "3/2"], "--shard '3/2' must be I/N", 2),
        (["--bids", dataset, "--target", "T2w", "--ref", "T1w", "--participant-label", "09"], "sub-09 is not in", 1),
        (["--bids", dataset, "--ref", "T1w"], "--bids needs --target and --ref", 2),
        (["--bids", dataset.parent, "--target", "T2w", "--ref", "T1w"], "has no sub-* folders", 1),
        (["--lr", "a.nii.gz", "--ref", "b.nii.gz", "--out", "c.nii.gz", "--shard", "1/2"],
         "--shard applies to datasets", 2),
        (["--lr-glob", "x/*.nii.gz", "--out", dataset.parent / "o"], "--lr-glob needs --ref-glob", 2),
    ]
    for extra, message, status in cases:
        assert run_cli([*base, *extra]) == status
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1


def test_participant_label_selects_subjects(dataset, probe, capsys):
    assert run_cli(["infer", "--bids", dataset, "--target", "T2w", "--ref", "T1w", "--checkpoint", probe,
                    "--participant-label", "sub-03", "--no-progress"]) == 0
    assert table_rows(capsys.readouterr().out) == {"sub-03/ses-a": "done"}


def test_folder_of_pairs_by_globs_and_a_csv(tmp_path, probe, capsys):
    scans = tmp_path / "scans"
    write_pair(scans / "a" / "t2.nii.gz", scans / "a" / "t1.nii.gz")
    write_pair(scans / "b" / "t2.nii.gz", None)  # no reference
    out = tmp_path / "out"
    assert run_cli(["infer", "--lr-glob", f"{scans}/*/t2.nii.gz", "--ref-glob", f"{scans}/*/t1.nii.gz",
                    "--checkpoint", probe, "--out", out, "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert table_rows(captured.out) == {"a": "done", "b": "skipped"} and "no reference matches" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["a_confidence.nii.gz", "a_sr.json", "a_sr.nii.gz"]

    (tmp_path / "pairs.csv").write_text("id,lr,ref\ncase1,scans/a/t2.nii.gz,scans/a/t1.nii.gz\n")
    assert run_cli(["infer", "--pairs", tmp_path / "pairs.csv", "--checkpoint", probe, "--out", out,
                    "--no-progress"]) == 0
    assert table_rows(capsys.readouterr().out) == {"case1": "done"}
    np.testing.assert_array_equal(
        np.asanyarray(nib.load(out / "case1_sr.nii.gz").dataobj), np.asanyarray(nib.load(out / "a_sr.nii.gz").dataobj)
    )
