"""Building blocks shared by the baselines: global bicubic residual, residual blocks, sub-pixel upsampling.

Every baseline predicts a *residual* that is added to the bicubic upsampling of the LR input (global residual
learning, as VDSR/MCSR do explicitly): the network only has to learn the missing high frequencies. The layer that
outputs the residual starts at zero, so every untrained baseline *is* bicubic and a short training budget
measures what each architecture learns rather than how far its random initialisation is from the image.
"""

from __future__ import annotations

from torch import Tensor, nn

from fasr.data.degrade import Bicubic
from fasr.models.output import SROutput

__all__ = [
    "conv3x3",
    "zero_",
    "prime_factors",
    "ChannelAttention",
    "ResBlock",
    "SubPixelUpsampler",
    "ResidualSR",
]

def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3x3 convolution with 'same' zero padding (any input size)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)


def zero_(layer: nn.Module) -> nn.Module:
    """Set a layer's weight (and bias) to zero, in place; returns the layer.

    Used on the layer that outputs the residual. Its own gradient is not zero, so Adam moves it on the first
    step and the layers before it receive gradient from the second step on.

    Args:
        layer: module with ``weight`` (and optional ``bias``).
    """
    nn.init.zeros_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)
    return layer


def prime_factors(n: int) -> list[int]:
    """Prime factors of ``n`` in ascending order (4 -> [2, 2], 6 -> [2, 3])."""
    if n < 1:
        raise ValueError(f"expected a positive integer, got {n}")
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention as in RCAN: ``x * sigmoid(W2 relu(W1 avgpool(x)))``.

    Args:
        n_feats: channels.
        reduction: bottleneck ratio of the two 1x1 convolutions.
    """

    def __init__(self, n_feats: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, n_feats // reduction)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(n_feats, hidden, kernel_size=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, n_feats, kernel_size=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)  # (B, C, H, W) * (B, C, 1, 1)


class ResBlock(nn.Module):
    """conv-ReLU-conv residual block without batch norm (EDSR); with channel attention it is RCAN's RCAB.

    Args:
        n_feats: channels.
        reduction: channel-attention reduction; 0 = no channel attention (EDSR block).
        res_scale: multiplier of the residual branch (EDSR's residual scaling).
    """

    def __init__(self, n_feats: int, reduction: int = 0, res_scale: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv3x3(n_feats, n_feats), nn.ReLU(inplace=True), conv3x3(n_feats, n_feats)]
        if reduction:
            layers.append(ChannelAttention(n_feats, reduction))
        self.body = nn.Sequential(*layers)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.body(x)


class SubPixelUpsampler(nn.Sequential):
    """Sub-pixel (pixel-shuffle) upsampling by ``scale``, one conv + shuffle per prime factor (x4 = x2, x2).

    Args:
        n_feats: channels in and out.
        scale: integer upsampling factor >= 2.
    """

    def __init__(self, n_feats: int, scale: int) -> None:
        layers: list[nn.Module] = []
        for factor in prime_factors(scale):
            # (B, C, h, w) -> (B, C * f^2, h, w) -> (B, C, h * f, w * f)
            layers += [conv3x3(n_feats, n_feats * factor * factor), nn.PixelShuffle(factor)]
        super().__init__(*layers)


class ResidualSR(nn.Module):
    """Base class of the baselines: ``sr = bicubic(lr) + residual(lr, ref, bicubic(lr))``.

    Subclasses implement :meth:`residual`; single-image models ignore ``ref``.

    Args:
        scale: upsampling factor.
    """

    def __init__(self, scale: int) -> None:
        super().__init__()
        if scale < 2:
            raise ValueError(f"scale must be >= 2, got {scale}")
        self.scale = scale
        self.upsample = Bicubic()

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        """(B, 1, H, W) correction added to ``base``.

        Args:
            lr: (B, 1, h, w) low-resolution target.
            ref: (B, 1, H, W) high-resolution reference, H = h * scale.
            base: (B, 1, H, W) bicubic upsampling of ``lr``.
        """
        raise NotImplementedError

    def forward(self, lr: Tensor, ref: Tensor) -> SROutput:
        base = self.upsample.up(lr, self.scale)  # (B, 1, H, W)
        return SROutput(sr=base + self.residual(lr, ref, base), attention={}, confidence=None)
