"""The shipped x4 model still scores what its model card says on 6 fixed test slices (needs ../shared/data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fasr.evaluation.evaluate import evaluate_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "benchmarks" / "results" / "model-card" / "brats-x4-t1-6slices.json"
DATA = ROOT.parent / "shared" / "data"
# The model card's setting: the true T1 registered, the LR as the model's nominal degradation makes it, no noise.
OVERRIDES = ("data.reference=t1", "data.misalign=[0,0,0]", "data.motion=[0,0]", "data.degradation.noise=none",
             "model.search_window=0")


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "brats").is_dir(), reason="needs the shared BraTS data (../shared/data)")
def test_shipped_x4_scores_its_model_card_on_fixed_slices(monkeypatch) -> None:
    card = json.loads(CARD.read_text())  # written by runs of `fasr eval ... --max-slices 6` (docs/model-card.md)
    monkeypatch.chdir(ROOT)  # the model's data.root is relative to the repository
    torch.set_num_threads(1)
    result = evaluate_checkpoint("brats-x4", split="test", max_slices=6, device=torch.device("cpu"),
                                 overrides=list(OVERRIDES))
    assert [s["slice"] for s in result["per_slice"]] == [s["slice"] for s in card["per_slice"]]
    assert result["fasr"]["psnr"] == pytest.approx(card["fasr"]["psnr"], abs=0.05)
    assert result["fasr"]["psnr"] > result["bicubic"]["psnr"] + 1.0
