"""`fasr bench speed` (quick mode: one small size) and `fasr params`."""

from __future__ import annotations

import json
import subprocess
import sys

from fasr.bench.params import PAPER_TABLE_II, backbone_rows, method_rows


def test_bench_speed_json(tmp_path) -> None:
    import torch

    from fasr import heap
    from fasr.checkpoint import save_checkpoint
    from fasr.config import RunConfig, to_dict
    from fasr.inference.engine.slices import resolve_precision
    from fasr.models import ModelConfig, build_model

    tiny = ModelConfig(name="fasr", n_feats=8, n_blocks=(1, 1, 1), embed_dim=8, backbone_weights=None)
    ckpt = save_checkpoint(tmp_path / "tiny.pt", {"model": build_model(tiny).state_dict(),
                                                 "config": to_dict(RunConfig(model=tiny))})
    out = tmp_path / "speed.json"
    cmd = [sys.executable, "-m", "fasr", "bench", "speed", "--sizes", "32", "--repeats", "1",
           "--set", "model.n_feats=8", "--set", "model.n_blocks=[1,1,1]", "--set", "model.backbone_weights=null",
           "--patch-size", "32", "--models", str(ckpt), "--volume", "64x48x3", "--volume-batch", "2",
           "--json", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["threads"] >= 1
    sizes = [r for r in result["rows"] if "size" in r]
    rows = {r["matching"]: r for r in sizes if r["model"] == "default"}
    assert set(rows) == {"blocked", "dense"}
    auto = resolve_precision("auto", torch.device("cpu"))  # the default, as fasr infer's
    for row in sizes:
        assert row["size"] == 32 and row["precision"] == auto and row["load_avg_1min"] >= 0 and row["batch"] == 1
        assert row["heap_reuse"] == heap.available()  # every worker keeps freed memory (fasr/heap.py)
        assert row["seconds_per_slice"] > 0 and row["peak_mem_mib"] > 50
        assert row["gflops"] > 0
        parts = [row[f"{p}_seconds_per_slice"] for p in ("extractor", "matching", "fusion")]
        assert all(p > 0 for p in parts)
        assert sum(parts) <= row["seconds_per_slice"] * 1.05  # the parts are inside the forward pass
        assert abs(row["gflops_per_s"] - row["gflops"] / row["seconds_per_slice"]) / row["gflops_per_s"] < 0.01
    assert rows["blocked"]["gflops"] == rows["dense"]["gflops"]  # same arithmetic, different blocking
    assert [r["model"] for r in sizes if r["model"] != "default"] == [str(ckpt)]  # no dense row for checkpoints
    volumes = [r for r in result["rows"] if "volume" in r]
    assert [r["model"] for r in volumes] == ["default", str(ckpt)]
    for row in volumes:
        assert row["volume"] == "64x48x3" and row["seconds"] > 0 and row["tile"] is None
        assert row["batch"] == 2  # --volume-batch; the size rows keep --batch (1)
        assert row["tiles_per_slice"] == 1 and row["heap"] == ("reused" if heap.available() else "allocator defaults")
        assert row["estimated_peak_gib"] <= row["max_memory_gib"]
        assert abs(row["slices_per_second"] - 3 / row["seconds"]) < 0.05 * row["slices_per_second"]
    assert result["train"]["samples_per_second"] > 0


def test_params_rows() -> None:
    rows = {r["backbone"]: r for r in backbone_rows(scale=4, size=64)}
    assert set(rows) == set(PAPER_TABLE_II)
    # VGG19 through relu3_1: conv1_1..conv3_1 = 555,328 parameters (torchvision's layer sizes).
    assert rows["vgg19"]["extractor_params_m"] == 0.555
    assert rows["resnet34"]["extractor_params_m"] > rows["resnet18"]["extractor_params_m"]
    for r in rows.values():
        assert r["model_params_m"] > r["extractor_params_m"] > 0 and r["extractor_gflops"] > 0


def test_params_methods_rows_count_every_method_as_the_benchmark_builds_it() -> None:
    import torch

    from fasr.bench.quality.suites import METHODS
    from fasr.models import ModelConfig, build_model

    rows = {r["method"]: r for r in method_rows(scale=4, lr_size=16)}
    assert list(rows) == list(METHODS)
    assert rows["bicubic"]["params"] == 0 and rows["bicubic"]["gflops"] == 0
    torch.manual_seed(0)
    masa = build_model(ModelConfig(name="masa", scale=4, n_feats=32))  # the base config's width
    assert rows["masa"]["params"] == sum(p.numel() for p in masa.parameters())
    assert all(rows[m]["gflops"] > 0 for m in METHODS[1:])
