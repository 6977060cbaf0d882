"""Matching that learns: correspondence targets from the data layer, the InfoNCE objective, fp32 matching, S-A."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fasr.data.degrade import Bicubic, resize
from fasr.data.samples import INVALID_COORD, RawSlice, SampleMaker, canvas_coords
from fasr.data.types import NormStats
from fasr.models.alignment import Matcher, MultiMultiAlignment, SingleMultiAlignment
from fasr.models.correspondence import MatchTarget, correspondence_nce, match_target, true_key_index
from fasr.models.extractor import CHANNELS
from fasr.models.fasrnet import FASRNet
from fasr.models.matching import MatchLevel, dense_match, patch_level

TINY = dict(n_feats=8, n_blocks=(1, 1, 1), embed_dim=8, backbone_weights=None)


def _blobs(h: int, w: int, seed: int) -> torch.Tensor:
    """(1, 1, H, W) smooth random image on [-1, 1] with content everywhere."""
    g = torch.Generator().manual_seed(seed)
    x = F.interpolate(torch.rand(1, 1, h // 4, w // 4, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    return (x - x.min()) / (x.max() - x.min()) * 1.6 - 0.8


def test_true_key_of_a_known_integer_shift() -> None:
    """A reference shifted by (8, -4) px: each query's true key is 2 cells down and one cell left."""
    coords = canvas_coords((32, 32))
    ref_coords = torch.roll(coords, shifts=(8, -4), dims=(-2, -1))  # ref pixel p shows anatomy p - shift
    index, found = true_key_index(F.avg_pool2d(coords, 4), F.avg_pool2d(ref_coords, 4), tolerance=3.0)
    qy, qx = 3, 3  # an interior cell
    assert found[0, qy * 8 + qx] and index[0, qy * 8 + qx] == (qy + 2) * 8 + (qx - 1)


def test_sample_coordinates_follow_misalignment_crop_and_flips() -> None:
    """Training samples carry where each reference pixel's anatomy sits; it matches the warped image."""
    hr = _blobs(64, 64, 0)[0, 0].numpy()
    raw = RawSlice(hr, hr.copy(), None, "s", 0, NormStats(0, 1), NormStats(0, 1))
    maker = SampleMaker(scale=4, degradation=Bicubic(), noise="none", snr=30, slice_size=64, patch_size=32,
                        train=True, augment=True, misalign=(3.0, 4.0, 0.0), min_foreground=0.0)
    torch.manual_seed(3)
    sample = maker(raw, 0)
    assert sample.hr_coords.shape == sample.ref_coords.shape == (2, 32, 32)
    valid = sample.ref_coords[0] < INVALID_COORD / 2
    # Reference = target anatomy resampled at ref_coords: check by sampling the canvas image there.
    y, x = sample.ref_coords[0][valid], sample.ref_coords[1][valid]
    grid = torch.stack([(x + 0.5) / 32 - 1, (y + 0.5) / 32 - 1], -1)[None, None]  # canvas 64 -> [-1, 1]
    resampled = F.grid_sample(torch.from_numpy(hr)[None, None], grid, align_corners=False)[0, 0, 0]
    assert (resampled - sample.ref[0][valid]).abs().max() < 1e-4
    target = match_target(sample.hr_coords[None], sample.ref_coords[None], sample.hr[None], 4, -0.9)
    assert target.valid.float().mean() > 0.5  # most queries keep a true key after a 3 px / 4 degree warp


def test_correspondence_nce_equals_dense_and_sends_gradient_everywhere() -> None:
    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 6, 7, 5, generator=g, requires_grad=True)
    k = torch.randn(2, 6, 7, 5, generator=g, requires_grad=True)
    target = MatchTarget(torch.randint(35, (2, 35), generator=g), torch.rand(2, 35, generator=g) > 0.3)
    level = [patch_level(q, k)]
    blocked = correspondence_nce(level, target, 0.1, match_memory_mib=1e-3)  # tiny budget: row and column blocks
    dense = dense_match(level, temperature=0.1).lse
    c_true = torch.gather(F.normalize(F.unfold(q, 3, padding=1).transpose(1, 2), dim=-1, eps=1e-6)
                          @ F.normalize(F.unfold(k, 3, padding=1), dim=1, eps=1e-6), 2, target.index[..., None])[..., 0]
    expected = ((dense - c_true / 0.1) * target.valid).sum() / target.valid.sum()
    assert torch.allclose(blocked, expected, atol=1e-4)
    blocked.backward()
    assert q.grad.abs().sum() > 0 and k.grad.abs().sum() > 0


def test_model_correspondence_loss_trains_extractor_and_embeddings_and_falls_on_a_shifted_pair() -> None:
    """On a pair with a known 4 px shift, a few steps on the correspondence loss alone lower it."""
    torch.manual_seed(0)
    model = FASRNet(scale=4, **TINY)
    hr = _blobs(48, 48, 1)
    ref = torch.roll(hr, shifts=(4, 4), dims=(-2, -1))  # true key = query + (1, 1) cells
    coords = canvas_coords((48, 48))
    target = match_target(coords, torch.roll(coords, (4, 4), (-2, -1)), hr, 4, -0.9)
    lr = Bicubic().down(hr, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(12):
        loss = model(lr, ref, match=target).match_loss
        opt.zero_grad()
        loss.backward()
        if step == 0:
            for name in ("extractor.net.features.0.weight", "align.sa.embed_q.weight", "align.sa.embed_k.g1.weight"):
                assert dict(model.named_parameters())[name].grad.abs().sum() > 0, name
            # the forward pass reuses its matching terms: the same loss as each module's matching-only loss
            q = model.extractor(resize(lr, (48, 48)), model.qk_grids)
            k = model.extractor(model.ref_degradation.down_up(ref, 4), model.qk_grids)
            alone = torch.stack([m.correspondence_loss(q, k, target, 0.07) for m in model.align.values()]).mean()
            assert torch.allclose(alone, loss, atol=1e-5)
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.1, losses


def test_matching_indices_under_bf16_autocast_equal_fp32() -> None:
    torch.manual_seed(0)
    module = MultiMultiAlignment(("1/4", "1/8", "1/16"), "pooled", Matcher())
    feats = {"1/4": torch.rand(1, 256, 12, 12), "1/2": torch.rand(1, 128, 24, 24), "1": torch.rand(1, 64, 48, 48)}
    other = {g: f.roll(1, -1) + 0.1 * torch.rand_like(f) for g, f in feats.items()}
    fp32 = module(feats, other, feats)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = module({g: f.bfloat16() for g, f in feats.items()}, {g: f.bfloat16() for g, f in other.items()}, feats)
    assert torch.equal(fp32.features["1/4"], bf16.features["1/4"])
    assert bf16.score["1/4"].dtype == torch.float32


def test_single_multi_alignment_on_random_features_selects_many_distinct_keys() -> None:
    """Without the embedding bias and with centred features the S-A queries do not collapse onto one key."""
    torch.manual_seed(0)
    sa = SingleMultiAlignment(CHANNELS, 32, "coarse", Matcher())
    q = {"1/4": torch.relu(torch.randn(1, 256, 16, 16)), "1/2": torch.relu(torch.randn(1, 128, 32, 32)),
         "1": torch.relu(torch.randn(1, 64, 64, 64))}
    eq, keys = sa._embed(q, q)
    for grid, (ek, wk) in keys.items():
        index = dense_match([MatchLevel(eq, ek)]).index
        assert index.unique().numel() > 0.3 * eq.shape[1], grid
    cos = eq[0] @ eq[0].T
    assert cos[~torch.eye(cos.shape[0], dtype=torch.bool)].mean() < 0.5  # embedded queries are not parallel
    assert math.isclose(float(cos.diagonal().mean()), 1.0, rel_tol=1e-4)
