"""What a run writes besides checkpoints: ``train.log`` (events), ``metrics.jsonl`` (one validation per line, the
Fig. 11 curve) and TensorBoard (losses, learning rates, validation scores, image grids). Only rank 0 writes."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fasr.checkpoint import METRICS_FILE, read_history
from fasr.config import LogConfig
from fasr.scoring.volumes import BICUBIC, VolumePrediction

__all__ = ["RunLogger", "image_grid", "LOG_FILE", "TB_DIR"]

LOG_FILE = "train.log"
TB_DIR = "tb"


def image_grid(volumes: dict[str, VolumePrediction], method: str, max_rows: int) -> torch.Tensor:
    """(1, rows*H, 5*W) image on [0, 1]: per slice LR (nearest-upsampled), Ref, SR, HR, |SR - HR| (x4 gain).

    Args:
        volumes: validation predictions.
        method: which output is SR.
        max_rows: slices shown (taken from the middle of each volume in turn).
    """
    rows = []
    for v in volumes.values():
        i = len(v.slices) // 2
        hr = torch.from_numpy(v.hr[i])[None, None]  # (1, 1, H, W)
        lr = F.interpolate(torch.from_numpy(v.lr[i])[None, None], size=hr.shape[-2:], mode="nearest")
        sr = torch.from_numpy(v.outputs[method][i])[None, None]
        tiles = [(t + 1) / 2 for t in (lr, torch.from_numpy(v.ref[i])[None, None], sr, hr)]
        tiles.append(2 * (sr - hr).abs())  # |error| on [-1, 1] is at most 2: x4 gain after the /2 above
        rows.append(torch.cat(tiles, dim=-1))  # (1, 1, H, 5W)
        if len(rows) == max_rows:
            break
    return torch.cat(rows, dim=-2)[0].clamp(0, 1)  # (1, rows*H, 5W)


class RunLogger:
    """Rank-0 writer of a run folder's logs; every method is a no-op when ``enabled`` is False.

    Args:
        run_dir: the run folder.
        cfg: logging section of the config.
        enabled: False on ranks other than 0.
        resume_step: on resume, TensorBoard events and history records after this step are dropped
            (they came from the interrupted tail of the run and will be written again).
    """

    def __init__(self, run_dir: Path, cfg: LogConfig, enabled: bool, resume_step: int | None = None) -> None:
        self.run_dir, self.cfg, self.enabled = run_dir, cfg, enabled
        self.writer = None
        if not enabled:
            return
        if resume_step is not None:
            kept = [r for r in read_history(run_dir) if r["step"] <= resume_step]
            (run_dir / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in kept))
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

            self.writer = SummaryWriter(str(run_dir / TB_DIR), purge_step=resume_step)

    def info(self, message: str) -> None:
        """A line on stderr and in ``train.log``."""
        if not self.enabled:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        print(f"fasr train: {message}", file=sys.stderr, flush=True)
        with open(self.run_dir / LOG_FILE, "a") as fh:
            fh.write(f"{stamp} {message}\n")
        if self.writer is not None:
            self.writer.add_text("log", message)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """TensorBoard scalars ``prefix/name``."""
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(f"{prefix}/{name}", value, step)

    def validation(self, record: dict[str, Any], volumes: dict[str, VolumePrediction], method: str, index: int) -> None:
        """Append one validation record to ``metrics.jsonl`` and TensorBoard (with an image grid every
        ``image_every`` validations)."""
        if not self.enabled:
            return
        with open(self.run_dir / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        step = record["step"]
        self.scalars("val", {k: record[k] for k in ("psnr", "ssim", "nmse")}, step)
        self.scalars("val_bicubic", {k: record[f"{BICUBIC}_{k}"] for k in ("psnr", "ssim")}, step)
        if self.writer is not None and self.cfg.image_every and index % self.cfg.image_every == 0:
            grid = image_grid(volumes, method, max_rows=4)
            self.writer.add_image("val/lr_ref_sr_hr_error", grid.numpy().astype(np.float32), step)
        self.info(
            f"epoch {record['epoch']} step {step}: val PSNR {record['psnr']:.2f} dB SSIM {record['ssim']:.4f} "
            f"(bicubic {record[f'{BICUBIC}_psnr']:.2f} / {record[f'{BICUBIC}_ssim']:.4f}), "
            f"{record['samples_per_s']:.1f} samples/s"
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
