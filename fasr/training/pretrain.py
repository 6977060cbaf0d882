"""``fasr pretrain-extractor``: a fixed MRI feature network in place of the unavailable ImageNet VGG19 (ours).

The texture extractor (VGG19 through relu3_1, or with ``backbone`` a ResNet through ``layer3``; torchvision key
names) is trained on co-registered multi-contrast
volumes with a cross-contrast contrastive objective: the same position in two contrasts of one subject is the
positive, every other position of the other image a negative (InfoNCE on the 3x3-patch cosine of centred 1/4-grid
features, exactly the correlation the alignment modules match with). Each view is, at random, the HR slice or
its bicubic down-up at x2 or x4, so features of I_LR-up (queries), I_Ref-down-up (keys) and I_Ref (values) agree.

The result is a torchvision-format state dict (fp16) that ``model.backbone_weights`` (default initialisation)
and ``loss.perceptual_weights`` (default perceptual network, frozen) accept.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader

from fasr.config import add_set_argument, apply_overrides, from_dict, read_yaml
from fasr.data.config import DataConfig
from fasr.data.datasets import build_dataset
from fasr.data.degrade import Bicubic, resize
from fasr.data.normalize import FOREGROUND_LEVEL
from fasr.errors import FasrError
from fasr.models.alignment import CrossAttention, Matcher
from fasr.models.correspondence import MatchTarget
from fasr.models.extractor import TextureExtractor
from fasr.models.grids import QUERY_GRID

__all__ = ["PretrainConfig", "pretrain_extractor", "add_arguments", "run"]


@dataclass
class PretrainConfig:
    """Settings of ``fasr pretrain-extractor``.

    Args:
        data: the volumes (train split only: validation and test subjects are never seen).
        backbone: ``vgg19`` (the shipped network's) or ``resnet18`` / ``resnet34``: a Table II extractor that
            starts, like the VGG19, from this MRI pretext instead of random weights (ours).
        steps: optimiser steps.
        batch_size: slice pairs per step.
        lr: Adam learning rate.
        temperature: InfoNCE temperature.
        degrade_scales: factors of the random bicubic down-up applied to a view (HR kept with equal chance).
        seed: random seed.
    """

    data: DataConfig = field(default_factory=DataConfig)
    backbone: Literal["vgg19", "resnet18", "resnet34"] = "vgg19"
    steps: int = 400
    batch_size: int = 8
    lr: float = 2e-4
    temperature: float = 0.07
    degrade_scales: tuple[int, ...] = (2, 4)
    seed: int = 0


def _view(x: torch.Tensor, scales: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """(B, 1, H, W) -> the same batch, each image HR or bicubic down-up by a random factor of ``scales``."""
    choice = torch.randint(len(scales) + 1, (x.shape[0],), generator=generator)
    out = x.clone()
    for i, s in enumerate(scales, start=1):
        pick = choice == i
        if pick.any():
            out[pick] = resize(Bicubic().down(x[pick], s), tuple(x.shape[-2:]))
    return out


def _identity_target(hr: torch.Tensor) -> MatchTarget:
    """Registered views: query i's true key is i; queries count where the target has content."""
    cells = QUERY_GRID.factor
    b, _, h, w = hr.shape
    index = torch.arange((h // cells) * (w // cells)).expand(b, -1)
    content = torch.nn.functional.avg_pool2d((hr > FOREGROUND_LEVEL).float(), cells).flatten(1) > 0.5
    return MatchTarget(index, content)


def pretrain_extractor(cfg: PretrainConfig, out: Path, log=print) -> Path:
    """Train the extractor and write it to ``out`` (torchvision key names, fp16); returns ``out``.

    Args:
        cfg: settings.
        out: output ``.pth`` file (written atomically; an existing file is replaced only at the end).
        log: where progress lines go.
    """
    torch.manual_seed(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed + 1)
    # Registered views only: the identity target below would be wrong under a synthetic misalignment.
    data = replace(cfg.data, misalign=(0.0, 0.0, 0.0))
    dataset = build_dataset(data, "train", scale=max(cfg.degrade_scales), train=True)
    if len(dataset) < cfg.batch_size:
        raise FasrError(f"{len(dataset)} training slices, fewer than one batch of {cfg.batch_size}; add data.root")
    extractor = TextureExtractor(cfg.backbone, "public", deepest=QUERY_GRID, weights=None)
    head = CrossAttention(("1/4",), "pooled", Matcher())
    optimizer = torch.optim.Adam(extractor.parameters(), lr=cfg.lr)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        collate_fn=lambda s: (torch.stack([x.hr for x in s]), torch.stack([x.ref for x in s])))
    log(f"pretraining the {cfg.backbone} extractor on {len(dataset)} slice pairs for {cfg.steps} steps")
    step, start = 0, time.perf_counter()
    while step < cfg.steps:
        for hr, ref in loader:
            a, b = _view(hr, cfg.degrade_scales, generator), _view(ref, cfg.degrade_scales, generator)
            fa, fb = extractor(a, (QUERY_GRID,)), extractor(b, (QUERY_GRID,))
            target = _identity_target(hr)
            # Symmetric InfoNCE: target contrast -> reference contrast and back.
            loss = 0.5 * (head.correspondence_loss(fa, fb, target, cfg.temperature)
                          + head.correspondence_loss(fb, fa, target, cfg.temperature))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 20 == 0 or step == cfg.steps:
                log(f"step {step}/{cfg.steps} infonce {float(loss.detach()):.4f} ({time.perf_counter() - start:.0f} s)")
            if step >= cfg.steps:
                break
    state = {k: v.detach().half() for k, v in extractor.net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    log(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB)")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "example: fasr pretrain-extractor --config configs/pretrain-extractor.yaml --out mri-vgg19.pth"
    parser.add_argument("--config", help="YAML with a data: section and the PretrainConfig fields")
    parser.add_argument("--out", required=True, help="output .pth file (torchvision key names, fp16)")
    add_set_argument(parser, "steps=200")


def run(args: argparse.Namespace) -> int:
    data = read_yaml(args.config) if args.config else {}
    cfg = from_dict(PretrainConfig, apply_overrides(data, args.overrides))
    pretrain_extractor(cfg, Path(args.out))
    return 0
