"""Texture extractor F_TE (Section III-B, Eqs. 4-6, Fig. 3).

One module is applied to I_LR-up (queries Q), I_Ref-down-up (keys K) and I_Ref (values V). It is fine-tuned
during training (not frozen). Features are returned by *grid*, named by their size relative to the HR image:

=========  ================================  =============================  ========
grid       paper name (Fig. 3)               VGG19 tap (paper / public)      channels
=========  ================================  =============================  ========
``"1"``    4x feature                        relu1_2 / relu1_1              64
``"1/2"``  2x feature                        relu2_2 / relu2_1              128
``"1/4"``  1x feature                        relu3_2 / relu3_1              256
``"1/8"``  (M-A pyramid, authors' code)      relu4_2 / relu4_1              512
``"1/16"`` (M-A pyramid, authors' code)      relu5_2 / relu5_1              512
=========  ================================  =============================  ========
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.models.backbones import SHIPPED_WEIGHTS, VGG19, ResNet, load_torchvision_weights, resolve_weights
from fasr.models.grids import GRIDS

__all__ = ["TextureExtractor", "GRIDS", "CHANNELS"]

CHANNELS = {"1": 64, "1/2": 128, "1/4": 256, "1/8": 512, "1/16": 512}

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class TextureExtractor(nn.Module):
    """Multi-grid texture features of a single-channel MRI image.

    Args:
        backbone: ``vgg19``, ``resnet18`` or ``resnet34`` (Table II).
        feature_levels: ``paper`` (relu*_2 taps, Fig. 3) or ``public`` (relu*_1, the authors' code). ResNets
            tap the end of each stage either way.
        deepest: the coarsest grid that will ever be requested (``"1/4"`` unless the M-A pyramid uses deep
            features); layers below it are not built.
        weights: torchvision-format checkpoint for the backbone (an ImageNet file, or ``mri``: the shipped MRI
            extractor of this backbone, VGG19 through relu3_1 or ResNet through ``layer3``, used by extractors
            that stop at the 1/4 grid; deeper extractors start from random weights with ``mri``); None = random.
    """

    def __init__(
        self,
        backbone: str = "vgg19",
        feature_levels: str = "public",
        deepest: str = "1/4",
        weights: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone_name = backbone
        grids = GRIDS[: GRIDS.index(deepest) + 1]
        if backbone == "vgg19":
            suffix = "2" if feature_levels == "paper" else "1"
            self.taps = {g: f"relu{i + 1}_{suffix}" for i, g in enumerate(grids)}
            self.net: nn.Module = VGG19(last=self.taps[grids[-1]])
        elif backbone in ("resnet18", "resnet34"):
            # ResNet stages stop at 1/8; the 1/16 grid (deep M-A pyramid only) is a 2x average pool of 1/8.
            self.taps = {g: f"layer{i + 1}" for i, g in enumerate(grids[:4])}
            self.net = ResNet(depth=int(backbone[6:]), last="layer4" if "1/8" in grids else "layer3")
        else:
            raise ValueError(f"unknown backbone '{backbone}'; choose vgg19, resnet18 or resnet34")
        self.grids = grids
        self.weights = weights if weights not in SHIPPED_WEIGHTS or self._takes_shipped() else None
        if weights and not self.weights:
            last = "relu3_1" if backbone == "vgg19" else "layer3"
            warnings.warn(f"the shipped '{weights}' {backbone} ends at {last}; this extractor "
                          f"(taps {sorted(self.taps.values())}) starts from random weights", stacklevel=2)
        self.weights_file: Path | None = None  # the file the initial weights were read from (None: random)
        if self.weights:
            load_torchvision_weights(self.net, self.weights)
            self.weights_file = resolve_weights(self.net, self.weights)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def initial_weights(self) -> str:
        """``random``, or the file the initial weights came from with the first 12 hex digits of its SHA-256."""
        if self.weights_file is None:
            return "random"
        digest = hashlib.sha256(self.weights_file.read_bytes()).hexdigest()[:12]
        return f"{self.weights_file.name} (sha256 {digest})"

    def _takes_shipped(self) -> bool:
        """The shipped MRI extractors stop at relu3_1 / ``layer3``: they fit extractors no deeper than that."""
        return self.grids[-1] in ("1", "1/2", "1/4") and "relu3_2" not in self.taps.values()

    def forward(self, x: Tensor, grids: tuple[str, ...]) -> dict[str, Tensor]:
        """Features of ``x`` (B, 1, H, W) on [-1, 1] for each requested grid; H, W divisible by 4.

        Returns:
            ``{grid: (B, CHANNELS[grid], H / factor, W / factor)}``
        """
        # (B, 1, H, W) on [-1, 1] -> (B, 3, H, W) ImageNet-normalised: replicate only inside the extractor.
        x = ((x + 1.0) * 0.5).expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        deepest = max(grids, key=GRIDS.index)
        wanted = GRIDS[: GRIDS.index(deepest) + 1]
        feats = self.net(x, [self.taps[g] for g in wanted if g in self.taps])
        out = {g: feats[self.taps[g]] for g in grids if g in self.taps}
        if "1/16" in grids and "1/16" not in self.taps:
            out["1/16"] = F.avg_pool2d(feats[self.taps["1/8"]], 2, ceil_mode=True)
        return out
