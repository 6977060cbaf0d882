"""DDP: two CPU processes with gloo under torchrun train a few steps and end with identical weights."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import write_brats
from fasr.checkpoint import load_checkpoint, read_history

# Runs in every torchrun process: the tiny model, a short run, then each rank's weights saved for comparison.
DRIVER = """
import sys
from pathlib import Path

import torch

from fasr.training import trainer
from test_train_support import register_tiny, tiny_config

register_tiny()
root, out = Path(sys.argv[1]), Path(sys.argv[2])
run = trainer.Trainer.run


def run_and_dump(self):
    best = run(self)
    torch.save(self.model.state_dict(), out.parent / f"rank{self.ctx.rank}.pt")
    return best


trainer.Trainer.run = run_and_dump
trainer.train(tiny_config(root, epochs=2, steps_per_epoch=2), out)
"""


def test_two_gloo_processes_hold_identical_weights(tmp_path: Path) -> None:
    root = write_brats(tmp_path / "brats", ["s1", "s2", "s3"])
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [str(tmp_path / "driver.py"), str(root), str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    for key, value in rank0.items():  # ranks draw different samples and start from different seeds:
        assert torch.equal(value, rank1[key]), key  # equal only through DDP's broadcast and gradient averaging
        assert torch.equal(value, saved["model"][key]), key
    assert saved["step"] == 4 and len(saved["rng"]) == 2  # both ranks' generators, for an exact resume
    history = read_history(tmp_path / "run")
    assert [h["epoch"] for h in history] == [1, 2]  # rank 0 alone writes the log: no duplicate lines
    assert proc.stdout.count("val PSNR") + proc.stderr.count("val PSNR") == 2
