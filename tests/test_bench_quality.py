"""``fasr bench quality``: suite rows and their configs, the step budget, aggregation, outputs, end to end."""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_brats as write_synthetic_brats
from fasr.bench.quality import runs as run_cache
from fasr.bench.quality.budget import seconds_per_step, steps_for_budget
from fasr.bench.quality.report import summarize
from fasr.bench.quality.runs import RunResult, train_and_score, train_reference
from fasr.bench.quality.suites import (
    METHODS,
    SUITES,
    Entry,
    find_subjects,
    named_entry,
    run_config,
    stretch_schedule,
    suite_entries,
)
from fasr.checkpoint import save_checkpoint
from fasr.cli import main
from fasr.config import RunConfig, deep_merge, from_dict
from fasr.errors import FasrError, UsageError


def write_brats(root: Path, shape: tuple[int, int, int] = (48, 48, 6)) -> Path:
    """The shared synthetic BraTS writer with this module's three subjects ``subject-0..2``."""
    return write_synthetic_brats(root, [f"subject-{i}" for i in range(3)], shape)


BASE = {"schedule": {"epochs": 10, "steps_per_epoch": 5}}


def result(label: str, psnr: float, ssim: float, seed: int = 0) -> RunResult:
    return RunResult(label, "s4", seed, psnr, ssim, 20.0, 0.5, params=10, steps=5, wall_s=60.0, run_dir="r")


def test_deep_merge_merges_sections_without_touching_inputs() -> None:
    base = {"model": {"name": "fasr", "n_feats": 64}, "seed": 0}
    delta = {"model": {"alignment": "ma"}, "seed": 3}
    merged = deep_merge(base, delta)
    assert merged == {"model": {"name": "fasr", "n_feats": 64, "alignment": "ma"}, "seed": 3}
    assert base == {"model": {"name": "fasr", "n_feats": 64}, "seed": 0}


@pytest.mark.parametrize(
    "suite, field, expected",
    [
        ("methods", "model.name", ["bicubic", "edsr", "swinir", "mcsr", "minet", "ttsr", "masa", "fasr"]),
        ("modules", "model.alignment", ["both", "ma", "sa", "both", "cross_attention"]),
        ("modules", "model.fusion", ["chpf", "chpf", "chpf", "decoder", "chpf"]),
        ("losses", "loss.l1", [1.0, 0.0, 1.0, 1.0]),
        ("losses", "loss.perceptual", [1.0, 1.0, 0.0, 1.0]),
        ("losses", "loss.fourier", [1.0, 1.0, 1.0, 0.0]),
        ("backbones", "model.backbone", ["vgg19", "resnet18", "resnet34"]),
    ],
)
def test_suite_rows_set_the_paper_switches(suite: str, field: str, expected: list) -> None:
    """Every row's delta is a valid config and flips exactly the switch its table varies."""
    section, key = field.split(".")
    values = []
    for entry in suite_entries(suite):
        cfg = run_config(BASE, entry, held_out="s4", seed=0, steps=10, overrides=[])
        values.append(getattr(getattr(cfg, section), key))
    assert values == expected
    assert [e.label for e in suite_entries(suite)] == list(SUITES[suite])


def test_run_config_sets_split_seed_steps_then_overrides() -> None:
    base = deep_merge(BASE, {"model": {"n_feats": 32}, "data": {"val_subjects": ["x"]}})
    overrides = ["model.n_feats=16", "loss.warmup_epochs=3"]
    cfg = run_config(base, Entry("edsr", {"model": {"name": "edsr"}}), "s2", 3, 40, overrides)
    assert (cfg.model.name, cfg.model.n_feats, cfg.seed) == ("edsr", 16, 3)
    assert cfg.data.val_subjects == ["s2"] and cfg.schedule.max_steps == 40
    assert cfg.loss.warmup_epochs == 3  # an explicit override wins over the stretched schedule


def test_stretch_schedule_keeps_the_recipe_shape() -> None:
    """cpu-quick's recipe: 40 epochs of 20 steps, L1 warm-up for the first 10, validation every 5."""
    recipe = {"schedule": {"epochs": 40, "steps_per_epoch": 20, "decay": "step", "decay_every": 20}}
    cfg = from_dict(RunConfig, deep_merge(recipe, {"loss": {"warmup_epochs": 10}}))
    assert stretch_schedule(cfg, 2000) == {
        "schedule": {"max_steps": 2000, "epochs": 100, "decay_every": 50, "val_every": 10},
        "loss": {"warmup_epochs": 25},
    }
    short = stretch_schedule(cfg, 30)  # 2 epochs, the second cut short by max_steps
    assert short["schedule"]["epochs"] == 2 and short["loss"]["warmup_epochs"] == 0
    with pytest.raises(FasrError, match="steps_per_epoch"):
        stretch_schedule(from_dict(RunConfig, {}), 100)


def test_steps_for_budget_shares_the_budget_equally() -> None:
    # 2 rows at 0.5 s and 1.5 s per step, 2 runs each: 4 s per common step -> 600 s buys 150 steps.
    assert steps_for_budget({"a": 0.5, "b": 1.5}, runs_per_row=2, budget_s=600) == 150
    assert steps_for_budget({"bicubic": 0.0}, runs_per_row=1, budget_s=60) == 0
    with pytest.raises(FasrError, match="too small"):
        steps_for_budget({"a": 100.0}, runs_per_row=1, budget_s=60)


def test_seconds_per_step_times_a_real_step() -> None:
    base = deep_merge(
        BASE, {"data": {"patch_size": 16, "batch_size": 1}, "model": {"n_feats": 8}, "loss": {"perceptual": 0.0}}
    )
    edsr = run_config(base, Entry("edsr", {"model": {"name": "edsr"}}), "s", 0, 1, [])
    bicubic = run_config(base, Entry("bicubic", {"model": {"name": "bicubic"}}), "s", 0, 1, [])
    assert 0 < seconds_per_step(edsr, repeats=1) < 5
    assert seconds_per_step(bicubic) == 0.0


def test_summarize_mean_and_sample_std_per_row() -> None:
    rows = summarize([result("a", 30.0, 0.90), result("b", 20.0, 0.5), result("a", 32.0, 0.94, seed=1)])
    assert [r.label for r in rows] == ["a", "b"]
    a, b = rows
    assert (a.psnr_mean, a.ssim_mean, a.runs) == (31.0, pytest.approx(0.92), 2)
    assert a.psnr_std == pytest.approx(2**0.5)  # sample std of (30, 32)
    assert (b.psnr_std, b.runs) == (0.0, 1)
    assert (a.gain_mean, b.gain_mean) == (11.0, 0.0)  # bicubic scores 20 dB in every run
    assert not a.plateaued  # no validations to tell


def test_a_row_has_plateaued_only_when_every_run_has() -> None:
    runs = [result("a", 30.0, 0.9), result("a", 30.1, 0.9, seed=1), result("b", 30.0, 0.9)]
    runs[0].plateau_gain, runs[1].plateau_gain, runs[2].plateau_gain = 0.01, 0.08, 0.0
    runs[1].steps = 4  # an unfinished run shows in the steps column
    a, b = summarize(runs)
    assert (a.plateaued, a.plateau_gain_max, a.steps, a.steps_max) == (False, 0.08, 4, 5)
    assert (b.plateaued, b.steps, b.steps_max) == (True, 5, 5)


def test_find_subjects_uses_the_data_layer(tmp_path: Path) -> None:
    for name in ("s2", "s1"):
        (tmp_path / name).mkdir()
        for contrast in ("t1", "t2"):
            (tmp_path / name / f"{contrast}.nii.gz").touch()
    data = {"kind": "brats", "root": str(tmp_path), "target": "t2", "reference": "t1"}
    assert find_subjects(data) == ["s1", "s2"]
    (tmp_path / "s2" / "t2.nii.gz").unlink()
    with pytest.raises(FasrError, match="s2"):  # an incomplete subject is reported, not silently dropped
        find_subjects(data)
    with pytest.warns(UserWarning, match="skipping subject 's2'"), pytest.raises(FasrError, match="at least 2"):
        find_subjects({**data, "skip_incomplete": True})


def test_finished_run_is_reused_only_for_the_same_config_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_brats(tmp_path / "brats", shape=(16, 16, 4))
    base = deep_merge(BASE, {"data": {"root": str(data), "slice_size": 0, "min_foreground": 0.01}})
    cfg = run_config(base, Entry("bicubic", {"model": {"name": "bicubic"}}), "subject-2", 0, 5, [])
    run_dir = tmp_path / "run"
    monkeypatch.setattr(run_cache, "source_fingerprint", lambda: "v1")
    first = train_and_score(cfg, "bicubic", run_dir, eval_slices=0)
    assert (first.steps, first.params) == (0, 0)  # nothing to train: scored as a weightless checkpoint
    stored = json.loads((run_dir / "bench.json").read_text())
    stored["result"]["psnr"] = -1.0  # a marker: is the record reused or recomputed?
    (run_dir / "bench.json").write_text(json.dumps(stored))
    assert train_and_score(cfg, "bicubic", run_dir, eval_slices=0).psnr == -1.0
    shutil.copytree(run_dir, tmp_path / "copy")  # the same run under another suite's row name
    copied = train_and_score(cfg, "baseline", tmp_path / "copy", eval_slices=0)
    assert (copied.psnr, copied.label, copied.run_dir) == (-1.0, "baseline", str(tmp_path / "copy"))
    assert train_and_score(cfg, "bicubic", run_dir, eval_slices=1).psnr != -1.0  # other scoring
    (run_dir / "bench.json").write_text(json.dumps(stored))
    monkeypatch.setattr(run_cache, "source_fingerprint", lambda: "v2")
    assert train_and_score(cfg, "bicubic", run_dir, eval_slices=0).psnr == first.psnr  # other code


def test_existing_results_are_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "methods.json").write_text("{}")
    assert main(["bench", "quality", "--suite", "methods", "--quick", "--out", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "methods.json").read_text() == "{}"


def test_unknown_row_is_a_user_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "quality", "--suite", "modules", "--only", "wo-xx", "--out", str(tmp_path)]) == 2
    assert "wo-xx" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_methods_suite_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Every method trains 2 steps on a tiny dataset, is scored, tabulated and plotted; a re-run reuses the runs."""
    monkeypatch.setattr(run_cache, "source_fingerprint", lambda: "this checkout")  # others may edit fasr/ meanwhile
    data, out, base = write_brats(tmp_path / "brats"), tmp_path / "results", tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(deep_merge(BASE, {"data": {"min_foreground": 0.01}})))
    argv = ["bench", "quality", "--suite", "methods", "--quick", "--degradation", "bicubic,kspace"]
    argv += ["--test-subjects", "subject-0", "--out", str(out), "--data", str(data), "--base", str(base)]
    assert main(argv) == 0
    report = json.loads((out / "methods.json").read_text())
    assert list(report["tables"]) == ["bicubic", "kspace"]
    assert all([row["label"] for row in rows] == list(METHODS) for rows in report["tables"].values())
    assert {run["degradation"] for run in report["runs"]} == {"bicubic", "kspace"}
    runs = {run["label"]: run for run in report["runs"] if run["degradation"] == "bicubic"}
    assert all(run["held_out"] == "subject-2" and math.isfinite(run["psnr"]) for run in runs.values())
    assert all(math.isfinite(run["test_psnr"]) and len(run["test_slice_psnr"]) == 2 for run in runs.values())
    # Every other row of Table I is a claim against fasr, and each row one against its neighbour below in the
    # paper's ranking, tested on the test subject's slices; two slices can never make a claim significant.
    claims = report["claims"]["kspace"]
    assert [c["row"] for c in claims if c["kind"] == "full model"] == [m for m in METHODS if m != "fasr"]
    ordering = [(c["reference"], c["row"]) for c in claims if c["kind"] == "ordering"]
    assert ordering == [("swinir", "masa"), ("masa", "ttsr"), ("ttsr", "minet"), ("minet", "mcsr"),
                        ("mcsr", "edsr"), ("edsr", "bicubic")]
    assert all(c["split"] == "test" and c["slices"] == 2 and c["seeds"] == 1 for c in claims)
    assert all(c["p_value"] >= 0.5 and c["verdict"] == "not significant" for c in claims)
    assert runs["bicubic"]["steps"] == 0 and runs["bicubic"]["params"] == 0
    assert all(runs[m]["steps"] == 2 and runs[m]["params"] > 0 for m in METHODS[1:])
    # The bicubic row is the evaluator's own bicubic reference, on the same slices.
    assert runs["bicubic"]["psnr"] == pytest.approx(runs["edsr"]["bicubic_psnr"])
    # An untrained baseline is bicubic; two steps at the baselines' learning rate barely move it.
    assert runs["edsr"]["psnr"] == pytest.approx(runs["bicubic"]["psnr"], abs=0.5)
    assert report["command"].startswith("fasr bench quality --suite methods --quick")
    assert report["machine"]["cores"] >= 1 and report["commit"]
    table = (out / "methods.md").read_text()
    assert all(f"| {m} |" in table for m in METHODS) and "git commit" in table
    total = sum(run["wall_s"] for run in report["runs"]) / 3600
    assert report["compute_hours"] == pytest.approx(total) and f"- compute: {total:.1f} h" in table
    assert report["shared_compute_hours"] == 0 and "another suite" not in table  # methods trained all its runs
    assert f"summed over the {2 * len(METHODS)} runs tabulated" in table
    assert "## kspace LR" in table and "| fasr > masa † | full model | +0.44 |" in table
    for figure in ("methods.png", "methods-residuals.png", "methods-curves.png"):
        assert (out / figure).stat().st_size > 1000

    # Results are never overwritten silently; with --force they are rewritten from the finished runs, reused
    # because neither their config nor the source changed (an interrupted suite continues where it stopped).
    assert main(argv) == 1
    assert main([*argv, "--force"]) == 0
    assert json.loads((out / "methods.json").read_text())["runs"] == report["runs"]
    # A progress report trains nothing: the finished runs alone (here: of two seeds asked for, the one trained).
    assert main([*argv, "--force", "--finished-only", "--seeds", "2"]) == 0
    progress = json.loads((out / "methods.json").read_text())
    assert progress["runs"] == report["runs"] and progress["finished_only"]
    n = len(METHODS)
    assert f"a progress report: {2 * n} of the {4 * n} runs finished so far" in (out / "methods.md").read_text()
    assert main([*argv, "--force", "--finished-only", "--out", str(tmp_path / "empty")]) == 1
    # A run that another live process holds is left to it (several processes share one suite's runs).
    held = out / "runs" / "methods" / "edsr" / "bicubic" / "subject-2-seed1"
    with run_cache.claimed(held):  # as another process training it would
        assert main([*argv, "--force", "--seeds", "2", "--only", "edsr"]) == 0
    assert "edsr [bicubic, subject-2, seed 1]: skipped, process" in capsys.readouterr().out
    shared = json.loads((out / "methods.json").read_text())
    assert {(r["degradation"], r["seed"]) for r in shared["runs"]} == {("bicubic", 0), ("kspace", 0), ("kspace", 1)}
    assert not (held / "last.pt").exists() and shared["partial"]
    assert "a progress report: 3 of the 4 runs finished so far" in (out / "methods.md").read_text()
    # A row of another suite that is the same model and config (modules' complete = methods' fasr) is not
    # trained again: the finished run serves it.
    assert main([*argv[:3], "modules", *argv[4:], "--only", "complete"]) == 0
    modules = json.loads((out / "modules.json").read_text())
    fasr_runs = {(r["degradation"], r["seed"]): r for r in report["runs"] if r["label"] == "fasr"}
    assert {(r["degradation"], r["seed"]) for r in modules["runs"]} == set(fasr_runs)
    for r in modules["runs"]:
        assert r["label"] == "complete" and r["psnr"] == fasr_runs[r["degradation"], r["seed"]]["psnr"]
        assert r["run_dir"] == fasr_runs[r["degradation"], r["seed"]]["run_dir"]
    assert not list((out / "runs" / "modules").rglob("last.pt"))
    # modules' wo-fa is methods' ttsr (the same network under another name): the ttsr runs serve it too.
    assert main([*argv[:3], "modules", *argv[4:], "--force", "--only", "wo-fa"]) == 0
    ttsr_runs = {(r["degradation"], r["seed"]): r for r in report["runs"] if r["label"] == "ttsr"}
    shared = json.loads((out / "modules.json").read_text())
    wo_fa = shared["runs"]
    assert shared["compute_hours"] > 0  # every run is methods': all of its compute was counted there
    assert shared["shared_compute_hours"] == pytest.approx(shared["compute_hours"])
    assert {(r["degradation"], r["seed"]): (r["label"], r["run_dir"]) for r in wo_fa} == {
        key: ("wo-fa", r["run_dir"]) for key, r in ttsr_runs.items()}
    assert not list((out / "runs" / "modules").rglob("last.pt"))
    # A run's records without its weights (kept in a repository, copied to a new machine) still count as
    # finished: the tables are the same, and only the residual maps, which need the weights, leave the row out.
    records = tmp_path / "records"
    (records / "methods-residuals.png").parent.mkdir()
    (records / "methods-residuals.png").write_bytes(b"an earlier figure")  # not of these tables: removed
    for bench in (out / "runs" / "methods").rglob(run_cache.RECORD):
        dest = records / "runs" / bench.parent.relative_to(out / "runs")
        dest.mkdir(parents=True)
        for name in (run_cache.RECORD, run_cache.TRAINED, "metrics.jsonl"):
            if (bench.parent / name).is_file():
                shutil.copy(bench.parent / name, dest / name)
    capsys.readouterr()
    assert main([*argv, "--force", "--finished-only", "--seeds", "2", "--out", str(records)]) == 0
    restored = json.loads((records / "methods.json").read_text())
    assert f"left out {', '.join(METHODS[1:])} (a run" in capsys.readouterr().out  # bicubic needs no weights
    assert main([*argv, "--force", "--finished-only", "--seeds", "2"]) == 0
    everything = json.loads((out / "methods.json").read_text())

    def scores(runs: list[dict]) -> list[tuple]:
        return sorted((r["label"], r["degradation"], r["seed"], r["psnr"], r["test_psnr"]) for r in runs)

    assert scores(restored["runs"]) == scores(everything["runs"])
    assert len(restored["runs"]) == 2 * len(METHODS) + 1  # seed 0 of every row on both LRs, edsr's k-space seed 1
    assert (records / "methods-curves.png").is_file() and not (records / "methods-residuals.png").exists()


def test_a_run_is_claimed_by_one_live_process(tmp_path: Path) -> None:
    """Inside the block the run is this process's and names it; another claim meanwhile gets the holder (skip);
    after the block, or when the holder has died (its lock file left behind), the run can be claimed again."""
    with run_cache.claimed(tmp_path / "run") as owner:
        assert owner is None
        with run_cache.claimed(tmp_path / "run") as other:  # a second claim: as from another process
            assert other == {"host": socket.gethostname(), "pid": os.getpid()}
    with run_cache.claimed(tmp_path / "run") as owner:
        assert owner is None
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run" / run_cache.LOCK)],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with run_cache.claimed(tmp_path / "run") as other:
        assert other == {"host": socket.gethostname(), "pid": holder.pid}
    holder.kill()
    holder.wait()
    with run_cache.claimed(tmp_path / "run") as owner:  # killed: the system released its lock
        assert owner is None


HOLD = """import fcntl, json, os, socket, sys, time
f = open(sys.argv[1], "a+"); fcntl.flock(f, fcntl.LOCK_EX); f.seek(0); f.truncate()
json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f); f.flush(); print("held", flush=True); time.sleep(60)
"""


def test_missing_data_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = ["bench", "quality", "--suite", "methods", "--quick", "--out", str(tmp_path), "--data", str(tmp_path / "x")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "--data" in err and len(err.strip().splitlines()) == 1


def test_named_entry_finds_the_row_and_its_suite() -> None:
    assert named_entry("edsr") == ("methods", Entry("edsr", {"model": {"name": "edsr"}}))
    suite, entry = named_entry("wo-sa")
    assert suite == "modules" and entry.delta["model"]["alignment"] == "ma"
    with pytest.raises(FasrError, match="unknown benchmark row 'nope'"):
        named_entry("nope")


def test_train_reference_trains_once_for_a_step_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_cache, "source_fingerprint", lambda: "v1")
    data, base = write_brats(tmp_path / "brats", shape=(32, 32, 4)), tmp_path / "base.yaml"
    small = {"data": {"patch_size": 16, "slice_size": 32, "batch_size": 1, "augment": False, "min_foreground": 0.01},
             "model": {"n_feats": 8}}
    base.write_text(yaml.safe_dump(deep_merge(BASE, small)))
    checkpoint = train_reference("edsr", 2, data, tmp_path / "out", base=base)
    assert checkpoint == tmp_path / "out" / "edsr" / "subject-2-seed0" / "last.pt"
    state = torch.load(checkpoint, weights_only=True)
    assert state["step"] == 2 and state["config"]["model"]["name"] == "edsr"
    base_loss = from_dict(RunConfig, deep_merge(BASE, small)).loss.resolved()
    assert state["config"]["loss"]["perceptual"] == base_loss.perceptual  # no suite delta: the base's losses
    written = checkpoint.stat().st_mtime_ns
    assert train_reference("edsr", 2, data, tmp_path / "out", base=base) == checkpoint
    assert checkpoint.stat().st_mtime_ns == written  # the finished run is reused


def fake_training(monkeypatch: pytest.MonkeyPatch, train: object) -> RunConfig:
    """Replace the trainer by ``train`` (a model of one parameter, source "v1") and return a small run config."""
    import fasr.training.trainer as trainer

    monkeypatch.setattr(trainer, "train", train)
    monkeypatch.setattr(run_cache, "parameters", lambda cfg: 1)
    monkeypatch.setattr(run_cache, "source_fingerprint", lambda: "v1")
    return from_dict(RunConfig, deep_merge(BASE, {"model": {"name": "edsr", "n_feats": 8}}))


def test_an_interrupted_run_resumes_and_a_run_of_other_code_only_with_keep_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A suite spans sessions: the run interrupted in one continues (``resume``) in the next, its seconds those its
    checkpoint counts over the pieces; after the code changed it restarts, unless ``keep_runs``."""
    import fasr.training.trainer as trainer

    calls = []

    def fake_train(cfg: RunConfig, run_dir: Path, resume: bool = False, force: bool = False) -> Path:
        calls.append("resume" if resume else "fresh")
        save_checkpoint(run_dir / "last.pt", {"model": {}, "config": {}, "step": 1, "seconds": 10.0 * len(calls)})
        if len(calls) == 1:
            raise trainer.TrainingInterrupted("stopped")
        return run_dir / "last.pt"

    cfg = fake_training(monkeypatch, fake_train)
    run_dir = tmp_path / "run"
    with pytest.raises(trainer.TrainingInterrupted):
        run_cache.train_cached(cfg, run_dir)
    assert not (run_dir / run_cache.TRAINED).exists()
    run_cache.train_cached(cfg, run_dir)
    assert calls == ["fresh", "resume"]
    trained = json.loads((run_dir / run_cache.TRAINED).read_text())
    assert trained["sources"] == ["v1"] and trained["seconds"] == 20.0  # the resumed checkpoint's count
    run_cache.train_cached(cfg, run_dir)  # finished: reused
    assert calls == ["fresh", "resume"]
    monkeypatch.setattr(run_cache, "source_fingerprint", lambda: "v2")
    run_cache.train_cached(cfg, run_dir, keep_runs=True)  # other code, kept
    assert calls == ["fresh", "resume"]
    run_cache.train_cached(cfg, run_dir)  # other code: trained again from the start
    assert calls == ["fresh", "resume", "fresh"]
    assert json.loads((run_dir / run_cache.TRAINED).read_text())["sources"] == ["v2"]  # restarted: v2 alone
    # Another config whose training fails before it writes weights: this run's weights are gone, never resumed
    # under the other config's name.
    other = from_dict(RunConfig, deep_merge(BASE, {"model": {"name": "edsr", "n_feats": 16}}))

    def failing_train(cfg: RunConfig, run_dir: Path, resume: bool = False, force: bool = False) -> Path:
        calls.append("failed")
        raise FasrError("data not found")

    monkeypatch.setattr(trainer, "train", failing_train)
    with pytest.raises(FasrError):
        run_cache.train_cached(other, run_dir, keep_runs=True)
    assert not (run_dir / "last.pt").exists()
    monkeypatch.setattr(trainer, "train", fake_train)
    run_cache.train_cached(other, run_dir, keep_runs=True)
    assert calls[-2:] == ["failed", "fresh"]


def test_a_timed_step_budget_is_kept_for_every_process_of_the_suite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes of one suite (or a progress report) must train and find the same runs: the step count
    --budget-minutes was timed to is kept, not timed again under another load."""
    from argparse import Namespace

    from fasr.bench.quality import cli as quality_cli

    entries = [Entry("edsr", {"model": {"name": "edsr"}}), Entry("ttsr", {"model": {"name": "ttsr"}})]
    base = deep_merge(BASE, {"data": {"val_subjects": ["s"]}})
    args = Namespace(quick=False, steps=None, budget_minutes=10.0, overrides=[], finished_only=False)
    monkeypatch.setattr(quality_cli, "seconds_per_step", lambda cfg: 1.0)
    steps, sentence = quality_cli._step_budget(args, base, entries, 3, tmp_path)
    assert steps == 100 and "10 min of training steps -> 100 steps" in sentence  # 600 s / (2 rows x 3 runs x 1 s)
    monkeypatch.setattr(quality_cli, "seconds_per_step", lambda cfg: 5.0)  # a loaded machine would time fewer
    assert quality_cli._step_budget(args, base, entries, 3, tmp_path) == (steps, sentence)
    assert quality_cli._step_budget(Namespace(**{**vars(args), "finished_only": True}), base, entries, 3,
                                    tmp_path) == (steps, sentence)
    # Another budget, other rows or another --set are timed anew and kept beside it; a progress report of an
    # untimed budget says how.
    assert quality_cli._step_budget(Namespace(**{**vars(args), "budget_minutes": 30.0}), base, entries, 3,
                                    tmp_path)[0] == 60  # 5 s per step now
    assert quality_cli._step_budget(args, base, entries[:1], 3, tmp_path)[0] == 40
    assert quality_cli._step_budget(Namespace(**{**vars(args), "overrides": ["data.batch_size=2"]}), base, entries,
                                    3, tmp_path)[0] == 20
    assert quality_cli._step_budget(args, base, entries, 3, tmp_path) == (steps, sentence)  # still kept
    with pytest.raises(UsageError, match="--steps N or the options the suite was trained with"):
        quality_cli._step_budget(Namespace(**{**vars(args), "finished_only": True, "budget_minutes": 20.0}), base,
                                 entries, 3, tmp_path)
    assert len(json.loads((tmp_path / "budget.json").read_text())) == 4


def test_a_stopped_suite_says_the_same_command_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from fasr.bench.quality import cli as quality_cli
    from fasr.training.trainer import TrainingInterrupted

    def stopped(*args: object) -> RunResult:
        raise TrainingInterrupted("training interrupted at step 1; continue with `fasr train --out X --resume`")

    monkeypatch.setattr(quality_cli, "train_and_score", stopped)
    data = write_brats(tmp_path / "brats")
    argv = ["bench", "quality", "--suite", "methods", "--quick", "--only", "edsr", "--out", str(tmp_path / "out")]
    assert main([*argv, "--data", str(data)]) == TrainingInterrupted.exit_status
    err = capsys.readouterr().err
    assert "run the same command again" in err and "fasr train" not in err


def test_a_run_begun_before_checkpoints_kept_seconds_keeps_its_earlier_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its checkpoint has no seconds; the start record of the code that began it counted them: they carry on."""

    def fake_train(cfg: RunConfig, run_dir: Path, resume: bool = False, force: bool = False) -> Path:
        state = torch.load(run_dir / "last.pt", weights_only=True)
        save_checkpoint(run_dir / "last.pt", {**state, "seconds": state["seconds"] + 5.0})  # as the trainer does
        return run_dir / "last.pt"

    cfg = fake_training(monkeypatch, fake_train)
    run_dir = tmp_path / "run"
    save_checkpoint(run_dir / "last.pt", {"model": {}, "config": {}, "step": 1})  # no seconds
    record = {"key": run_cache._training_key(cfg, False), "sources": ["v0"], "seconds": 100.0}
    (run_dir / run_cache.STARTED).write_text(json.dumps(record))
    assert run_cache.train_cached(cfg, run_dir, keep_runs=True)[1] == 105.0
