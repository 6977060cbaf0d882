"""evaluate_model / evaluate_checkpoint, the report formats, `fasr eval` and `fasr figure` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio
from torch import nn

from conftest import write_brats
from fasr.cli import main
from fasr.data.degrade import Bicubic
from fasr.evaluation.evaluate import evaluate_model
from fasr.evaluation.figures import curve_figure, residual_figure
from fasr.evaluation.report import markdown_table, write_csv, write_json
from fasr.models.output import SROutput
from fasr.scoring.volumes import merge_predictions, predict_volumes, score_predictions, spread_indices
from fasr.training.trainer import train
from test_train_support import PairedTensors, register_tiny, tiny_config

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Oracle(nn.Module):
    """Returns ``hr + offset`` by looking the LR up in a table (a model with a known error)."""

    def __init__(self, dataset: PairedTensors, offset: float) -> None:
        super().__init__()
        self.dataset, self.offset = dataset, offset

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> SROutput:
        rows = [int(torch.argmin((self.dataset.lr - x[0]).abs().flatten(1).sum(1))) for x in lr]
        return SROutput(sr=self.dataset.hr[rows][:, None] + self.offset, attention={}, confidence=None)


@pytest.fixture()
def tensors() -> PairedTensors:
    g = torch.Generator().manual_seed(0)
    hr = torch.nn.functional.avg_pool2d(torch.rand(6, 1, 32, 32, generator=g), 3, 1, 1)[:, 0] * 2 - 1
    return PairedTensors(hr, -hr, 4, ["a", "a", "a", "b", "b", "b"])


def test_evaluate_model_scores_per_volume_and_beside_bicubic(tensors: PairedTensors) -> None:
    result = evaluate_model(Oracle(tensors, 0.01), tensors, "fastmri", name="fasr", batch_size=4)
    assert result["methods"] == ["bicubic", "fasr"] and result["convention"] == "fastmri"
    assert "volume" in result["protocol"] and result["mask"] is None
    assert len(result["per_volume"]) == 4 and len(result["per_slice"]) == 12
    # target stats (0, 1000): scanner intensity = (x + 1) * 500, so the +0.01 offset is an error of 5
    hr_a = (tensors.hr[:3].numpy().astype(np.float64) + 1) * 500
    row = next(r for r in result["per_volume"] if r["subject"] == "a" and r["method"] == "fasr")
    assert row["psnr"] == pytest.approx(20 * np.log10(hr_a.max() / 5.0), abs=1e-3)
    bicubic = Bicubic().up(tensors.lr[:3, None], 4)[:, 0].double().numpy()
    expected = peak_signal_noise_ratio(hr_a, (bicubic + 1) * 500, data_range=hr_a.max())
    row = next(r for r in result["per_volume"] if r["subject"] == "a" and r["method"] == "bicubic")
    assert row["psnr"] == pytest.approx(expected, abs=1e-3)
    means = {m: np.mean([r["psnr"] for r in result["per_volume"] if r["method"] == m]) for m in ("bicubic", "fasr")}
    assert result["fasr"]["psnr"] == pytest.approx(means["fasr"]) and result["bicubic"]["psnr"] == pytest.approx(
        means["bicubic"]
    )
    assert result["fasr"]["psnr"] > result["bicubic"]["psnr"]
    assert evaluate_model(Oracle(tensors, 0.0), tensors, "paper", max_slices=2)["fasr"]["ssim"] == pytest.approx(1.0)


def test_spread_indices() -> None:
    assert spread_indices(10, 1) == [5] and spread_indices(10, 3) == [1, 5, 8] and spread_indices(4, 0) == [0, 1, 2, 3]
    assert spread_indices(3, 5) == [0, 1, 2]


def test_predictions_split_over_ranks_merge_back(tensors: PairedTensors) -> None:
    models = {"fasr": Oracle(tensors, 0.02)}
    whole = predict_volumes(models, tensors, range(6), 4, torch.device("cpu"))
    shards = [predict_volumes(models, tensors, list(range(6))[r::2], 2, torch.device("cpu")) for r in range(2)]
    merged = merge_predictions(shards)
    assert score_predictions(merged, "fastmri") == score_predictions(whole, "fastmri")


def test_reports(tensors: PairedTensors, tmp_path: Path) -> None:
    result = evaluate_model(Oracle(tensors, 0.0), tensors, "fastmri", name="fasr", mask_threshold=0.05)
    table = markdown_table(result)
    assert table.splitlines()[0] == "| Method | PSNR (dB) | SSIM | NMSE |" and "| fasr | inf |" in table
    assert "fastMRI" in table and "mask" in table
    data = json.loads(write_json(result, tmp_path / "out" / "r.json").read_text())  # strict JSON: inf -> null
    assert data["fasr"]["psnr"] is None and data["fasr"]["nmse"] == 0.0 and data["convention"] == "fastmri"
    rows = list(csv.DictReader(open(write_csv(result, tmp_path / "r.csv"))))
    assert len(rows) == 4 + 12 and {r["level"] for r in rows} == {"volume", "slice"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-step tiny run on generated volumes, started through `fasr train` (data root, run folder)."""
    register_tiny()
    base = tmp_path_factory.mktemp("cli")
    root = write_brats(base / "brats", ["s1", "s2", "s3"])
    cfg = tiny_config(root, epochs=1, steps_per_epoch=2)
    train(cfg, base / "seed")  # writes a complete config.yaml to start the CLI run from
    config = base / "seed" / "config.yaml"
    assert main(["train", "--config", str(config), "--out", str(base / "run"), "--set", "schedule.epochs=2"]) == 0
    return root, base / "run"


def test_fasr_eval_writes_json_csv_markdown(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    root, run = trained
    out = tmp_path / "eval.json"
    args = ["eval", "--checkpoint", str(run / "best.pt"), "--config", str(run / "config.yaml"), "--split", "val"]
    files = ["--json", str(out), "--csv", str(tmp_path / "e.csv"), "--markdown", str(tmp_path / "e.md")]
    assert main([*args, *files]) == 0
    result = json.loads(out.read_text())
    assert set(result) >= {"bicubic", "tiny", "per_volume", "per_slice", "convention", "protocol", "split"}
    assert {r["subject"] for r in result["per_volume"]} == {"s3"}  # the held-out subject only
    assert "| tiny |" in capsys.readouterr().out and (tmp_path / "e.md").read_text().startswith("| Method")
    assert main([*args, "--json", str(out)]) == 1  # never overwrites without --force
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--json", str(out), "--force", "--convention", "paper", "--mask"]) == 0
    result = json.loads(out.read_text())
    assert result["convention"] == "paper" and result["mask"].startswith("ground truth > 0.05")
    # without --config the checkpoint's own config picks the data; --data overrides its root
    assert main(["eval", "--checkpoint", str(run / "last.pt"), "--data", str(root), "--max-slices", "2"]) == 0


def test_fasr_eval_and_train_errors_are_one_line(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    root, run = trained
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    assert main(["eval", "--checkpoint", str(tmp_path / "bad.pt"), "--data", str(root)]) == 1
    err = capsys.readouterr().err
    assert "corrupt" in err and len(err.strip().splitlines()) == 1
    assert main(["train", "--config", str(run / "config.yaml"), "--out", str(run)]) == 1
    assert "--resume" in capsys.readouterr().err


def test_figures_are_written(trained: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    root, run = trained
    args = ["figure", "residuals", "--checkpoint", str(run / "best.pt"), "--checkpoint", str(run / "last.pt")]
    assert main([*args, "--data", str(root), "--slices", "1,3", "--out", str(tmp_path / "res.png")]) == 0
    assert (tmp_path / "res.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main([*args, "--slices", "99", "--out", str(tmp_path / "x.png")]) == 1
    assert "choose from" in capsys.readouterr().err
    assert main(["figure", "curve", str(run), "--labels", "tiny", "--out", str(tmp_path / "curve.png")]) == 0
    assert (tmp_path / "curve.png").stat().st_size > 1000


def test_figure_functions_on_synthetic_predictions(tensors: PairedTensors, tmp_path: Path) -> None:
    volumes = predict_volumes({"fasr": Oracle(tensors, 0.05)}, tensors, range(6), 6, torch.device("cpu"))
    path = residual_figure([(volumes["a"], 0), (volumes["b"], 2)], ["bicubic", "fasr"], tmp_path / "f" / "r.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1000
    run = tmp_path / "run"
    run.mkdir()
    lines = [{"epoch": e, "step": 10 * e, "psnr": 30.0 + e, "bicubic_psnr": 29.0} for e in (1, 2)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert curve_figure({"a": run, "b": run}, tmp_path / "c.png").read_bytes()[:8] == PNG_SIGNATURE
