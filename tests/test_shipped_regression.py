"""The shipped models still score what their model card JSONs say on 6 fixed test slices (planes, for the
through-plane model) (needs ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fasr.evaluation.evaluate import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CARDS = ROOT / "benchmarks" / "results" / "model-card"
DATA = ROOT.parent / "shared" / "data"
# The model card's setting: the true T1 registered, the LR as the model's nominal degradation makes it, no noise.
OVERRIDES = ("data.reference=t1", "data.misalign=[0,0,0]", "data.motion=[0,0]", "data.degradation.noise=none",
             "model.search_window=0")


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "brats").is_dir(), reason="needs the shared BraTS data (../shared/data)")
@pytest.mark.parametrize("name", ["brats-x4", "brats-x2", "brats-thick"])
def test_shipped_model_scores_its_model_card_on_fixed_slices(monkeypatch, name: str) -> None:
    # written by `fasr eval --checkpoint NAME --split test --max-slices 6` with OVERRIDES (docs/model-card.md)
    card = json.loads((CARDS / f"{name}-t1-6slices.json").read_text())
    monkeypatch.chdir(ROOT)  # the model's data.root is relative to the repository
    torch.set_num_threads(1)
    result = evaluate_checkpoint(name, split="test", max_slices=6, device=torch.device("cpu"),
                                 overrides=list(OVERRIDES))
    assert [s["slice"] for s in result["per_slice"]] == [s["slice"] for s in card["per_slice"]]
    assert result["fasr"]["psnr"] == pytest.approx(card["fasr"]["psnr"], abs=0.05)
    assert result["fasr"]["psnr"] > result["bicubic"]["psnr"] + 1.0
