"""One override path: every command that builds a model takes ``--set key=value`` with dotted config keys; a
config file can build on another (``base:``)."""

from __future__ import annotations

import argparse
import importlib

import pytest

from fasr.errors import FasrError

# command -> (module with add_arguments, the other arguments it requires)
COMMANDS = {
    "train": ("fasr.training.cli", ["--config", "x.yaml"]),
    "eval": ("fasr.evaluation.cli", ["--checkpoint", "brats-x4"]),
    "infer": ("fasr.inference.cli", ["--lr", "a.nii.gz", "--ref", "b.nii.gz", "--checkpoint", "c", "--out", "d.nii"]),
    "demo": ("fasr.inference.demo", []),
    "figure residuals": ("fasr.evaluation.figures", ["residuals", "--checkpoint", "c", "--out", "f.png"]),
    "bench speed": ("fasr.bench.speed", []),
    "export": ("fasr.training.export", ["a.pt", "b.pt"]),
    "bench quality": ("fasr.bench.quality.cli", ["--suite", "methods"]),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_model_command_takes_dotted_set(command: str) -> None:
    module, required = COMMANDS[command]
    parser = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(parser)
    args = parser.parse_args([*required, "--set", "model.search_window=16", "--set", "model.match_memory_mib=64"])
    assert args.overrides == ["model.search_window=16", "model.match_memory_mib=64"]


def test_bench_speed_refuses_a_bare_key_before_measuring(capsys) -> None:
    from fasr.cli import main

    assert main(["bench", "speed", "--sizes", "32", "--set", "search_window=16"]) == 1
    err = capsys.readouterr().err
    assert "unknown key(s) ['search_window']" in err and len(err.strip().splitlines()) == 1


def test_a_config_builds_on_its_base(tmp_path) -> None:
    from fasr.config import load_config

    (tmp_path / "stage1.yaml").write_text("model: {name: fasr, n_feats: 16}\ndata: {target: t2, reference: t1}\n")
    (tmp_path / "stage2.yaml").write_text("base: stage1.yaml\ninit_from: run/best.pt\ndata: {reference: flair}\n")
    cfg = load_config(tmp_path / "stage2.yaml", ["data.target=pd"])
    assert (cfg.model.n_feats, cfg.data.reference, cfg.data.target, cfg.init_from) == (16, "flair", "pd", "run/best.pt")
    (tmp_path / "stage1.yaml").write_text("base: stage2.yaml\n")
    with pytest.raises(FasrError, match="cycle"):
        load_config(tmp_path / "stage2.yaml")
    (tmp_path / "lost.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(FasrError, match="missing.yaml' not found; it is the 'base' of"):
        load_config(tmp_path / "lost.yaml")


def test_every_config_file_of_the_repository_loads() -> None:
    from pathlib import Path

    from fasr.config import from_dict, load_config, read_yaml
    from fasr.training.pretrain import PretrainConfig

    files = sorted((Path(__file__).parents[1] / "configs").rglob("*.yaml"))
    assert len(files) > 5
    for path in files:
        if path.name == "pretrain-extractor.yaml":
            assert from_dict(PretrainConfig, read_yaml(path)).steps > 0
        elif path.parent.name != "ablations":  # ablation rows are deltas on a suite's base config
            cfg = load_config(path)
            assert cfg.model.scale in (2, 3, 4, 8) or (cfg.model.scale == 1 and cfg.data.planes == "thick"), path
