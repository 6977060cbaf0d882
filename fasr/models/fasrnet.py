"""FASR-Net (Fig. 2): texture extractor -> Flexible Alignment (S-A + M-A) -> CHPF.

``FASRNet(scale=4)(lr, ref)`` takes the LR target (B, 1, h, w) and the HR reference (B, 1, h*scale, w*scale) at
their native sizes, builds I_LR-up and I_Ref-down-up itself (Section III-A), pads internally to the 1/4 grid and
crops back, so any h x w works.

Through-plane models (ours, ``scale=1`` with a :class:`fasr.data.degrade.SliceProfile` ``ref_degradation``) take
planes that contain the slice axis, the thick rows already interpolated onto the reference's grid (I_LR-up is the
input), and make I_Ref-down-up with the same slice profile; everything else is the same network.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fasr.data.degrade import Bicubic, Degradation, SliceProfile, resize
from fasr.errors import FasrError
from fasr.models.alignment import ALIGNMENT_CHOICES, ALIGNMENTS, AlignmentResult, AlignmentSettings, Matcher
from fasr.models.config import ModelConfig, ref_degradation_of
from fasr.models.correspondence import MatchTarget
from fasr.models.extractor import CHANNELS, TextureExtractor
from fasr.models.fusion import ProgressiveFusion
from fasr.models.grids import GRIDS, QUERY_GRID, TRANSFER_GRIDS
from fasr.models.output import SROutput
from fasr.models.reference_guide import ReferenceGuide

__all__ = ["FASRNet", "FASROutput", "from_config", "ttsr_from_config"]

FASROutput = SROutput  # the public name in the README; same record as every model returns


class FASRNet(nn.Module):
    """Flexible Alignment Super-Resolution Network.

    Args:
        scale: in-plane upsampling factor; 1 for a through-plane model (its factor is the slice profile's).
        backbone / feature_levels / backbone_weights: texture extractor (Section III-B, Table II).
        alignment: ``both`` (S-A + M-A), ``sa``, ``ma`` or ``cross_attention`` (one-level TTSR matching).
        fusion: ``chpf`` or ``decoder``.
        n_feats / n_blocks: trunk width and residual blocks per stage.
        embed_dim / sa_key_stride: S-A word embedding width and key sampling.
        ma_pyramid: ``pooled`` or ``deep`` M-A pyramid.
        attention_score / softmax_temperature: soft-attention value (max cosine or max softmax probability).
        match_memory_mib: byte budget of one correlation block.
        search_window: match only within this many 1/4-grid cells of each query (16, ours; 0 = whole image).
        ref_degradation: how I_Ref-down-up is made (the LR's degradation; default antialiased bicubic).
        ref_detail: also transfer I_Ref - I_Ref-down-up with the full-resolution texture and inject it at full
            resolution (ours; ``ModelConfig.ref_detail``).
        ref_guided: also transfer I_Ref-down-up, fit the LR to it window by window and inject that fit applied to
            the transferred band at full resolution (ours; ``ModelConfig.ref_guided``, :mod:`fasr.models.guided`).
        guide_order: that fit's order: 1 = linear, 2 = quadratic (ours; ``ModelConfig.guide_order``).
    """

    def __init__(
        self,
        scale: int = 4,
        backbone: str = "vgg19",
        feature_levels: str = "public",
        alignment: str = "both",
        fusion: str = "chpf",
        n_feats: int = 64,
        n_blocks: tuple[int, int, int] = (8, 4, 2),
        embed_dim: int = 64,
        sa_key_stride: str | int = "coarse",
        ma_pyramid: str = "pooled",
        attention_score: str = "cosine",
        softmax_temperature: float = 0.05,
        match_memory_mib: float = 128.0,
        search_window: int = 16,
        backbone_weights: str | None = None,
        ref_degradation: Degradation | None = None,
        ref_detail: bool = False,
        ref_guided: bool = False,
        guide_order: int = 1,
    ) -> None:
        super().__init__()
        if scale < 1 or (scale == 1) != isinstance(ref_degradation, SliceProfile):
            raise ValueError(
                f"scale must be >= 2 (in-plane), or 1 with a slice-profile ref_degradation (through-plane); got {scale}"
            )
        if alignment not in ALIGNMENT_CHOICES:
            raise ValueError(f"unknown alignment '{alignment}'; choose one of {sorted(ALIGNMENT_CHOICES)}")
        if fusion not in ("chpf", "decoder"):
            raise ValueError(f"unknown fusion '{fusion}'")
        self.scale = scale
        self.alignment = alignment
        if guide_order not in (1, 2):
            raise ValueError(f"guide_order must be 1 (linear) or 2 (quadratic), got {guide_order}")
        if guide_order != 1 and not ref_guided:
            raise FasrError("model.guide_order is the fit of model.ref_guided; set model.ref_guided: true with it")
        self.ref_detail, self.ref_guided, self.guide_order = ref_detail, ref_guided, guide_order
        self.guide = ReferenceGuide(ref_detail, ref_guided, guide_order)  # ours: fasr.models.reference_guide
        self.ref_degradation = ref_degradation or Bicubic()
        matcher = Matcher(attention_score=attention_score, temperature=softmax_temperature,
                          match_memory_mib=match_memory_mib, search_window=search_window)
        settings = AlignmentSettings(CHANNELS, embed_dim, str(sa_key_stride), ma_pyramid, matcher)
        self.align = nn.ModuleDict({n: ALIGNMENTS[n].from_settings(settings) for n in ALIGNMENT_CHOICES[alignment]})
        qk = {g for m in self.align.values() for g in m.qk_grids}
        self.qk_grids = tuple(g for g in GRIDS if g in qk)  # grids of Q/K (matching), finest first
        deepest = max(GRIDS.index(g) for g in (*self.qk_grids, *TRANSFER_GRIDS))
        # Padding multiple: the coarsest grid used (1/4, or 1/16 when the deep pyramid pools three more times).
        self.multiple = GRIDS[deepest].factor
        self.extractor = TextureExtractor(backbone, feature_levels, deepest=GRIDS[deepest], weights=backbone_weights)
        n_align = len(self.align)
        # Trunk head: LR-up folded onto the 1/4 grid without loss (pixel unshuffle), for any integer scale.
        self.head = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(16, n_feats, 3, padding=1), nn.ReLU(inplace=True))
        self.fusion = ProgressiveFusion(
            n_feats, {g: n_align * CHANNELS[g] for g in TRANSFER_GRIDS}, tuple(n_blocks), fusion == "chpf",
            detail_channels=n_align if ref_detail else 0, guide_channels=2 * n_align if ref_guided else 0,
        )
        self.tail = nn.Conv2d(n_feats, 1, 3, padding=1)
        # Zero-initialised output: an untrained model is exactly bicubic (I_LR-up), like the baselines, so short
        # training budgets compare fairly and early training never falls below bicubic.
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        # Ours (ref_guided): per pixel and alignment module, how much of the predicted missing band goes straight
        # into the output, from the trunk's features and the guide itself (band and fit strength); zero-initialised
        # like every grown weight.
        self.guide_gate = nn.Conv2d(n_feats + 2 * n_align, n_align, 3, padding=1) if ref_guided else None
        if self.guide_gate is not None:
            nn.init.zeros_(self.guide_gate.weight)
            nn.init.zeros_(self.guide_gate.bias)

    def forward(
        self, lr: Tensor, ref: Tensor, match: MatchTarget | None = None, match_temperature: float = 0.07,
        degradation: Degradation | None = None,
    ) -> SROutput:
        """Super-resolve.

        Args:
            lr: (B, 1, h, w) low-resolution target on [-1, 1].
            ref: (B, 1, h * scale, w * scale) high-resolution reference on [-1, 1], on the target's grid.
            match: training only: the true key of every query on the (padded) 1/4 grid; when given, the output
                carries the correspondence loss of every alignment module (ours, ``loss.match_weight``).
            match_temperature: temperature of that loss.
            degradation: how this batch's LR was made, when not ``ref_degradation`` (training under degradation
                randomisation: one per sample, :class:`fasr.data.degrade.PerSample`); Ref-down-up follows it.

        Returns:
            :class:`SROutput` with ``sr`` (B, 1, h * scale, w * scale), ``attention`` (the soft-attention maps
            S per grid, Eq. 20), ``confidence`` (S on the SR grid, clamped to [0, 1]) and ``match_loss``.
        """
        b, _, h, w = lr.shape
        H, W = h * self.scale, w * self.scale
        if lr.dim() != 4 or lr.shape[1] != 1 or tuple(ref.shape) != (b, 1, H, W):
            raise ValueError(
                f"expected lr (B, 1, h, w) and ref (B, 1, h*{self.scale}, w*{self.scale}); "
                f"got lr {tuple(lr.shape)} and ref {tuple(ref.shape)}"
            )
        lr_up = resize(lr, (H, W))  # I_LR-up
        degradation = degradation or self.ref_degradation
        ref_du = degradation.down_up(ref, self.scale)  # I_Ref-down-up, domain-consistent with LR-up
        pad = (0, -W % self.multiple, 0, -H % self.multiple)  # (left, right, top, bottom)
        lr_up_p, ref_p, ref_du_p = (F.pad(x, pad, mode="replicate") for x in (lr_up, ref, ref_du))

        q = self.extractor(lr_up_p, self.qk_grids)  # Eq. 4
        k = self.extractor(ref_du_p, self.qk_grids)  # Eq. 5
        v = self.extractor(ref_p, TRANSFER_GRIDS)  # Eq. 6
        v["1"] = self.guide.attach(v["1"], ref, ref_p, ref_du_p, degradation, self.scale, pad)  # ours
        n_q = q[QUERY_GRID].shape[-2] * q[QUERY_GRID].shape[-1]
        if match is not None and match.index.shape[1] != n_q:
            raise ValueError(f"match target has {match.index.shape[1]} queries, the padded 1/4 grid {n_q}")
        results: list[AlignmentResult] = [m(q, k, v, match, match_temperature) for m in self.align.values()]  # Eqs. 1-2
        results, detail, guide = self.guide.detach(results, lr_up_p)  # ours
        tex = {g: torch.cat([r.features[g] for r in results], dim=1) for g in TRANSFER_GRIDS}  # Eq. 17
        # Eq. 20 (averaged rather than summed: a constant factor the injection convolution absorbs).
        score = {g: torch.stack([r.score[g] for r in results]).mean(0) for g in TRANSFER_GRIDS}
        s = {g: F.interpolate(score[g], size=tex[g].shape[-2:], mode="bilinear", align_corners=False) for g in tex}
        confidence = self.guide.confidence(s["1"][..., :H, :W], guide)
        # S in the texture's dtype: under bf16 autocast an fp32 S would promote every fused map to fp32.
        s = {g: m.to(tex[g].dtype) for g, m in s.items()}
        feats = self.fusion(self.head(lr_up_p), tex, s, detail, guide)  # Eq. 3 / 21
        residual = self.tail(feats) + self.guide.gated_band(self.guide_gate, feats, guide)  # (B, 1, H, W)
        sr = (lr_up_p + residual)[..., :H, :W]  # global residual over LR-up
        match_loss = None if match is None else torch.stack([r.match_loss for r in results]).mean()
        matches = {name: r.index for name, r in zip(self.align, results)}
        return SROutput(sr=sr, attention=score, confidence=confidence, match_loss=match_loss, matches=matches)


def _kwargs(cfg: ModelConfig) -> dict:
    """FASRNet keyword arguments from a config (the degradation is built from its name)."""
    kw = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for key in ("name", "ref_degradation"):
        kw.pop(key)
    kw["ref_degradation"] = ref_degradation_of(cfg)
    kw["sa_key_stride"] = str(cfg.sa_key_stride)
    return kw



def from_config(cfg: ModelConfig) -> FASRNet:
    """Registry factory for ``model.name: fasr``."""
    return FASRNet(**_kwargs(cfg))


def ttsr_from_config(cfg: ModelConfig) -> FASRNet:
    """Registry factory for ``model.name: ttsr``: FASR-Net with one-level cross-attention (TTSR-style), i.e. the
    ``fasr`` model with the fields of ``fasr.models.ALIASES["ttsr"]``."""
    from fasr.models import ALIASES

    return from_config(dataclasses.replace(cfg, **ALIASES["ttsr"]))
