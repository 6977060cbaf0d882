"""FASR-Net model: shapes, gradients, blocked == dense matching, transfer == fold/unfold, ablations, weights."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from fasr import FASRNet
from fasr.errors import FasrError
from fasr.models import USES, ModelConfig, build_model, canonical
from fasr.models.backbones import VGG19, ResNet, load_torchvision_weights
from fasr.models.extractor import CHANNELS, TextureExtractor
from fasr.models.matching import (
    MatchLevel,
    blocked_match,
    dense_match,
    matched_score,
    parent_index,
    patch_vectors,
    softmax_score,
)
from fasr.models.transfer import transfer_patches

TINY = dict(n_feats=8, n_blocks=(1, 1, 1), embed_dim=8)


def _untie(model: FASRNet) -> FASRNet:
    """Give the zero-initialised output layer weights, so the output depends on everything before it."""
    torch.nn.init.normal_(model.tail.weight, std=0.1)
    return model


def _pair(b: int, h: int, w: int, scale: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g) * 2 - 1, torch.rand(b, 1, h * scale, w * scale, generator=g) * 2 - 1


@pytest.mark.parametrize("scale,h,w", [(4, 61, 47), (2, 33, 30), (4, 16, 16), (3, 10, 13)])
def test_output_shapes_any_size(scale: int, h: int, w: int) -> None:
    model = _untie(FASRNet(scale=scale, **TINY)).eval()
    lr, ref = _pair(2, h, w, scale)
    with torch.no_grad():
        out = model(lr, ref)
    assert out.sr.shape == (2, 1, h * scale, w * scale)
    assert out.confidence.shape == (2, 1, h * scale, w * scale)
    assert float(out.confidence.min()) >= 0 and float(out.confidence.max()) <= 1
    assert set(out.attention) == {"1/4", "1/2", "1"}
    assert torch.isfinite(out.sr).all()


def test_untrained_model_is_bicubic() -> None:
    from fasr.data.degrade import resize

    lr, ref = _pair(1, 10, 12, 4)
    with torch.no_grad():
        sr = FASRNet(scale=4, **TINY).eval()(lr, ref).sr
    torch.testing.assert_close(sr, resize(lr, (40, 48)), atol=0, rtol=0)


def test_default_constructor_and_wrong_reference_shape() -> None:
    model = FASRNet(scale=4)
    assert model.scale == 4
    lr, ref = _pair(1, 8, 8, 4)
    with pytest.raises(ValueError, match="expected lr"):
        model(lr, ref[..., :-4])


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"alignment": "sa"},
        {"alignment": "ma"},
        {"alignment": "cross_attention"},
        {"fusion": "decoder"},
        {"backbone": "resnet18"},
        {"backbone": "resnet34", "alignment": "ma"},
        {"feature_levels": "paper", "ma_pyramid": "deep"},
        {"attention_score": "softmax", "search_window": 0},
        {"sa_key_stride": "1"},
        {"ref_detail": True},
        {"ref_guided": True},
        {"ref_detail": True, "ref_guided": True},
        {"ref_guided": True, "guide_order": 2},
    ],
)
def test_every_configuration_trains(overrides: dict) -> None:
    """Forward + backward: every trainable parameter receives a gradient (argmax is not differentiable, so the
    word embeddings and the extractor's Q/K path must learn through the soft attention)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="fasr", scale=4, **{**TINY, **overrides}))
    _untie(model)  # as after a first update (the output layer starts at zero)
    lr, ref = _pair(2, 9, 7, 4)
    out = model(lr, ref)
    F.l1_loss(out.sr, torch.zeros_like(out.sr)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, missing


GROWN_INPUTS = {"ref_detail": "detail", "ref_guided": "guide"}  # config field -> full-resolution injection conv


@pytest.mark.parametrize("field,order", [("ref_detail", 1), ("ref_guided", 1), ("ref_guided", 2)])
@pytest.mark.parametrize("arch", [{}, {"alignment": "sa"}, {"alignment": "ma"}, {"name": "ttsr"}])
def test_grown_inputs_start_from_the_same_output(arch: dict, field: str, order: int) -> None:
    """model.ref_detail and model.ref_guided (ours) add only zero-initialised weights: a trained model without
    them loads into one with them (init_from) and gives the same output. The new input of the fusion is, per
    alignment module, I_Ref - I_Ref-down-up as that module transfers it (ref_detail), or the local linear
    (quadratic: guide_order 2) fit of the LR to the transferred I_Ref-down-up (and DU(I_Ref^2)) applied to the
    transferred band(s) (ref_guided); a flat reference adds nothing."""
    from fasr.models.guided import local_linear_detail, local_quadratic_detail
    from fasr.training.trainer import _load_starting_weights

    torch.manual_seed(0)
    cfg = {"name": "fasr", "scale": 4, **TINY, **arch}
    if cfg["name"] == "ttsr":
        cfg.pop("embed_dim")
    base = _untie(build_model(ModelConfig(**cfg))).eval()
    grown = build_model(ModelConfig(**cfg, **{field: True}, guide_order=order)).eval()
    _load_starting_weights(grown, base.state_dict(), {field}, "base")
    lr, ref = _pair(2, 9, 7, 4)
    conv = getattr(grown.fusion.inject[2], GROWN_INPUTS[field])
    with torch.no_grad():
        torch.testing.assert_close(grown(lr, ref).sr, base(lr, ref).sr, atol=0, rtol=0)
        seen = []
        conv.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
        torch.nn.init.normal_(conv.weight, std=0.5)
        assert (grown(lr, ref).sr - base(lr, ref).sr).abs().max() > 1e-3
        ref_du = grown.ref_degradation.down_up(ref, 4)
        lr_up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        q, k = grown.extractor(lr_up, grown.qk_grids), grown.extractor(ref_du, grown.qk_grids)
        v = grown.extractor(ref, ("1/4", "1/2", "1"))

        def transferred(image: torch.Tensor) -> torch.Tensor:  # (B, n_align, H, W)
            return torch.cat([m(q, k, {**v, "1": image}).features["1"] for m in grown.align.values()], 1)

        expected = transferred(ref - ref_du)
        if field == "ref_guided" and order == 1:
            expected = local_linear_detail(lr_up, transferred(ref_du), expected)
        elif field == "ref_guided":
            sq_du = grown.ref_degradation.down_up(ref * ref, 4)
            expected = local_quadratic_detail(lr_up, transferred(ref_du), expected, transferred(sq_du),
                                              transferred(ref * ref - sq_du))
        torch.testing.assert_close(seen[0], expected, atol=1e-5, rtol=0)
        flat = torch.full_like(ref, 0.3)
        flat_sr, n_align = grown(lr, flat).sr, len(grown.align)
        torch.testing.assert_close(seen[-1][:, :n_align], torch.zeros_like(seen[-1][:, :n_align]), atol=1e-5, rtol=0)
        if field == "ref_detail":  # (the guide's second half, the fit's strength, sees the transfer's zero border)
            torch.testing.assert_close(flat_sr, base(lr, flat).sr, atol=1e-5, rtol=0)
        else:  # the predicted band also goes straight to the output, gated per pixel: nothing for a flat reference
            torch.nn.init.zeros_(conv.weight)
            torch.nn.init.normal_(grown.guide_gate.weight, std=0.5)
            gated = grown(lr, ref).sr - base(lr, ref).sr
            assert gated.abs().max() > 1e-3
            torch.testing.assert_close(grown(lr, flat).sr, base(lr, flat).sr, atol=1e-5, rtol=0)
    state = {k: v for k, v in base.state_dict().items() if not k.startswith("tail.")}
    with pytest.raises(FasrError, match="does not fit this model"):
        _load_starting_weights(grown, state, {field}, "base")
    with pytest.raises(FasrError, match="does not fit this model"):  # not grown by this run: nothing may miss
        _load_starting_weights(build_model(ModelConfig(**cfg, **{field: True})), base.state_dict(), set(), "base")


def test_guide_order_needs_ref_guided() -> None:
    with pytest.raises(FasrError, match="set model.ref_guided: true"):
        build_model(ModelConfig(name="fasr", scale=4, **TINY, guide_order=2))


def test_ttsr_is_cross_attention() -> None:
    model = build_model(ModelConfig(name="ttsr", **{k: v for k, v in TINY.items() if k in USES["ttsr"]}))
    assert model.alignment == "cross_attention" and list(model.align) == ["cross_attention"]
    assert model.align["cross_attention"].levels == ("1/4",)



def test_fields_ttsr_does_not_read_do_not_change_the_cross_attention_network() -> None:
    """What ``canonical`` drops for the alias (every field outside USES["ttsr"]) must not change a FASR-Net with
    one-level cross-attention: same weights and the same output, so one training serves TTSR and "w/o FA"."""
    dropped = {"embed_dim": 8, "ma_pyramid": "deep", "sa_key_stride": "1"}
    assert set(dropped) | {"alignment"} == {f.name for f in dataclasses.fields(ModelConfig)} - USES["ttsr"]
    lr, ref = torch.rand(1, 1, 16, 16) * 2 - 1, torch.rand(1, 1, 64, 64) * 2 - 1
    runs = []
    for cfg in (ModelConfig(name="ttsr", n_feats=8, n_blocks=(1, 1, 1), backbone_weights=None),
                ModelConfig(name="fasr", alignment="cross_attention", n_feats=8, n_blocks=(1, 1, 1),
                            backbone_weights=None, **dropped)):
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        with torch.no_grad():
            runs.append((model.state_dict(), model(lr, ref).sr))
    (ttsr, out_ttsr), (wo_fa, out_wo_fa) = runs
    assert ttsr.keys() == wo_fa.keys() and all(torch.equal(ttsr[k], wo_fa[k]) for k in ttsr)
    assert torch.equal(out_ttsr, out_wo_fa)
    # A field the alias reads keeps two networks apart: CHPF replaced by a decoder is not TTSR.
    assert canonical({"name": "fasr", "alignment": "cross_attention", "fusion": "decoder"}) != canonical(
        {"name": "ttsr", "fusion": "chpf"})
    # Fields the alias does not read (the S-A embedding width, the M-A pyramid) do not make another network.
    as_fasr = {"name": "fasr", "alignment": "cross_attention", "embed_dim": 32, "ma_pyramid": "deep", "n_feats": 8}
    assert canonical(as_fasr) == canonical({"name": "ttsr", "embed_dim": 64, "n_feats": 8}) == {
        "name": "ttsr", "n_feats": 8}
    assert canonical({**as_fasr, "alignment": "both"})["name"] == "fasr"  # FASR-Net proper stays itself


def _random_levels(b: int, hq: int, wq: int, seed: int) -> list[MatchLevel]:
    g = torch.Generator().manual_seed(seed)
    fine = patch_vectors(torch.randn(b, 5, hq, wq, generator=g))
    coarse_hw = ((hq + 1) // 2, (wq + 1) // 2)
    coarse = patch_vectors(torch.randn(b, 7, *coarse_hw, generator=g))
    parent = parent_index((hq, wq), coarse_hw, 2)
    return [MatchLevel(fine, fine.flip(1)), MatchLevel(coarse, coarse.roll(3, 1), parent, parent)]


@pytest.mark.parametrize("match_memory_mib", [1e-4, 0.01, 64.0])
def test_blocked_matching_equals_dense(match_memory_mib: float) -> None:
    """Tiny budgets force row *and* column blocks; results must be those of the full matrix."""
    levels = _random_levels(2, 13, 11, seed=1)
    dense = dense_match(levels, temperature=0.1)
    blocked = blocked_match(levels, match_memory_mib=match_memory_mib, temperature=0.1)
    assert torch.equal(blocked.index, dense.index)
    torch.testing.assert_close(blocked.score, dense.score, atol=1e-5, rtol=0)
    torch.testing.assert_close(blocked.lse, dense.lse, atol=1e-4, rtol=0)
    # The differentiable recomputation of the matched score agrees with the maxima.
    torch.testing.assert_close(matched_score(levels, dense.index), dense.score, atol=1e-5, rtol=0)


def test_geometric_pyramid_correlation() -> None:
    """A two-level correlation equals C_fine + C_coarse[parent(i), parent(j)] built explicitly (Eq. 15)."""
    levels = _random_levels(1, 6, 4, seed=2)
    fine, coarse = levels
    full = fine.q[0] @ fine.k[0].T + (coarse.q[0] @ coarse.k[0].T)[coarse.q_parent][:, coarse.k_parent]
    best, index = full.max(dim=1)
    res = blocked_match(levels, match_memory_mib=1e-4)
    assert torch.equal(res.index[0], index)
    torch.testing.assert_close(res.score[0], best, atol=1e-5, rtol=0)


def test_softmax_score_gradient_matches_dense() -> None:
    g = torch.Generator().manual_seed(3)
    q = F.normalize(torch.randn(1, 30, 6, generator=g), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(1, 50, 6, generator=g), dim=-1).requires_grad_()
    index = dense_match([MatchLevel(q, k)]).index
    blocked = softmax_score([MatchLevel(q, k)], index, temperature=0.2, match_memory_mib=1e-4)
    (gq_b,) = torch.autograd.grad(blocked.sum(), q)
    dense = torch.softmax(q @ k.transpose(1, 2) / 0.2, dim=-1).max(dim=-1).values
    (gq_d,) = torch.autograd.grad(dense.sum(), q)
    torch.testing.assert_close(blocked, dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(gq_b, gq_d, atol=1e-5, rtol=0)


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_transfer_equals_fold_of_unfolded_patches(factor: int) -> None:
    """Eqs. 12/16: warping (3f x 3f) windows at stride f and averaging overlaps, as fold(unfold(V)[M])."""
    g = torch.Generator().manual_seed(factor)
    b, c, hq, wq = 2, 3, 5, 7
    v = torch.randn(b, c, hq * factor, wq * factor, generator=g, requires_grad=True)
    idx = torch.randint(0, hq * wq, (b, hq * wq), generator=g)
    unf = F.unfold(v, 3 * factor, stride=factor, padding=factor)  # (B, C*9f^2, Nq)
    picked = torch.gather(unf, 2, idx[:, None, :].expand(-1, unf.shape[1], -1))
    fold = dict(output_size=(hq * factor, wq * factor), kernel_size=3 * factor, stride=factor, padding=factor)
    expected = F.fold(picked, **fold) / F.fold(torch.ones_like(picked), **fold)
    qi = torch.arange(hq * wq)
    disp = torch.stack([(idx // wq - qi // wq) * factor, (idx % wq - qi % wq) * factor], 1).reshape(b, 2, hq, wq)
    out = transfer_patches(v, disp, factor)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
    # Any displacement, also off the cell lattice and far outside V (S-A keys at every position): each output
    # pixel is the mean of the 9 covering windows' reads, zero outside V.
    odd = torch.randint(-4 * factor * hq, 4 * factor * hq, (b, 2, hq, wq), generator=g)
    pad = 12 * factor * hq
    vp = F.pad(v, (pad, pad, pad, pad))
    ys, xs = torch.arange(hq * factor), torch.arange(wq * factor)
    naive = torch.zeros_like(v)
    for a in (-1, 0, 1):
        for bb in (-1, 0, 1):
            qy, qx = ys // factor + a, xs // factor + bb
            ok = ((qy >= 0) & (qy < hq))[:, None] & ((qx >= 0) & (qx < wq))[None, :]
            d = odd[:, :, qy.clamp(0, hq - 1)[:, None], qx.clamp(0, wq - 1)[None, :]]  # (B, 2, H, W)
            sy, sx = ys[None, :, None] + d[:, 0] + pad, xs[None, None, :] + d[:, 1] + pad
            read = torch.stack([vp[i][:, sy[i], sx[i]] for i in range(b)])  # (B, C, H, W)
            naive = naive + read * ok
    counts = (3 - (ys < factor).long() - (ys >= (hq - 1) * factor).long())[:, None] * (
        3 - (xs < factor).long() - (xs >= (wq - 1) * factor).long())[None, :]
    torch.testing.assert_close(transfer_patches(v, odd, factor), naive / counts, atol=1e-5, rtol=0)
    w = torch.randn(out.shape, generator=g)  # the gradient reaching V (training) equals the fold path's too
    (grad,) = torch.autograd.grad((out * w).sum(), v)
    (grad_ref,) = torch.autograd.grad((expected * w).sum(), v)
    torch.testing.assert_close(grad, grad_ref, atol=1e-5, rtol=0)


def test_identity_reference_transfers_itself() -> None:
    """When LR-up and Ref-down-up are the same image, every patch matches itself (score 1, zero offset)."""
    model = FASRNet(scale=4, **TINY).eval()
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    feats = model.extractor(x, ("1/4", "1/2", "1"))
    res = model.align["ma"](feats, feats, feats)
    torch.testing.assert_close(res.score["1"], torch.ones_like(res.score["1"]), atol=1e-4, rtol=0)
    torch.testing.assert_close(res.features["1/4"], feats["1/4"], atol=1e-5, rtol=0)


def test_memory_budget_does_not_change_output() -> None:
    """Exact blocking: a 64 KiB budget gives the dense-budget output."""
    lr, ref = _pair(1, 12, 10, 4, seed=5)
    torch.manual_seed(0)
    small = _untie(FASRNet(scale=4, match_memory_mib=1 / 16, **TINY)).eval()
    large = FASRNet(scale=4, match_memory_mib=1024, **TINY).eval()
    large.load_state_dict(small.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(small(lr, ref).sr, large(lr, ref).sr, atol=1e-5, rtol=0)


def test_save_and_reload_gives_identical_output(tmp_path) -> None:
    torch.manual_seed(0)
    model = _untie(FASRNet(scale=2, **TINY)).eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    again = FASRNet(scale=2, **TINY).eval()
    again.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    lr, ref = _pair(1, 10, 9, 2)
    with torch.no_grad():
        assert torch.equal(model(lr, ref).sr, again(lr, ref).sr)


def test_vgg19_layout_matches_torchvision_keys() -> None:
    keys = VGG19().state_dict().keys()
    conv_idx = sorted({int(k.split(".")[1]) for k in keys})
    # torchvision vgg19().features: conv layers at these indices.
    assert conv_idx == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
    assert tuple(VGG19().state_dict()["features.28.weight"].shape) == (512, 512, 3, 3)


def test_load_torchvision_vgg19_file(tmp_path) -> None:
    full = VGG19()
    state = {**full.state_dict(), "classifier.0.weight": torch.zeros(2, 2)}  # as in a real vgg19-*.pth
    torch.save(state, tmp_path / "vgg19.pth")
    ext = TextureExtractor("vgg19", "public", weights=str(tmp_path / "vgg19.pth"))
    torch.testing.assert_close(ext.net.features[10].weight, full.features[10].weight)

    with pytest.raises(FasrError, match="not found"):
        TextureExtractor("vgg19", weights=str(tmp_path / "missing.pth"))
    torch.save(ResNet(18).state_dict(), tmp_path / "resnet.pth")
    with pytest.raises(FasrError, match="does not match"):
        load_torchvision_weights(VGG19("relu3_1"), tmp_path / "resnet.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(FasrError, match="cannot read"):
        load_torchvision_weights(VGG19("relu3_1"), tmp_path / "junk.pth")


@pytest.mark.parametrize("backbone", ["vgg19", "resnet18", "resnet34"])
def test_extractor_scales_and_channels(backbone: str) -> None:
    ext = TextureExtractor(backbone, deepest="1/16")
    feats = ext(torch.zeros(1, 1, 32, 48), ("1", "1/2", "1/4", "1/8", "1/16"))
    for grid, f in {"1": 1, "1/2": 2, "1/4": 4, "1/8": 8, "1/16": 16}.items():
        assert feats[grid].shape == (1, CHANNELS[grid], 32 // f, 48 // f), grid


@pytest.mark.parametrize("k_ratio", [1, 2])
def test_windowed_matching_equals_masked_dense(k_ratio: int) -> None:
    """A local search window is exact within the window: equal to the dense matrix with the rest masked."""
    from fasr.models.matching import SearchWindow

    g = torch.Generator().manual_seed(7)
    hq, wq = 11, 9
    q = patch_vectors(torch.randn(2, 4, hq, wq, generator=g))
    k = patch_vectors(torch.randn(2, 4, hq * k_ratio, wq * k_ratio, generator=g))
    window = SearchWindow((hq, wq), (hq * k_ratio, wq * k_ratio), search_window=2, tile=4)
    dense = dense_match([MatchLevel(q, k)], temperature=0.1, window=window)
    blocked = blocked_match([MatchLevel(q, k)], temperature=0.1, window=window)
    assert torch.equal(blocked.index, dense.index)
    torch.testing.assert_close(blocked.score, dense.score, atol=1e-5, rtol=0)
    torch.testing.assert_close(blocked.lse, dense.lse, atol=1e-4, rtol=0)
    ky, kx = blocked.index // (wq * k_ratio), blocked.index % (wq * k_ratio)
    qi = torch.arange(hq * wq)
    assert int((ky - (qi // wq) * k_ratio).abs().max()) <= 2 * k_ratio
    assert int((kx - (qi % wq) * k_ratio).abs().max()) <= 2 * k_ratio


def test_search_window_model_runs_and_differs_only_by_window() -> None:
    lr, ref = _pair(1, 16, 16, 4, seed=9)
    torch.manual_seed(0)
    local = _untie(FASRNet(scale=4, search_window=64, **TINY)).eval()  # window larger than the image: global
    full = FASRNet(scale=4, search_window=0, **TINY).eval()
    full.load_state_dict(local.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(local(lr, ref).sr, full(lr, ref).sr, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="search_window"):
        FASRNet(scale=4, search_window=2, attention_score="softmax")


def test_a_setting_the_architecture_ignores_is_an_error() -> None:
    with pytest.raises(FasrError, match=r"model 'edsr' does not use model.alignment"):
        build_model(ModelConfig(name="edsr", alignment="sa"))
    build_model(ModelConfig(name="edsr", n_feats=8))  # a field it reads is fine


def test_a_baseline_checkpoint_reloads(tmp_path) -> None:
    """Loading rebuilds with backbone_weights=None: that is no setting, also for architectures without one."""
    from fasr.checkpoint import load_model, save_checkpoint
    from fasr.config import RunConfig, to_dict

    cfg = RunConfig(model=ModelConfig(name="edsr", n_feats=8))
    path = save_checkpoint(tmp_path / "edsr.pt", {"model": build_model(cfg.model).state_dict(), "config": to_dict(cfg)})
    model, loaded = load_model(path)
    assert loaded.model.name == "edsr" and not hasattr(model, "align")
