"""Model section of the run config."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from fasr.data.degrade import Degradation, degradation_from_spec

__all__ = [
    "ModelConfig", "ref_degradation_of", "is_through_plane", "FASR_FAMILY", "BUILTIN", "fact", "fields_where",
    "fields_read_by",
]

# The architectures registered with the package (fasr.models.MODELS); user extensions declare what they read.
FASR_FAMILY = frozenset({"fasr", "ttsr"})  # FASR-Net and its one-level cross-attention variant
BUILTIN = FASR_FAMILY | {"bicubic", "guided", "edsr", "swinir", "mcsr", "minet", "masa"}
_SINGLE_IMAGE = frozenset({"edsr", "swinir", "mcsr", "minet"})


def _facts(default: Any = None, *, read_by: frozenset[str] = FASR_FAMILY, inference: bool = False,
           grows: str | None = None, weight_free: frozenset[str] = frozenset(), factory: Any = None) -> Any:
    """A ``ModelConfig`` field with its facts in ``metadata``.

    Args:
        default / factory: the field's default (or its factory).
        read_by: the built-in architectures that read it (any other must keep the default: ``build_model``).
        inference: it changes how a trained model runs, not what it learned: ``--set`` may change it at inference.
        grows: switched on, it only adds zero-initialised weights whose names contain this substring: a model
            trained without it can be fine-tuned into one with it (``init_from``) from the same output.
        weight_free: the architectures for which it changes what a model computes but none of its weights:
            ``init_from`` may change it for them.
    """
    metadata = {"read_by": read_by, "inference": inference, "grows": grows, "weight_free": weight_free}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ModelConfig:
    """Architecture choice and hyper-parameters; ``name`` picks the architecture from the registry.

    Args:
        name: ``fasr`` or a baseline (``bicubic``, ``edsr``, ``swinir``, ``mcsr``, ``minet``, ``ttsr``, ``masa``).
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
            extractor of ``backbone`` (``fasr pretrain-extractor``; VGG19 through relu3_1, ResNets through
            ``layer3``: deeper taps start random), a file (e.g. ImageNet), or None = random init.
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

    name: str = _facts("fasr", read_by=BUILTIN)
    scale: int = _facts(4, read_by=BUILTIN, weight_free=FASR_FAMILY)  # FASR-Net's weights do not depend on it
    backbone: Literal["vgg19", "resnet18", "resnet34"] = _facts("vgg19")
    feature_levels: Literal["paper", "public"] = _facts("public")
    alignment: Literal["both", "sa", "ma", "cross_attention"] = _facts("both", read_by=frozenset({"fasr"}))
    fusion: Literal["chpf", "decoder"] = _facts("chpf")
    n_feats: int = _facts(64, read_by=FASR_FAMILY | _SINGLE_IMAGE | {"masa"})
    n_blocks: tuple[int, int, int] = _facts((8, 4, 2))
    embed_dim: int = _facts(64, read_by=frozenset({"fasr"}))
    sa_key_stride: str = _facts("coarse", read_by=frozenset({"fasr"}))
    ma_pyramid: Literal["pooled", "deep"] = _facts("pooled", read_by=frozenset({"fasr"}))
    attention_score: Literal["cosine", "softmax"] = _facts("cosine")
    softmax_temperature: float = _facts(0.05)
    match_memory_mib: int = _facts(128, inference=True)
    search_window: int = _facts(16, inference=True)
    backbone_weights: str | None = _facts("mri")
    # filled in from the data config for every run (``auto``), used or not
    ref_degradation: str = _facts("auto", read_by=FASR_FAMILY | {"guided", "masa"}, inference=True)
    ref_detail: bool = _facts(False, grows=".detail.")
    ref_guided: bool = _facts(False, grows="guide")
    guide_order: Literal[1, 2] = _facts(1, read_by=FASR_FAMILY | {"guided"}, weight_free=FASR_FAMILY | {"guided"})

def ref_degradation_of(cfg: ModelConfig) -> Degradation:
    """The degradation a model applies to make I_Ref-down-up, from ``cfg.ref_degradation`` (``auto`` is resolved
    from the data config before a model is built)."""
    return degradation_from_spec("bicubic" if cfg.ref_degradation == "auto" else cfg.ref_degradation)


def is_through_plane(cfg: ModelConfig) -> bool:
    """Whether the model refines one thick axis (a slice-profile ``ref_degradation``, ``scale`` 1) rather than two
    in-plane axes."""
    return cfg.ref_degradation.startswith("slice")


def fact(name: str, key: str) -> Any:
    """The fact ``key`` (``read_by``, ``inference``, ``grows``, ``weight_free``) of ``ModelConfig`` field ``name``."""
    return next(f for f in fields(ModelConfig) if f.name == name).metadata[key]


def fields_where(key: str) -> tuple[str, ...]:
    """The ``ModelConfig`` fields whose fact ``key`` is set (e.g. ``inference``: those ``--set`` may change at
    inference), in declaration order."""
    return tuple(f.name for f in fields(ModelConfig) if f.metadata[key])


def fields_read_by(architecture: str, key: str = "read_by") -> frozenset[str]:
    """The ``ModelConfig`` fields a built-in architecture reads (or, with ``key="weight_free"``, may change under
    ``init_from`` because none of its weights depends on them)."""
    return frozenset(f.name for f in fields(ModelConfig) if architecture in f.metadata[key])
