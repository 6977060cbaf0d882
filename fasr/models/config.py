"""Model section of the run config."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fasr.data.degrade import Degradation, degradation_from_spec

__all__ = ["ModelConfig", "ref_degradation_of", "is_through_plane"]


@dataclass
class ModelConfig:
    """Architecture choice and hyper-parameters; ``name`` picks the architecture from the registry.

    Args:
        name: ``fasr`` or a baseline (``bicubic``, ``edsr``, ``swinir``, ``mcsr``, ``minet``, ``ttsr``).
        scale: upsampling factor (2 or 4 in the paper; any integer >= 2 works); 1 for a through-plane model (ours:
            ``ref_degradation`` a slice profile, ``data.planes: thick``; :func:`is_through_plane`).
        backbone: texture extractor (Table II).
        feature_levels: ``paper`` taps relu1_2/relu2_2/relu3_2 (Fig. 3); ``public`` taps relu*_1 as the authors' code.
        alignment: Table III switch; ``cross_attention`` is one-level TTSR matching ("w/o FA").
        fusion: ``chpf`` (Eqs. 17-21) or a plain ``decoder`` ("w/o CHPF").
        n_feats: channels of the fusion trunk.
        n_blocks: residual blocks per CHPF stage (1/4, 1/2, 1 of the HR grid).
        embed_dim: S-A word-embedding width (Eqs. 7-9).
        sa_key_stride: S-A keys at finer levels sampled every ``stride`` positions ("coarse" = the level's
            scale factor, i.e. one key per 1/4-grid cell; 1 = exhaustive as the authors' code).
        ma_pyramid: M-A coarse levels from pooled 1/4 features (cheap) or the backbone's 1/8, 1/16 features.
        attention_score: soft-attention value: max cosine (authors' code) or max softmax prob (Eqs. 10, 14).
        match_memory_mib: budget for one block of the blocked correlation (never a full matrix).
        search_window: match each query only against keys within this many 1/4-grid cells (4 HR pixels
            each) of its own position: exact within the window, cost linear in the image size, for registered
            contrasts. 16 (default, ours: 64 HR px each way, no measurable PSNR cost on the shipped models,
            ``docs/performance.md``); 0 = the whole image, as the paper (the ``paper-*`` configs; needed for
            ``attention_score: softmax``).
        backbone_weights: torchvision-format checkpoint for the extractor: ``mri`` (default) = the shipped MRI
            VGG19 (``fasr pretrain-extractor``; VGG19 through relu3_1 only, others start random), a file (e.g.
            ImageNet), or None = random init.
        ref_degradation: how the model makes I_Ref-down-up: ``auto`` (default) = the LR's nominal degradation with
            its window (``fasr.data.degrade.nominal_spec`` of ``data.degradation``, Section III-A's domain
            consistency), or a spec: ``bicubic``, ``kspace``, ``kspace:hamming``, ``kspace:tukey:0.5``,
            ``slice:4:boxcar`` (through-plane; inference takes the factor from the scan).
        ref_detail: ours, not the paper's: also transfer the reference's own missing band, I_Ref - I_Ref-down-up,
            with the full-resolution texture (same matches) and inject it at full resolution through a
            zero-initialised convolution (``docs/architecture.md``). A model without it can be fine-tuned into
            one with it (``init_from``): the new weights start at zero, so training starts from the same output.
        ref_guided: ours, not the paper's: also transfer I_Ref-down-up, fit the LR to it window by window
            (guided-filter style, :mod:`fasr.models.guided`) and inject the fit applied to the transferred band,
            with the fit's strength, through a zero-initialised convolution, and add that prediction to the output
            under a zero-initialised per-pixel gate; grows a model as ``ref_detail`` does.
        guide_order: ours: the fit of ``ref_guided`` (and of model ``guided``): 1 = linear in the reference, 2 =
            quadratic (also transfers I_Ref^2's two views; :func:`fasr.models.guided.local_quadratic_detail`). Both
            give the network the same channels, so a model trained with one can be fine-tuned with the other.
    """

    name: str = "fasr"
    scale: int = 4
    backbone: Literal["vgg19", "resnet18", "resnet34"] = "vgg19"
    feature_levels: Literal["paper", "public"] = "public"
    alignment: Literal["both", "sa", "ma", "cross_attention"] = "both"
    fusion: Literal["chpf", "decoder"] = "chpf"
    n_feats: int = 64
    n_blocks: tuple[int, int, int] = (8, 4, 2)
    embed_dim: int = 64
    sa_key_stride: str = "coarse"
    ma_pyramid: Literal["pooled", "deep"] = "pooled"
    attention_score: Literal["cosine", "softmax"] = "cosine"
    softmax_temperature: float = 0.05
    match_memory_mib: int = 128
    search_window: int = 16
    backbone_weights: str | None = "mri"
    ref_degradation: str = "auto"
    ref_detail: bool = False
    ref_guided: bool = False
    guide_order: Literal[1, 2] = 1


def ref_degradation_of(cfg: ModelConfig) -> Degradation:
    """The degradation a model applies to make I_Ref-down-up, from ``cfg.ref_degradation`` (``auto`` is resolved
    from the data config before a model is built)."""
    return degradation_from_spec("bicubic" if cfg.ref_degradation == "auto" else cfg.ref_degradation)


def is_through_plane(cfg: ModelConfig) -> bool:
    """Whether the model refines one thick axis (a slice-profile ``ref_degradation``, ``scale`` 1) rather than two
    in-plane axes."""
    return cfg.ref_degradation.startswith("slice")
