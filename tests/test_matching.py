"""Factorised 3x3-patch correlation (``patch_level``) against the unfold path (``patch_vectors``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fasr.models.matching import (
    MatchLevel,
    SearchWindow,
    blocked_match,
    dense_match,
    matched_score,
    parent_index,
    patch_level,
    patch_vectors,
    softmax_score,
)


def _maps(seed: int, q_hw: tuple[int, int], k_hw: tuple[int, int], b: int = 2, c: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, c, *q_hw, generator=g), torch.randn(b, c, *k_hw, generator=g)


def _pyramid(q: torch.Tensor, k: torch.Tensor, factorised: bool) -> list[MatchLevel]:
    """A fine level plus a 2x-pooled level with parent maps, both weighted 1/2 (M-A style, Eq. 15)."""
    levels = []
    for ratio in (1, 2):
        ql, kl = (q, k) if ratio == 1 else (F.avg_pool2d(q, 2, ceil_mode=True), F.avg_pool2d(k, 2, ceil_mode=True))
        qp = None if ratio == 1 else parent_index(tuple(q.shape[-2:]), tuple(ql.shape[-2:]), 2)
        kp = None if ratio == 1 else parent_index(tuple(k.shape[-2:]), tuple(kl.shape[-2:]), 2)
        if factorised:
            levels.append(patch_level(ql, kl, weight=0.5, q_parent=qp, k_parent=kp, ratio=ratio))
        else:
            levels.append(MatchLevel(patch_vectors(ql) * 0.5, patch_vectors(kl), qp, kp))
    return levels


def _assert_same_match(got, ref, ref_levels: list[MatchLevel]) -> None:
    """Indices equal except near-ties (top two within 1e-5), maxima and logsumexp to 1e-4."""
    torch.testing.assert_close(got.score, ref.score, atol=1e-4, rtol=0)
    differ = got.index != ref.index
    if differ.any():  # a different index must score as high as the reference's (a tie)
        torch.testing.assert_close(matched_score(ref_levels, got.index)[differ], ref.score[differ], atol=1e-5, rtol=0)
    assert differ.float().mean() < 0.05
    if ref.lse is not None:
        torch.testing.assert_close(got.lse, ref.lse, atol=1e-4, rtol=0)


# Blocks of queries x keys: 1e-4 MiB: all x 1 (keys split inside grid rows); 3e-3: 1 x 2 grid rows; 8e-3: 2 x 3
# grid rows; 0.05: 6 x 7 grid rows; 64: one block (for the 7x5 / 9x6 grids).
@pytest.mark.parametrize("match_memory_mib", [1e-4, 3e-3, 8e-3, 0.05, 64.0])
@pytest.mark.parametrize("shapes", [((7, 5), (9, 6)), ((6, 8), (6, 8))])
def test_factorised_equals_unfold(match_memory_mib: float, shapes) -> None:
    q, k = _maps(1, *shapes)
    ref_levels = _pyramid(q, k, factorised=False)
    ref = dense_match(ref_levels, temperature=0.1)
    new = _pyramid(q, k, factorised=True)
    _assert_same_match(blocked_match(new, match_memory_mib=match_memory_mib, temperature=0.1), ref, ref_levels)
    _assert_same_match(dense_match(new, temperature=0.1), ref, ref_levels)
    torch.testing.assert_close(matched_score(new, ref.index), ref.score, atol=1e-5, rtol=0)


def test_factorised_zero_features_stay_finite() -> None:
    """An all-zero patch (e.g. background) has cosine 0 with everything, as F.normalize's eps makes it."""
    q, k = _maps(2, (5, 5), (5, 5))
    q[:, :, :3] = 0
    ref_levels = [MatchLevel(patch_vectors(q), patch_vectors(k))]
    ref = dense_match(ref_levels)
    _assert_same_match(blocked_match([patch_level(q, k)], match_memory_mib=1e-3), ref, ref_levels)


def test_factorised_window_equals_unfold_window() -> None:
    q, k = _maps(3, (11, 9), (22, 18))
    window = SearchWindow((11, 9), (22, 18), search_window=2, tile=4)
    ref_levels = [MatchLevel(patch_vectors(q), patch_vectors(k))]
    ref = dense_match(ref_levels, temperature=0.1, window=window)
    got = blocked_match([patch_level(q, k)], temperature=0.1, window=window)
    _assert_same_match(got, ref, ref_levels)


@pytest.mark.parametrize("match_memory_mib", [1e-3, 64.0])
def test_factorised_gradients_equal_unfold(match_memory_mib: float) -> None:
    """softmax_score (the correspondence loss) and matched_score: same values and gradients on both paths."""
    q0, k0 = _maps(4, (5, 7), (6, 5), c=3)
    results = []
    for factorised in (False, True):
        q, k = q0.clone().requires_grad_(), k0.clone().requires_grad_()
        levels = _pyramid(q, k, factorised)
        index = torch.randint(0, 30, (2, 35), generator=torch.Generator().manual_seed(5))
        p = softmax_score(levels, index, temperature=0.2, match_memory_mib=match_memory_mib)
        m = matched_score(levels, index)
        gq, gk = torch.autograd.grad(-(p.log().sum()) + m.square().sum(), (q, k))
        results.append((p, m, gq, gk))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_matching_stays_fp32_under_bf16_autocast() -> None:
    """bf16 autocast (the --precision bf16 convolutions) leaves matching in fp32: same indices and scores."""
    q, k = _maps(6, (9, 9), (9, 9), c=16)
    vq, vk = F.normalize(torch.randn(2, 40, 8), dim=-1), F.normalize(torch.randn(2, 60, 8), dim=-1)
    fp32 = (blocked_match(_pyramid(q, k, True), match_memory_mib=0.01), blocked_match([MatchLevel(vq, vk)]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = (blocked_match(_pyramid(q, k, True), match_memory_mib=0.01), blocked_match([MatchLevel(vq, vk)]))
        score = matched_score(_pyramid(q, k, True), fp32[0].index)
    for a, b in zip(fp32, bf16):
        assert torch.equal(a.index, b.index)
        assert b.score.dtype == torch.float32
        torch.testing.assert_close(a.score, b.score, atol=1e-6, rtol=0)
    assert score.dtype == torch.float32
    torch.testing.assert_close(score, fp32[0].score, atol=1e-6, rtol=0)


def _three_levels(q: torch.Tensor, k: torch.Tensor) -> tuple[list[MatchLevel], list[MatchLevel]]:
    """M-A's three levels (ratios 1, 2, 4, weights 1/3): factorised with ``ratio`` set, and on the unfold path."""
    new, ref_levels = [], []
    for ratio in (1, 2, 4):
        ql, kl = (F.avg_pool2d(x, ratio, ceil_mode=True) for x in (q, k))  # ratio 1: the maps themselves
        qp = None if ratio == 1 else parent_index(tuple(q.shape[-2:]), tuple(ql.shape[-2:]), ratio)
        kp = None if ratio == 1 else parent_index(tuple(k.shape[-2:]), tuple(kl.shape[-2:]), ratio)
        new.append(patch_level(ql, kl, weight=1 / 3, q_parent=qp, k_parent=kp, ratio=ratio))
        ref_levels.append(MatchLevel(patch_vectors(ql) / 3, patch_vectors(kl), qp, kp))
    return new, ref_levels


@pytest.mark.parametrize("match_memory_mib", [0.02, 0.2, 64.0])
def test_broadcast_pyramid_equals_gathered_pyramid(match_memory_mib: float) -> None:
    """On grids the ratios divide, blocks of whole rows add the coarse levels by broadcasting
    (``_pyramid_scores``); same matches as the unfold path, also with the blocks split."""
    from fasr.models.matching import _pyramid_blocks

    new, ref_levels = _three_levels(*_maps(4, (8, 12), (12, 8)))
    assert _pyramid_blocks(new, slice(0, 96), slice(0, 96)) is not None  # the broadcast path is taken
    assert _pyramid_blocks(new, slice(0, 24), slice(0, 96)) is None  # 2 grid rows: not a multiple of 4
    ref = dense_match(ref_levels, temperature=0.1)
    _assert_same_match(blocked_match(new, match_memory_mib=match_memory_mib, temperature=0.1), ref, ref_levels)
    _assert_same_match(dense_match(new, temperature=0.1), ref, ref_levels)


@pytest.mark.parametrize("shape", [(16, 12), (14, 10)])
def test_windowed_pyramid_equals_masked_unfold(shape: tuple[int, int]) -> None:
    """The search window on M-A's three levels: rectangles on multiples of 4 broadcast the coarse levels, the
    14 x 10 grid, which 4 does not divide, gathers; both equal the masked dense unfold path."""
    from fasr.models.matching import Rect, _pyramid_blocks

    new, ref_levels = _three_levels(*_maps(5, shape, shape))
    window = SearchWindow(shape, shape, search_window=4, tile=4)
    first = next(window.tiles())
    assert (_pyramid_blocks(new, *first) is not None) == (shape == (16, 12))
    assert first == (Rect(0, 4, 0, 4, shape[1]), Rect(0, 8, 0, 8, shape[1]))
    ref = dense_match(ref_levels, temperature=0.1, window=window)
    _assert_same_match(blocked_match(new, temperature=0.1, window=window), ref, ref_levels)
