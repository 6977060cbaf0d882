"""`fasr bench speed` (quick mode: one small size) and `fasr params`."""

from __future__ import annotations

import json
import subprocess
import sys

from fasr.bench.params import PAPER_TABLE_II, backbone_rows


def test_bench_speed_json(tmp_path) -> None:
    out = tmp_path / "speed.json"
    cmd = [sys.executable, "-m", "fasr", "bench", "speed", "--sizes", "32", "--repeats", "1",
           "--set", "model.n_feats=8", "--set", "model.n_blocks=[1,1,1]", "--patch-size", "32", "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["threads"] >= 1
    rows = {r["matching"]: r for r in result["rows"]}
    assert set(rows) == {"blocked", "dense"}
    for row in rows.values():
        assert row["size"] == 32
        assert row["seconds_per_slice"] > 0 and row["peak_mem_mib"] > 50
        assert row["gflops"] > 0
        parts = sum(row[f"{p}_seconds_per_slice"] for p in ("extractor", "matching", "fusion"))
        assert 0 < parts <= row["seconds_per_slice"] * 1.05  # the parts are inside the forward pass
        assert abs(row["gflops_per_s"] - row["gflops"] / row["seconds_per_slice"]) / row["gflops_per_s"] < 0.01
    assert rows["blocked"]["gflops"] == rows["dense"]["gflops"]  # same arithmetic, different blocking
    assert result["train"]["samples_per_second"] > 0


def test_params_rows() -> None:
    rows = {r["backbone"]: r for r in backbone_rows(scale=4, size=64)}
    assert set(rows) == set(PAPER_TABLE_II)
    # VGG19 through relu3_1: conv1_1..conv3_1 = 555,328 parameters (torchvision's layer sizes).
    assert rows["vgg19"]["extractor_params_m"] == 0.555
    assert rows["resnet34"]["extractor_params_m"] > rows["resnet18"]["extractor_params_m"]
    for r in rows.values():
        assert r["model_params_m"] > r["extractor_params_m"] > 0 and r["extractor_gflops"] > 0
