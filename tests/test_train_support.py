"""Shared helpers for the training/evaluation tests (no tests here): a tiny registered model, an in-memory
paired dataset and a tiny run config."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fasr.config import RunConfig
from fasr.data.degrade import Bicubic
from fasr.data.types import PairedSample
from fasr.models import register
from fasr.models.config import ModelConfig
from fasr.models.output import SROutput

__all__ = ["TinySR", "build_tiny", "register_tiny", "PairedTensors", "tiny_config"]


class TinySR(nn.Module):
    """Bicubic upsampling plus a (damped) residual predicted from it and the reference; ``extractor.*`` reads Ref."""

    def __init__(self, scale: int, feats: int = 8) -> None:
        super().__init__()
        self.scale = scale
        self.extractor = nn.Conv2d(1, feats, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(1 + feats, feats, 3, padding=1), nn.ReLU(), nn.Conv2d(feats, 1, 3, padding=1)
        )
        with torch.no_grad():  # start close to bicubic
            self.body[-1].weight.mul_(0.1)
            self.body[-1].bias.zero_()

    def forward(self, lr: torch.Tensor, ref: torch.Tensor) -> SROutput:
        up = F.interpolate(lr, scale_factor=self.scale, mode="bicubic", align_corners=False)  # (B, 1, H, W)
        feats = torch.relu(self.extractor(ref))  # (B, feats, H, W)
        return SROutput(sr=up + self.body(torch.cat([up, feats], dim=1)), attention={}, confidence=None)


def build_tiny(cfg: ModelConfig) -> TinySR:
    return TinySR(cfg.scale, feats=max(cfg.n_feats, 1))


def register_tiny() -> None:
    """Register :class:`TinySR` as model ``tiny`` (importable as ``test_train_support:build_tiny``)."""
    register("tiny", "test_train_support:build_tiny")


class PairedTensors(Dataset):
    """In-memory :class:`PairedSample` dataset from HR target/reference stacks (each (N, H, W) on [-1, 1]).

    Args:
        hr: (N, H, W) targets; ref: (N, H, W) references; scale: LR factor; subjects: one id per slice.
    """

    def __init__(self, hr: torch.Tensor, ref: torch.Tensor, scale: int, subjects: list[str]) -> None:
        self.hr, self.ref, self.scale, self.subjects = hr, ref, scale, subjects
        self.lr = Bicubic().down(hr[:, None], scale)[:, 0]  # (N, H/s, W/s)

    def __len__(self) -> int:
        return self.hr.shape[0]

    def __getitem__(self, i: int) -> PairedSample:
        return PairedSample(
            hr=self.hr[i : i + 1],
            ref=self.ref[i : i + 1],
            lr=self.lr[i : i + 1],
            subject=self.subjects[i],
            slice_index=i,
            target_stats=(0.0, 1000.0),
            ref_stats=(0.0, 1000.0),
        )


def tiny_config(root: Path, **schedule: int) -> RunConfig:
    """A seconds-long run of :class:`TinySR` on ``write_brats(root, ["s1", "s2", "s3"])`` (``s3`` held out)."""
    cfg = RunConfig()
    cfg.model = ModelConfig(name="tiny", scale=4, n_feats=4)
    cfg.data.root = str(root)
    cfg.data.val_subjects = ["s3"]
    cfg.data.patch_size = 32
    cfg.data.slice_size = 48
    cfg.data.batch_size = 2
    cfg.loss.perceptual = 0.0
    cfg.loss.warmup_epochs = 1
    cfg.optim.lr_extractor = cfg.optim.lr_rest = 1e-3
    cfg.schedule.epochs = 2
    cfg.schedule.steps_per_epoch = 3
    for key, value in schedule.items():
        setattr(cfg.schedule, key, value)
    cfg.log.tensorboard = False
    cfg.log.progress = False
    cfg.log.val_max_slices = 4
    return cfg
