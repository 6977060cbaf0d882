"""The training loop on small generated BraTS-layout volumes: the loss falls, the run folder, the two-phase
switch, learning-rate groups and decay, exact resume after SIGINT, and run-folder safety."""

from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_brats
from fasr.checkpoint import load_checkpoint, read_history, save_checkpoint
from fasr.cli import main
from fasr.config import ModelConfig, save_config
from fasr.errors import FasrError
from fasr.models.backbones import SHIPPED_WEIGHTS
from fasr.training import trainer as trainer_module
from fasr.training.trainer import TrainingInterrupted, train
from test_train_support import register_tiny, tiny_config


@pytest.fixture(scope="module")
def brats(tmp_path_factory: pytest.TempPathFactory) -> Path:
    register_tiny()
    return write_brats(tmp_path_factory.mktemp("data") / "brats", ["s1", "s2", "s3"])


def test_short_run_lowers_the_loss_and_fills_the_run_folder(brats: Path, tmp_path: Path) -> None:
    cfg = tiny_config(brats, epochs=4, steps_per_epoch=6)
    cfg.loss.warmup_epochs = 10  # L1 throughout: the epochs' losses are comparable
    cfg.optim.lr_extractor = cfg.optim.lr_rest = 1e-2
    best = train(cfg, tmp_path / "run")
    assert best == tmp_path / "run" / "best.pt" and best.is_file()
    assert {p.name for p in (tmp_path / "run").iterdir()} >= {"config.yaml", "last.pt", "metrics.jsonl", "train.log"}
    history = read_history(tmp_path / "run")
    assert [h["epoch"] for h in history] == [1, 2, 3, 4] and [h["step"] for h in history] == [6, 12, 18, 24]
    assert history[-1]["loss"]["l1"] < 0.95 * history[0]["loss"]["l1"]
    assert history[-1]["psnr"] > history[0]["psnr"] + 0.5
    assert history[-1]["psnr"] > history[-1]["bicubic_psnr"] + 0.5  # it learnt to use the reference
    assert all(h["bicubic_psnr"] == history[0]["bicubic_psnr"] for h in history)
    best_state = load_checkpoint(best)
    assert best_state["metrics"]["psnr"] == max(h["psnr"] for h in history)
    assert best_state["metrics"]["perceptual"] == "off"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["loss"]["fourier"] == 1.0 and saved["optim"]["lr_rest"] == 1e-2  # presets resolved, explicit kept


def test_a_run_records_where_its_texture_extractor_started(
    brats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(brats, epochs=1, steps_per_epoch=1)
    cfg.model = ModelConfig(name="fasr", scale=4, n_feats=8, n_blocks=(1, 1, 1), embed_dim=8)  # backbone_weights mri
    train(cfg, tmp_path / "run")
    digest = hashlib.sha256(SHIPPED_WEIGHTS["mri"]["vgg19"].read_bytes()).hexdigest()[:12]
    source = f"mri-vgg19.pth (sha256 {digest})"
    assert f"texture extractor starts from: {source}" in (tmp_path / "run" / "train.log").read_text()
    assert load_checkpoint(tmp_path / "run" / "last.pt")["metrics"]["extractor"] == source
    # The shipped file rewritten meanwhile: a resumed run still names the file it started from.
    rewritten = {k: v + 1 for k, v in torch.load(SHIPPED_WEIGHTS["mri"]["vgg19"], weights_only=True).items()}
    torch.save(rewritten, tmp_path / "mri-vgg19.pth")
    monkeypatch.setitem(SHIPPED_WEIGHTS["mri"], "vgg19", tmp_path / "mri-vgg19.pth")
    cfg.schedule.epochs = 2
    train(cfg, tmp_path / "run", resume=True)
    assert load_checkpoint(tmp_path / "run" / "last.pt")["metrics"]["extractor"] == source
    # A run that starts from another's weights says so (the extractor's weights are that checkpoint's).
    cfg.init_from = str(tmp_path / "run" / "last.pt")
    train(cfg, tmp_path / "second")
    assert load_checkpoint(tmp_path / "second" / "last.pt")["metrics"]["extractor"] == f"init_from {cfg.init_from}"


def test_two_phase_switch_groups_and_decay(brats: Path, tmp_path: Path) -> None:
    cfg = tiny_config(brats, epochs=3, steps_per_epoch=2, decay="step", decay_every=2, decay_gamma=0.5)
    cfg.loss.warmup_epochs = 2
    cfg.optim.lr_extractor, cfg.optim.lr_rest = 4e-3, 1e-3
    train(cfg, tmp_path / "run")
    history = read_history(tmp_path / "run")
    assert [sorted(h["loss"]) for h in history] == [["l1", "total"], ["l1", "total"], ["fourier", "l1", "total"]]
    # lr after each epoch's scheduler step: halved once two epochs are done
    assert [h["lr"] for h in history] == [
        {"extractor": 4e-3, "rest": 1e-3},
        {"extractor": 2e-3, "rest": 5e-4},
        {"extractor": 2e-3, "rest": 5e-4},
    ]


def test_max_steps_cuts_the_last_epoch(brats: Path, tmp_path: Path) -> None:
    train(tiny_config(brats, epochs=5, steps_per_epoch=4, max_steps=6), tmp_path / "run")
    assert [(h["epoch"], h["step"]) for h in read_history(tmp_path / "run")] == [(1, 4), (2, 6)]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 6)


def test_resume_after_sigint_equals_an_uninterrupted_run(
    brats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(brats, epochs=3, steps_per_epoch=4)
    cfg.data.misalign = (2.0, 3.0, 0.02)  # more of the data pipeline's random draws to restore
    train(cfg, tmp_path / "whole")

    step = trainer_module.Trainer._train_step

    def interrupted_step(self: trainer_module.Trainer, *batch: torch.Tensor) -> dict[str, float]:
        parts = step(self, *batch)
        if self.step == 5:  # mid-epoch 2, counted before this step's increment
            signal.raise_signal(signal.SIGINT)
        return parts

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", interrupted_step)
    # The run must leave the handler it found (a shell's background job starts with SIGINT ignored: set one).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(TrainingInterrupted, match="--resume"):
            train(cfg, tmp_path / "cut")
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    finally:
        signal.signal(signal.SIGINT, previous)
    state = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 6)
    save_checkpoint(tmp_path / "cut" / "last.pt", {**state, "seconds": 1000.0})  # as if the first piece took long
    monkeypatch.setattr(trainer_module.Trainer, "_train_step", step)
    train(cfg, tmp_path / "cut", resume=True)

    whole, cut = load_checkpoint(tmp_path / "whole" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    assert cut["step"] == whole["step"] == 12
    assert 0 < whole["seconds"] < 1000 < cut["seconds"]  # the run's wall time sums its pieces
    for key, value in whole["model"].items():
        assert torch.equal(value, cut["model"][key]), key
    for a, b in zip(whole["optimizer"]["state"].values(), cut["optimizer"]["state"].values()):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])

    def scores(run: str) -> list[tuple]:
        return [(h["epoch"], h["step"], h["loss"], h["psnr"]) for h in read_history(tmp_path / run)]

    assert scores("cut") == scores("whole")  # one record per validation, no duplicates from the cut


def test_run_folder_is_never_overwritten_without_force(brats: Path, tmp_path: Path) -> None:
    cfg = tiny_config(brats, epochs=1, steps_per_epoch=1)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(FasrError, match="nothing to resume"):
        train(cfg, tmp_path / "run", resume=True)
    train(cfg, tmp_path / "run")
    first = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(FasrError, match="--force"):
        train(cfg, tmp_path / "run")
    assert (tmp_path / "run" / "last.pt").read_bytes() == first
    other = tiny_config(brats, epochs=2, steps_per_epoch=1)
    other.optim.lr_rest = 0.5
    with pytest.raises(FasrError, match=r"optim\.lr_rest"):
        train(other, tmp_path / "run", resume=True)
    train(other, tmp_path / "run", force=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"  # only the run's own files are replaced
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])["epoch"] == 2
    longer = tiny_config(brats, epochs=3, steps_per_epoch=1)
    longer.optim.lr_rest = 0.5
    train(longer, tmp_path / "run", resume=True)  # extending the schedule is a valid resume
    assert [h["epoch"] for h in read_history(tmp_path / "run")] == [1, 2, 3]


def test_sigterm_through_the_cli_then_resume(
    brats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    save_config(tiny_config(brats, epochs=2, steps_per_epoch=2), tmp_path / "tiny.yaml")
    step = trainer_module.Trainer._train_step

    def terminated_step(self: trainer_module.Trainer, *batch: torch.Tensor) -> dict[str, float]:
        parts = step(self, *batch)
        if self.step == 0:
            signal.raise_signal(signal.SIGTERM)  # as sent by a scheduler (SLURM, torchrun's agent)
        return parts

    monkeypatch.setattr(trainer_module.Trainer, "_train_step", terminated_step)
    out = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--out", str(out)]) == 130
    assert f"fasr train --out {out} --resume" in capsys.readouterr().err
    assert load_checkpoint(out / "last.pt")["step"] == 1 and not (out / "best.pt").exists()
    monkeypatch.setattr(trainer_module.Trainer, "_train_step", step)
    assert main(["train", "--out", str(out), "--resume"]) == 0  # config from the run folder
    assert capsys.readouterr().out.strip() == str(out / "best.pt")
    assert load_checkpoint(out / "last.pt")["step"] == 4


def test_init_from_starts_from_the_weights_with_a_fresh_schedule(brats: Path, tmp_path: Path) -> None:
    first = train(tiny_config(brats, epochs=1, steps_per_epoch=3), tmp_path / "first")
    cfg = tiny_config(brats, epochs=1, steps_per_epoch=1)
    cfg.init_from = str(first)
    cfg.optim.lr_extractor = cfg.optim.lr_rest = 0.0  # no update: the run's weights are the starting weights
    cfg.init_from_sha256 = "0" * 64  # a pinned recipe refuses other weights, before the run folder is touched
    with pytest.raises(FasrError, match="SHA-256"):
        train(cfg, tmp_path / "second")
    assert not (tmp_path / "second").exists()
    cfg.init_from_sha256 = hashlib.sha256(Path(first).read_bytes()).hexdigest()
    train(cfg, tmp_path / "second")
    before, after = load_checkpoint(first)["model"], load_checkpoint(tmp_path / "second" / "last.pt")
    assert after["step"] == 1 and after["epoch"] == 1  # its own schedule, not the first run's
    assert all(torch.equal(before[k], v) for k, v in after["model"].items())
    assert "starting from the weights of" in (tmp_path / "second" / "train.log").read_text()


def test_init_from_another_architecture_names_the_setting(brats: Path, tmp_path: Path) -> None:
    first = train(tiny_config(brats, epochs=1, steps_per_epoch=1), tmp_path / "first")
    cfg = tiny_config(brats)
    cfg.init_from, cfg.model.n_feats = str(first), 8
    with pytest.raises(FasrError, match=r"other \['model.n_feats'\] \(model.n_feats=4\)"):
        train(cfg, tmp_path / "second")
    cfg.init_from = str(tmp_path / "nowhere.pt")
    with pytest.raises(FasrError, match="neither a file nor a shipped model"):
        train(cfg, tmp_path / "first", force=True)
    assert (tmp_path / "first" / "last.pt").is_file()  # the refused run did not clear the folder


@pytest.mark.parametrize("field,marker", [("ref_detail", ".detail."), ("ref_guided", "guide")])
def test_init_from_may_grow_a_model_by_a_grown_input_only(tmp_path: Path, field: str, marker: str) -> None:
    """``model.ref_detail`` and ``model.ref_guided`` only add zero-initialised weights, so a model without one is
    a valid init_from for a model with it (not the other way round)."""
    from types import SimpleNamespace

    from fasr.checkpoint import save_checkpoint
    from fasr.config import RunConfig, to_dict
    from fasr.models import ModelConfig, build_model

    def config(on: bool) -> RunConfig:
        return RunConfig(model=ModelConfig(name="fasr", n_feats=8, n_blocks=(1, 1, 1), embed_dim=8,
                                           backbone_weights=None, **{field: on}))

    def checkpoint(on: bool) -> str:
        cfg = config(on)
        state = {"model": build_model(cfg.model).state_dict(), "config": to_dict(cfg)}
        return str(save_checkpoint(tmp_path / f"{field}-{on}.pt", state))

    start, grown = trainer_module.Trainer._starting_weights(SimpleNamespace(cfg=config(True)), checkpoint(False))
    assert grown == {field} and not any(marker in k for k in start)
    if field == "ref_guided":  # the fit's order changes no weight: a linear-fit model fine-tunes into a quadratic one
        quadratic = config(True)
        quadratic.model.guide_order = 2
        start, grown = trainer_module.Trainer._starting_weights(SimpleNamespace(cfg=quadratic), checkpoint(True))
        assert grown == set() and any(marker in k for k in start)
        build_model(quadratic.model).load_state_dict(start)
    with pytest.raises(FasrError, match=rf"other \['model.{field}'\]"):
        trainer_module.Trainer._starting_weights(SimpleNamespace(cfg=config(False)), checkpoint(True))


def test_grown_weights_get_their_own_learning_rate_only_when_asked() -> None:
    """optim.lr_grown (ours): the zero-initialised weights of ref_detail / ref_guided form a third Adam group;
    unset, they stay in ``rest``."""
    from fasr.config import OptimConfig
    from fasr.models import ModelConfig, build_model
    from fasr.training.optim import build_optimizer

    model = build_model(ModelConfig(name="fasr", n_feats=8, n_blocks=(1, 1, 1), embed_dim=8, backbone_weights=None,
                                    ref_detail=True, ref_guided=True))
    names = {id(p): n for n, p in model.named_parameters()}
    groups = build_optimizer(model, OptimConfig(lr_extractor=1e-4, lr_rest=2e-4, lr_grown=3e-3), "fasr").param_groups
    by_name = {g["name"]: g for g in groups}
    assert [g["name"] for g in groups] == ["extractor", "rest", "grown"] and by_name["grown"]["lr"] == 3e-3
    grown = {names[id(p)] for p in by_name["grown"]["params"]}
    assert grown == {"fusion.inject.2.detail.weight", "fusion.inject.2.guide.weight", "guide_gate.weight",
                     "guide_gate.bias"}
    assert sum(len(g["params"]) for g in groups) == len(names)
    groups = build_optimizer(model, OptimConfig(lr_extractor=1e-4, lr_rest=2e-4), "fasr").param_groups
    assert [g["name"] for g in groups] == ["extractor", "rest"]


def test_a_run_that_cannot_start_leaves_nothing_behind(brats: Path, tmp_path: Path) -> None:
    """A missing data root fails before the run folder is written, so the corrected command just runs; and a
    failing --force never deletes the run it would have replaced."""
    cfg = tiny_config(brats, epochs=1, steps_per_epoch=2)
    bad = tiny_config(tmp_path / "no-such-root", epochs=1, steps_per_epoch=2)
    with pytest.raises(FasrError):
        train(bad, tmp_path / "run")
    assert not (tmp_path / "run" / "config.yaml").exists()
    train(cfg, tmp_path / "run")  # the corrected command needs no --force
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(FasrError):
        train(bad, tmp_path / "run", force=True)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
