"""Texture-extractor backbones written with torchvision's layer layout and state-dict key names.

Keeping the key names means users can load real ImageNet weights (e.g. torchvision's ``vgg19-dcbb9e9d.pth`` or
``resnet18-f37072fd.pth``) from a file with :func:`load_torchvision_weights`; nothing is downloaded here.

* :class:`VGG19` -- ``features.N`` exactly as ``torchvision.models.vgg19().features`` (Fig. 3 of the paper), cut
  after the deepest layer the extractor taps.
* :class:`ResNet` -- ``conv1/bn1/layer1..layer4`` as torchvision's ResNet18/34 (Table II). The stem keeps the
  7x7 kernel (so ImageNet weights load) but runs at stride 1 without the max-pool, so ``layer1`` is at full
  resolution, ``layer2`` at 1/2 and ``layer3`` at 1/4 with 64/128/256 channels, the same scales and channels
  as the VGG taps (the paper: "we modified the feature map channels ... based on the resnet source code").
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from fasr.errors import FasrError

__all__ = [
    "VGG19",
    "VGG19_LAYERS",
    "ResNet",
    "BasicBlock",
    "load_torchvision_weights",
    "backbone_name",
    "resolve_weights",
    "SHIPPED_WEIGHTS",
]

# Backbone weights shipped inside the package, by name and backbone: ``mri`` holds the extractors trained on MRI
# by ``fasr pretrain-extractor`` (its cross-contrast contrastive objective; ``docs/model-card.md``), torchvision key
# names: the VGG19 through relu3_1 (also the perceptual network) and each ResNet through ``layer3``.
SHIPPED_WEIGHTS: dict[str, dict[str, Path]] = {
    "mri": {
        name: Path(__file__).resolve().parents[1] / "pretrained" / f"mri-{name}.pth"
        for name in ("vgg19", "resnet18", "resnet34")
    }
}

# torchvision vgg19 "E" configuration: channel counts, "M" = max-pool.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]


def _vgg19_layer_names() -> list[str]:
    """Names of ``features`` children in order: conv1_1, relu1_1, ..., pool1, ... (torchvision indices)."""
    names, block, conv = [], 1, 1
    for v in _VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names += [f"conv{block}_{conv}", f"relu{block}_{conv}"]
            conv += 1
    return names


VGG19_LAYERS: list[str] = _vgg19_layer_names()  # VGG19_LAYERS.index("relu3_1") == 11, as in torchvision


class VGG19(nn.Module):
    """``torchvision.models.vgg19().features``, truncated after ``last`` (e.g. ``"relu3_1"``).

    Args:
        last: name of the deepest layer kept (``relu5_4`` keeps all convolutions).
    """

    def __init__(self, last: str = "relu5_4") -> None:
        super().__init__()
        if last not in VGG19_LAYERS:
            raise ValueError(f"unknown VGG19 layer '{last}'")
        layers: list[nn.Module] = []
        in_ch = 3
        for v in _VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_ch, v, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                in_ch = v
        self.features = nn.Sequential(*layers[: VGG19_LAYERS.index(last) + 1])

    def forward(self, x: Tensor, taps: list[str]) -> dict[str, Tensor]:
        """Run the layers and return the activations named in ``taps`` (e.g. ``["relu1_1", "relu3_1"]``)."""
        wanted = {VGG19_LAYERS.index(t): t for t in taps}
        out: dict[str, Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
                if len(out) == len(wanted):
                    break
        return out


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (two 3x3 convs with batch norm and an optional projection)."""

    expansion = 1

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet18 (``depth=18``) or ResNet34 (``depth=34``) trunk with torchvision key names.

    Outputs ``layer1`` (64 ch, full res), ``layer2`` (128, 1/2), ``layer3`` (256, 1/4) and, if kept,
    ``layer4`` (512, 1/8).

    Args:
        depth: 18 or 34.
        last: deepest stage kept (``"layer3"`` or ``"layer4"``).
    """

    def __init__(self, depth: int = 18, last: str = "layer3") -> None:
        super().__init__()
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth]
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=1, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        n_stages = {"layer3": 3, "layer4": 4}[last]
        in_ch = 64
        for i, (n, ch) in enumerate(zip(blocks[:n_stages], (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            stage = [BasicBlock(in_ch, ch, stride)] + [BasicBlock(ch, ch) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
            in_ch = ch
        self.n_stages, self.depth = n_stages, depth

    def forward(self, x: Tensor, taps: list[str]) -> dict[str, Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out: dict[str, Tensor] = {}
        for i in range(1, self.n_stages + 1):
            x = getattr(self, f"layer{i}")(x)
            if f"layer{i}" in taps:
                out[f"layer{i}"] = x
        return out


def backbone_name(module: nn.Module) -> str:
    """The :data:`SHIPPED_WEIGHTS` key of a :class:`VGG19` or :class:`ResNet` (``vgg19``, ``resnet18``, ...)."""
    if isinstance(module, ResNet):
        return f"resnet{module.depth}"
    if isinstance(module, VGG19):
        return "vgg19"
    raise FasrError(f"no shipped weights for a {type(module).__name__}; pass a weights file instead")


def resolve_weights(module: nn.Module, weights: str | Path) -> Path:
    """The file ``weights`` names for ``module``: a :data:`SHIPPED_WEIGHTS` name's file for its backbone, else the
    path itself."""
    shipped = SHIPPED_WEIGHTS.get(str(weights))
    return shipped[backbone_name(module)] if shipped else Path(weights)


def load_torchvision_weights(module: nn.Module, path: str | Path) -> list[str]:
    """Load a torchvision ImageNet checkpoint into a :class:`VGG19` or :class:`ResNet` (truncated or not).

    Every parameter of ``module`` must be present with the right shape; keys the module does not have
    (deeper layers, the classifier ``fc``/``classifier``) are ignored and returned.

    Args:
        module: the backbone to fill.
        path: a ``.pth`` file as published by torchvision (e.g. ``vgg19-dcbb9e9d.pth``).
    """
    hint = "download it on a machine with internet (torchvision's model zoo) and pass its path"
    if str(path) in SHIPPED_WEIGHTS:
        hint = (f"reinstall fasr, or write it with `fasr pretrain-extractor --config configs/pretrain-extractor.yaml "
                f"--set backbone={backbone_name(module)} --out {resolve_weights(module, path)}`")
    path = resolve_weights(module, path)
    if not path.is_file():
        raise FasrError(f"backbone weights file '{path}' not found; {hint}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise FasrError(f"cannot read backbone weights '{path}' ({type(exc).__name__}); {hint}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise FasrError(f"'{path}' does not hold a state dict; {hint}")
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or wrong:
        detail = f"missing {missing[:3]}" if missing else f"wrong shapes for {wrong[:3]}"
        raise FasrError(
            f"'{path}' does not match the {type(module).__name__} backbone ({detail}); "
            f"pass a torchvision {type(module).__name__.lower()} ImageNet checkpoint"
        )
    module.load_state_dict({k: state[k] for k in own}, strict=True)
    return sorted(k for k in state if k not in own)
