"""Checkpoints: atomic save, round trip, fp16 weights into fp32 models, clear errors for bad files."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from fasr import __version__
from fasr.checkpoint import load_checkpoint, load_model, save_checkpoint
from fasr.config import RunConfig
from fasr.errors import FasrError
from fasr.models import build_model
from fasr.models.config import ModelConfig
from fasr.training.rng import capture_rng, restore_rng
from test_train_support import register_tiny


@pytest.fixture()
def cfg() -> RunConfig:
    register_tiny()
    return RunConfig(model=ModelConfig(name="tiny", scale=2, n_feats=4))


def _state(model: torch.nn.Module, cfg: RunConfig) -> dict:
    return {
        "model": model.state_dict(),
        "config": asdict(cfg),
        "epoch": 3,
        "step": 30,
        "optimizer": None,
        "scheduler": None,
        "rng": capture_rng(),
        "metrics": {"psnr": 30.5},
    }


def test_round_trip_rebuilds_the_same_model(tmp_path: Path, cfg: RunConfig) -> None:
    model = build_model(cfg.model)
    path = save_checkpoint(tmp_path / "run" / "best.pt", _state(model, cfg))
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temporary file left behind
    state = load_checkpoint(path)
    assert state["fasr_version"] == __version__ and state["epoch"] == 3 and state["metrics"]["psnr"] == 30.5
    loaded, loaded_cfg = load_model(path)
    assert loaded_cfg == cfg and not loaded.training
    lr, ref = torch.rand(1, 1, 8, 8), torch.rand(1, 1, 16, 16)
    torch.testing.assert_close(loaded(lr, ref).sr, model.eval()(lr, ref).sr, rtol=0, atol=0)


def test_fp16_weights_load_into_fp32_model(tmp_path: Path, cfg: RunConfig) -> None:
    model = build_model(cfg.model)
    half = {k: v.half() for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path / "half.pt", {**_state(model, cfg), "model": half})
    loaded, _ = load_model(tmp_path / "half.pt")
    for key, value in loaded.state_dict().items():
        assert value.dtype == torch.float32
        torch.testing.assert_close(value, half[key].float(), rtol=0, atol=0)


def test_rng_states_survive_a_checkpoint(tmp_path: Path, cfg: RunConfig) -> None:
    save_checkpoint(tmp_path / "c.pt", _state(build_model(cfg.model), cfg))
    expected = torch.rand(3)
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    torch.testing.assert_close(torch.rand(3), expected, rtol=0, atol=0)


def test_missing_corrupt_and_incompatible_files_are_clear_errors(tmp_path: Path, cfg: RunConfig) -> None:
    with pytest.raises(FasrError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    good = save_checkpoint(tmp_path / "good.pt", _state(build_model(cfg.model), cfg))
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:100])
    with pytest.raises(FasrError, match="corrupt"):
        load_checkpoint(tmp_path / "truncated.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(FasrError, match="not a fasr checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    other = RunConfig(model=ModelConfig(name="tiny", scale=2, n_feats=6))  # different shapes, same keys
    save_checkpoint(tmp_path / "mismatch.pt", _state(build_model(other.model), cfg))
    with pytest.raises(FasrError, match="does not match model 'tiny'"):
        load_model(tmp_path / "mismatch.pt")
    bad_cfg = {**_state(build_model(cfg.model), cfg), "config": {"model": {"name": "tiny", "depth": 3}}}
    save_checkpoint(tmp_path / "oldcfg.pt", bad_cfg)
    with pytest.raises(FasrError, match="config this fasr cannot read"):
        load_model(tmp_path / "oldcfg.pt")
    save_checkpoint(tmp_path / "future.pt", {**_state(build_model(cfg.model), cfg), "format": 99})
    with pytest.raises(FasrError, match="newer"):
        load_checkpoint(tmp_path / "future.pt")


def test_export_half_precision_reloads_close_to_original(tmp_path) -> None:
    """`fasr export` keeps weights and config, drops optimiser state, halves the size, and reloads in fp32."""
    import torch

    from fasr.checkpoint import load_model, save_checkpoint
    from fasr.cli import main
    from fasr.config import RunConfig, to_dict
    from fasr.models import ModelConfig, build_model

    cfg = RunConfig(model=ModelConfig(name="fasr", n_feats=8, n_blocks=(1, 1, 1), embed_dim=8))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    opt = torch.optim.Adam(model.parameters())
    src = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "config": to_dict(cfg),
                                                  "optimizer": opt.state_dict(), "step": 7})
    assert main(["export", str(src), str(tmp_path / "small.pt")]) == 0
    assert main(["export", str(src), str(tmp_path / "small.pt")]) == 1  # exists: needs --force
    state = torch.load(tmp_path / "small.pt", weights_only=True)
    assert "optimizer" not in state and state["step"] == 7
    assert all(v.dtype == torch.float16 for v in state["model"].values() if v.is_floating_point())
    assert (tmp_path / "small.pt").stat().st_size < 0.6 * src.stat().st_size
    again, _ = load_model(tmp_path / "small.pt")
    lr, ref = torch.rand(1, 1, 8, 8) * 2 - 1, torch.rand(1, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(again(lr, ref).sr, model.eval()(lr, ref).sr, atol=2e-2, rtol=0)
    # --set stores an inference setting as the file's default; a learned one is refused
    assert main(["export", str(src), str(tmp_path / "w.pt"), "--set", "model.search_window=16"]) == 0
    assert load_model(tmp_path / "w.pt")[1].model.search_window == 16
    assert main(["export", str(src), str(tmp_path / "x.pt"), "--set", "model.n_feats=4"]) == 1
    assert not (tmp_path / "x.pt").exists()


def test_backbone_weights_flag_and_reload_without_the_file(tmp_path) -> None:
    """`fasr train --backbone-weights FILE` starts the extractor from it; the checkpoint reloads after the
    ImageNet file is gone (the stored weights replace it)."""
    import argparse

    import torch

    from fasr.checkpoint import load_model, save_checkpoint
    from fasr.config import RunConfig, to_dict
    from fasr.models import ModelConfig, build_model
    from fasr.models.backbones import VGG19
    from fasr.training import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--config", "x.yaml", "--backbone-weights", "vgg.pth"])
    assert args.backbone_weights.name == "vgg.pth"

    torch.save(VGG19().state_dict(), tmp_path / "vgg.pth")
    cfg = RunConfig(model=ModelConfig(name="fasr", n_feats=8, n_blocks=(1, 1, 1), embed_dim=8,
                                      backbone_weights=str(tmp_path / "vgg.pth")))
    model = build_model(cfg.model)
    ckpt = save_checkpoint(tmp_path / "best.pt", {"model": model.state_dict(), "config": to_dict(cfg)})
    (tmp_path / "vgg.pth").unlink()
    again, again_cfg = load_model(ckpt)
    assert again_cfg.model.backbone_weights == str(tmp_path / "vgg.pth")  # provenance kept
    torch.testing.assert_close(again.extractor.net.features[0].weight, model.extractor.net.features[0].weight)


def test_inference_settings_can_change_after_training(tmp_path) -> None:
    """search_window / match_memory_mib may be changed when loading; learned settings may not."""
    import pytest

    from fasr.checkpoint import load_model, save_checkpoint
    from fasr.config import RunConfig, to_dict
    from fasr.errors import FasrError
    from fasr.models import ModelConfig, build_model

    cfg = RunConfig(model=ModelConfig(name="fasr", n_feats=8, n_blocks=(1, 1, 1), embed_dim=8))
    ckpt = save_checkpoint(tmp_path / "m.pt", {"model": build_model(cfg.model).state_dict(), "config": to_dict(cfg)})
    model, loaded = load_model(ckpt, overrides=["model.search_window=4", "data.root=elsewhere"])
    assert {m.matcher.search_window for m in model.align.values()} == {4} and loaded.model.search_window == 4
    assert loaded.data.root == "elsewhere"  # other sections follow the overrides too
    with pytest.raises(FasrError, match=r"\['model.n_feats'\] cannot change after training"):
        load_model(ckpt, overrides=["model.n_feats=16"])
    with pytest.raises(FasrError, match="unknown key"):  # keys are dotted: model.search_window
        load_model(ckpt, overrides=["search_window=4"])
