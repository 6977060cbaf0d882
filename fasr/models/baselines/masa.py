"""MASA-SR (Lu et al., "MASA-SR: Matching Acceleration and Spatial Adaptation for Reference-Based Image
Super-Resolution", CVPR 2021), written from the paper for the methods table.

Published (Sec. 3, Fig. 2):
- one encoder, shared by I_LR, I_Ref-down and I_Ref, gives features at the input's scale and at 1/2 and 1/4;
- the Match & Extraction Module (MEM, Sec. 3.1) matches I_LR against I_Ref-down from coarse to fine: the LR
  features are cut into blocks; the centre patch of a block (3x3, correlation summed over the dilations 1, 2 and
  3) picks the most similar position of the whole Ref-down, and a region of 1.5 block sizes around it is the only
  place the block's own patches are then matched against (dense 3x3 cosine similarity, top 1). The indices and
  similarities of that fine match extract the Ref features at each scale (patches 3s x 3s, stride s, overlaps
  averaged), weighted by the similarity;
- the Spatial Adaptation Module (SAM, Sec. 3.2) remaps the distribution of the extracted Ref features to the LR
  features': ``F' = IN(F_ref) * (gamma + sigma_lr) + (beta + mu_lr)``, with ``gamma`` and ``beta`` predicted
  per pixel from both features and ``mu``, ``sigma`` the channel statistics of the LR features;
- the Dual Residual Aggregation Module (DRAM, Sec. 3.3) fuses the LR and Ref features at each x2 step through two
  residual branches (the Ref branch corrects Ref by what its downsampling misses in the LR, the LR branch
  upsamples LR corrected by what the Ref adds);
- a decoder merges the LR features from 1/4 up, then adds the adapted Ref features scale by scale; the output is
  added to the bicubic upsampling of the LR; MASA-rec trains with L1 alone.

Ours: width ``n_feats`` and a light depth (2 blocks per encoder level, 1 per decoder level, 4-2-1 at the output
scales; the paper: 4-4-4 and 2-2-2, 12-8-4); the output layer starts at zero (every baseline starts as bicubic,
:mod:`fasr.models.baselines.common`); I_Ref-down is made with the LR's nominal degradation (``ref_degradation``, as
for FASR-Net; the paper uses bicubic); any LR size (features padded to whole blocks); a query's overlapping patches
are averaged across block edges (the paper folds block by block); scales that are powers of two; border patches
read replicated edge pixels and a block's Ref region is shifted to lie inside Ref-down; SAM's ``sigma_lr`` is the
sample standard deviation. Equation numbers are not cited: the paper's method section was not at hand here, so
its sections and Fig. 2 are.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.data.degrade import Bicubic, Degradation
from fasr.errors import FasrError
from fasr.models.baselines.common import ResBlock, ResidualSR, conv3x3, zero_
from fasr.models.config import ModelConfig, ref_degradation_of

__all__ = [
    "BLOCK",
    "REGION",
    "DILATIONS",
    "coarse_match",
    "fine_match",
    "extract",
    "SpatialAdaptation",
    "DualResidualAggregation",
    "MASA",
    "from_config",
]

BLOCK = 8  # LR pixels per side of a block of the coarse match (the paper's 8)
REGION = 1.5  # a block's Ref region spans 1.5 block sizes (the paper's), plus one pixel of patch margin per side
DILATIONS = (1, 2, 3)  # the centre patch's correlation is summed over these dilations (the paper's)


def _blocks(h: int, w: int, block: int) -> tuple[int, int]:
    return math.ceil(h / block), math.ceil(w / block)


def _normalised_patches(x: Tensor, dilation: int = 1, padding: int = 0) -> Tensor:
    """(B, C, H, W) -> (B, C*9, L): every 3x3 patch as a unit vector (cosine similarity by dot products)."""
    return F.normalize(F.unfold(x, 3, dilation=dilation, padding=padding), dim=1)


def coarse_match(lr: Tensor, ref_down: Tensor, block: int = BLOCK, dilations: tuple[int, ...] = DILATIONS) -> Tensor:
    """MEM's coarse step: the Ref-down position most similar to each block's centre patch.

    Args:
        lr: (B, C, H, W) LR features.
        ref_down: (B, C, Hr, Wr) Ref-down features.
        block: block side in pixels.
        dilations: the centre patch's correlation is summed over these.

    Returns:
        (B, P, 2) long (row, column) in Ref-down per block, P = ceil(H / block) * ceil(W / block), row-major.
    """
    b, c, h, w = lr.shape
    nb_y, nb_x = _blocks(h, w, block)
    pad = max(dilations)
    padded = F.pad(lr, (pad, pad, pad, pad), mode="replicate")  # (B, C, H + 2d, W + 2d)
    cy = (torch.arange(nb_y, device=lr.device) * block + block // 2).clamp(max=h - 1) + pad  # (nb_y,)
    cx = (torch.arange(nb_x, device=lr.device) * block + block // 2).clamp(max=w - 1) + pad  # (nb_x,)
    corr = 0
    for d in dilations:
        taps = torch.tensor([-d, 0, d], device=lr.device)
        rows = (cy[:, None] + taps)[:, None, :, None]  # (nb_y, 1, 3, 1)
        cols = (cx[:, None] + taps)[None, :, None, :]  # (1, nb_x, 1, 3)
        centre = padded[:, :, rows, cols]  # (B, C, nb_y, nb_x, 3, 3)
        centre = centre.permute(0, 2, 3, 1, 4, 5).reshape(b, nb_y * nb_x, c * 9)  # (B, P, C*9)
        keys = _normalised_patches(ref_down, dilation=d, padding=d)  # (B, C*9, Hr*Wr)
        corr = corr + F.normalize(centre, dim=2) @ keys  # (B, P, Hr*Wr)
    best = corr.argmax(dim=2)  # (B, P)
    return torch.stack([best // ref_down.shape[3], best % ref_down.shape[3]], dim=2)


def _region_size(extent: int, block: int, region: float) -> int:
    """Side of a block's Ref region: 2 * int(block / 2 * region) + 1 centres plus one margin pixel per side."""
    return min(2 * int(block / 2 * region) + 3, extent)


def fine_match(
    lr: Tensor, ref_down: Tensor, centres: Tensor, block: int = BLOCK, region: float = REGION
) -> tuple[Tensor, Tensor]:
    """MEM's fine step: each LR position's 3x3 patch against the patches of its block's Ref region only.

    Args:
        lr: (B, C, H, W) LR features.
        ref_down: (B, C, Hr, Wr) Ref-down features (at least 3 x 3).
        centres: (B, P, 2) each block's coarse match (:func:`coarse_match`).
        block: block side in pixels.
        region: region side in block sides.

    Returns:
        ``match``: (B, H, W, 2) long, the Ref-down (row, column) of the centre of each LR position's best patch;
        ``score``: (B, 1, H, W) its cosine similarity.
    """
    b, c, h, w = lr.shape
    _, _, hr, wr = ref_down.shape
    nb_y, nb_x = _blocks(h, w, block)
    size_y, size_x = _region_size(hr, block, region), _region_size(wr, block, region)
    # Region origins, kept inside Ref-down.
    y0 = (centres[..., 0] - size_y // 2).clamp(0, hr - size_y)  # (B, P)
    x0 = (centres[..., 1] - size_x // 2).clamp(0, wr - size_x)
    rows = y0[..., None] + torch.arange(size_y, device=lr.device)  # (B, P, size_y)
    cols = x0[..., None] + torch.arange(size_x, device=lr.device)  # (B, P, size_x)
    batch = torch.arange(b, device=lr.device)[:, None, None, None]
    regions = ref_down.permute(0, 2, 3, 1)[batch, rows[..., :, None], cols[..., None, :]]  # (B, P, sy, sx, C)
    regions = regions.reshape(b * nb_y * nb_x, size_y, size_x, c).permute(0, 3, 1, 2)  # (B*P, C, sy, sx)
    keys = _normalised_patches(regions)  # (B*P, C*9, (sy-2)*(sx-2))
    # Queries: every LR position's 3x3 patch (replicate border), grouped by block.
    padded = F.pad(lr, (1, nb_x * block - w + 1, 1, nb_y * block - h + 1), mode="replicate")
    queries = _normalised_patches(padded)  # (B, C*9, Hp*Wp), Hp = nb_y * block
    queries = queries.view(b, c * 9, nb_y, block, nb_x, block).permute(0, 2, 4, 3, 5, 1)  # (B, nb_y, nb_x, k, k, C*9)
    queries = queries.reshape(b * nb_y * nb_x, block * block, c * 9)  # (B*P, k*k, C*9)
    score, index = (queries @ keys).max(dim=2)  # (B*P, k*k): best key per query
    # Region-local patch index -> Ref-down coordinates of the patch centre.
    my = y0.reshape(-1, 1) + 1 + index // (size_x - 2)  # (B*P, k*k)
    mx = x0.reshape(-1, 1) + 1 + index % (size_x - 2)
    match = torch.stack([my, mx], dim=2).view(b, nb_y, nb_x, block, block, 2)
    match = match.permute(0, 1, 3, 2, 4, 5).reshape(b, nb_y * block, nb_x * block, 2)[:, :h, :w]  # (B, H, W, 2)
    score = score.view(b, nb_y, nb_x, block, block).permute(0, 1, 3, 2, 4).reshape(b, nb_y * block, nb_x * block)
    return match, score[:, None, :h, :w]


def extract(ref: Tensor, match: Tensor, score: Tensor, s: int) -> Tensor:
    """MEM's extraction at scale ``s``: each LR position's matched 3s x 3s Ref patch (stride s), the overlapping
    patches averaged, weighted by the similarity (bilinearly upsampled).

    Args:
        ref: (B, C, Hr*s, Wr*s) Ref features at ``s`` times the Ref-down grid.
        match: (B, H, W, 2) Ref-down centres (:func:`fine_match`).
        score: (B, 1, H, W) similarities.
        s: scale of ``ref`` over the Ref-down grid (1, 2, 4, ...).

    Returns:
        (B, C, H*s, W*s).
    """
    b, c, h_ref, w_ref = ref.shape
    _, h, w, _ = match.shape
    sub = torch.arange(s, device=ref.device)
    flat_ref = ref.flatten(2)  # (B, C, Hr*s * Wr*s)
    total = ref.new_zeros(b, c, h * s * w * s)
    count = ref.new_zeros(b, 1, h, w)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            # Position p receives the part of the patch matched at q = p - (dy, dx) that covers it: Ref at m(q) + d.
            valid = torch.zeros(b, 1, h, w, dtype=ref.dtype, device=ref.device)
            shifted = torch.zeros_like(match)  # (B, H, W, 2)
            ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h - max(dy, 0))
            xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w - max(dx, 0))
            shifted[:, ys, xs] = match[:, yd, xd] + torch.tensor([dy, dx], device=match.device)
            valid[:, :, ys, xs] = 1
            rows = shifted[..., 0, None] * s + sub  # (B, H, W, s): Ref rows of each position's s x s pixels
            cols = shifted[..., 1, None] * s + sub  # (B, H, W, s)
            index = rows[..., :, None] * w_ref + cols[..., None, :]  # (B, H, W, s, s)
            index = index.permute(0, 1, 3, 2, 4).reshape(b, 1, -1)  # (B, H, s, W, s) -> (B, 1, H*s * W*s)
            weight = valid.repeat_interleave(s, 2).repeat_interleave(s, 3).flatten(2)  # (B, 1, H*s * W*s)
            total = total + flat_ref.gather(2, index.expand(b, c, -1)) * weight
            count = count + valid
    count = count.repeat_interleave(s, 2).repeat_interleave(s, 3)  # (B, 1, H*s, W*s)
    weight = F.interpolate(score, scale_factor=s, mode="bilinear", align_corners=False) if s > 1 else score
    return total.view(b, c, h * s, w * s) / count * weight


class Encoder(nn.Module):
    """The shared encoder: features at the input's scale and at each halving (strided convolutions)."""

    def __init__(self, n_feats: int, levels: int, blocks: int = 2) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(1 if i == 0 else n_feats, n_feats, 3, stride=1 if i == 0 else 2, padding=1),
                nn.ReLU(inplace=True),
                *[ResBlock(n_feats) for _ in range(blocks)],
            )
            for i in range(levels)
        )

    def forward(self, x: Tensor, levels: int) -> list[Tensor]:
        """(B, 1, H, W) -> [(B, C, H, W), (B, C, H/2, W/2), ...], ``levels`` of them."""
        features = []
        for stage in self.stages[:levels]:
            x = stage(x)
            features.append(x)
        return features


class SpatialAdaptation(nn.Module):
    """SAM (Sec. 3.2): ``IN(F_ref) * (gamma + sigma_lr) + (beta + mu_lr)``; ``gamma``, ``beta`` start at zero, so
    an untrained SAM transfers the LR features' channel statistics to the Ref features."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(conv3x3(2 * n_feats, n_feats), nn.ReLU(inplace=True))
        self.gamma = zero_(conv3x3(n_feats, n_feats))
        self.beta = zero_(conv3x3(n_feats, n_feats))

    def forward(self, lr: Tensor, ref: Tensor) -> Tensor:
        """lr, ref: (B, C, H, W) -> (B, C, H, W)."""
        style = self.shared(torch.cat([lr, ref], dim=1))  # (B, 2C, H, W) -> (B, C, H, W)
        sigma = lr.flatten(2).std(dim=2)[..., None, None]  # (B, C, 1, 1)
        mu = lr.flatten(2).mean(dim=2)[..., None, None]
        return F.instance_norm(ref) * (self.gamma(style) + sigma) + self.beta(style) + mu


class DualResidualAggregation(nn.Module):
    """DRAM (Sec. 3.3), one x2 step: Ref branch ``ref + relu(up_a(relu(down_a(ref)) - lr))``, LR branch
    ``relu(up_b(lr + (lr - relu(down_b(ref)))))``, fused by ``relu(conv(concat(both)))``."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.down_a = nn.Conv2d(n_feats, n_feats, 3, stride=2, padding=1)
        self.up_a = nn.ConvTranspose2d(n_feats, n_feats, 3, stride=2, padding=1, output_padding=1)
        self.down_b = nn.Conv2d(n_feats, n_feats, 3, stride=2, padding=1)
        self.up_b = nn.ConvTranspose2d(n_feats, n_feats, 3, stride=2, padding=1, output_padding=1)
        self.fuse = conv3x3(2 * n_feats, n_feats)

    def forward(self, lr: Tensor, ref: Tensor) -> Tensor:
        """lr (B, C, h, w), ref (B, C, 2h, 2w) -> (B, C, 2h, 2w)."""
        ref_branch = ref + F.relu(self.up_a(F.relu(self.down_a(ref)) - lr))
        lr_branch = F.relu(self.up_b(2 * lr - F.relu(self.down_b(ref))))
        return F.relu(self.fuse(torch.cat([ref_branch, lr_branch], dim=1)))


class MASA(ResidualSR):
    """MASA-SR with the bicubic global residual of the baselines.

    Args:
        scale: upsampling factor, a power of two.
        n_feats: channels.
        ref_degradation: how I_Ref-down is made (the LR's degradation).
        stage_blocks: residual blocks at the LR scale and after each x2 step.
    """

    def __init__(
        self, scale: int, n_feats: int = 64, ref_degradation: Degradation | None = None,
        stage_blocks: tuple[int, ...] = (4, 2, 1),
    ) -> None:
        super().__init__(scale)
        steps = int(math.log2(scale))
        if 2**steps != scale:
            raise FasrError(f"model 'masa' upsamples in x2 steps: model.scale must be 2, 4 or 8, not {scale}")
        self.steps = steps
        self.ref_degradation = ref_degradation or Bicubic()
        self.encoder = Encoder(n_feats, levels=max(3, steps + 1))
        self.lr_merge = nn.ModuleList(conv3x3(n_feats if i == 2 else 2 * n_feats, n_feats) for i in range(3))
        self.lr_blocks = nn.ModuleList(ResBlock(n_feats) for _ in range(3))
        self.adapt = SpatialAdaptation(n_feats)  # one SAM for every scale, as the paper
        self.merge_ref = conv3x3(2 * n_feats, n_feats)
        self.aggregate = nn.ModuleList(DualResidualAggregation(n_feats) for _ in range(steps))
        blocks = [stage_blocks[min(i, len(stage_blocks) - 1)] for i in range(steps + 1)]
        self.stage_blocks = nn.ModuleList(nn.Sequential(*[ResBlock(n_feats) for _ in range(n)]) for n in blocks)
        self.tail = zero_(conv3x3(n_feats, 1))

    def _decode_lr(self, features: list[Tensor]) -> Tensor:
        """The decoder's LR path: from 1/4 of the LR up to the LR's scale, merging each encoder level."""
        x = None
        for i in (2, 1, 0):
            skip = features[i]
            if x is not None:
                x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
                skip = torch.cat([x, skip], dim=1)  # (B, 2C, h_i, w_i)
            x = self.lr_blocks[i](F.relu(self.lr_merge[i](skip)))
        return x

    def residual(self, lr: Tensor, ref: Tensor, base: Tensor) -> Tensor:
        if min(lr.shape[-2:]) < 3:
            raise FasrError(f"MASA-SR matches 3x3 patches: the LR must be 3x3 pixels or more, not {lr.shape[-2:]}")
        ref_down = self.ref_degradation.down(ref, self.scale)  # (B, 1, h, w)
        lr_features = self.encoder(lr, 3)
        (ref_down_features,) = self.encoder(ref_down, 1)  # (B, C, h, w)
        ref_features = self.encoder(ref, self.steps + 1)  # level k: (B, C, H / 2^k, W / 2^k)
        centres = coarse_match(lr_features[0], ref_down_features)  # MEM, coarse
        match, score = fine_match(lr_features[0], ref_down_features, centres)  # MEM, fine
        x = self._decode_lr(lr_features)  # (B, C, h, w)
        for j in range(self.steps + 1):  # output scale 2^j of the LR
            transferred = extract(ref_features[self.steps - j], match, score, 2**j)  # (B, C, h 2^j, w 2^j)
            if j == 0:
                x = F.relu(self.merge_ref(torch.cat([self.adapt(x, transferred), x], dim=1)))
            else:
                up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                x = self.aggregate[j - 1](x, self.adapt(up, transferred))
            x = self.stage_blocks[j](x)
        return self.tail(x)


def from_config(cfg: ModelConfig) -> MASA:
    """Build from ``cfg.scale``, ``cfg.n_feats`` and ``cfg.ref_degradation``."""
    return MASA(cfg.scale, cfg.n_feats, ref_degradation_of(cfg))
