"""``fasr --help`` speaks to users; every subcommand's help shows one example that its parser accepts; ``fasr
models`` lists the shipped models."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from fasr import cli
from fasr.pretrained import PRETRAINED


def test_top_level_help_has_no_developer_notes(capsys):
    assert cli.main([]) == 0
    text = capsys.readouterr().out
    for note in ("``", "lazily", "module", "add_arguments", "import"):
        assert note not in text
    assert "fasr demo" in text and "fasr models" in text


def test_every_command_has_an_example(capsys):
    assert sorted(cli.EXAMPLES) == sorted(cli.COMMANDS)
    for name in cli.COMMANDS:
        with pytest.raises(SystemExit):
            cli.main([name, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert f"example: {cli.EXAMPLES[name]}" in text


@pytest.mark.parametrize("name", sorted(cli.EXAMPLES))
def test_each_example_parses(name, monkeypatch):
    argv = shlex.split(cli.EXAMPLES[name])[1:]
    assert argv[0] == name
    monkeypatch.setattr(sys, "argv", ["fasr", *argv])  # the parser imports the chosen command's module
    args = cli.build_parser().parse_args(argv)
    assert args.command == name


def test_models_lists_every_shipped_model(capsys):
    assert cli.main(["models"]) == 0
    table = capsys.readouterr().out
    for model in PRETRAINED.values():
        row = next(line for line in table.splitlines() if line.startswith(f"| {model.name} |"))
        assert model.task in row and f"{model.test_psnr:.2f} dB ({model.test_bicubic_psnr:.2f})" in row
        assert ("MiB" in row) == model.available
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(PRETRAINED)
    assert all(set(r["references"]) and r["training_data"] for r in rows)


def test_unknown_checkpoint_names_the_shipped_models(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path / "d"), "--checkpoint", "brats-x8"]) == 1
    err = capsys.readouterr().err
    assert "one of: brats-x4, brats-x2" in err and "brats-x4 = x4 in-plane t2 from t1/t1c/flair" in err
    assert "fasr models" in err


@pytest.mark.parametrize("name", ["infer", "demo", "models", "train", "eval"])
def test_help_of_the_everyday_commands_does_not_import_torch(name):
    """`fasr NAME --help` answers at once: building its parser imports no torch (measured: 0.05-0.2 s, 2 cores)."""
    code = (f"import sys; sys.argv = ['fasr', '{name}', '--help']; from fasr import cli; cli.build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
