"""MASA-SR: shapes at any LR size, gradients, the coarse-to-fine correspondence of its Match & Extraction Module on
a shifted toy pair, and the spatial adaptation's statistics."""

from __future__ import annotations

import pytest
import torch

from fasr.errors import FasrError
from fasr.models import ModelConfig, build_model
from fasr.models.baselines.masa import SpatialAdaptation, coarse_match, extract, fine_match


def shifted_pair(shift: tuple[int, int], size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """LR features and Ref-down features that are the same random texture moved by ``shift`` (rows, columns):
    the LR position p shows what Ref-down shows at p + shift."""
    canvas = torch.randn(2, 4, 2 * size, 2 * size, generator=torch.Generator().manual_seed(0))
    o = size // 2
    lr = canvas[:, :, o : o + size, o : o + size]
    ref = canvas[:, :, o - shift[0] : o - shift[0] + size, o - shift[1] : o - shift[1] + size]
    return lr, ref


@pytest.mark.parametrize("scale, h, w", [(4, 7, 9), (4, 16, 16), (2, 11, 6)])
def test_any_lr_size_gives_the_hr_grid_and_gradients_reach_every_weight(scale: int, h: int, w: int) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="masa", scale=scale, n_feats=8))
    lr, ref = torch.randn(2, 1, h, w), torch.randn(2, 1, h * scale, w * scale)
    hr = torch.randn(2, 1, h * scale, w * scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    reached: set[str] = set()
    for _ in range(3):  # the zero-initialised output, then SAM's zero-initialised gamma/beta, open the paths
        optimizer.zero_grad()
        out = model(lr, ref).sr
        assert out.shape == (2, 1, h * scale, w * scale)
        (out - hr).abs().mean().backward()
        reached |= {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        optimizer.step()
    assert reached == {k for k, _ in model.named_parameters()}


def test_a_scale_that_is_not_a_power_of_two_is_refused() -> None:
    with pytest.raises(FasrError, match="model.scale must be 2, 4 or 8"):
        build_model(ModelConfig(name="masa", scale=3))


@pytest.mark.parametrize("shift", [(3, -3), (-5, 2), (0, 0)])
def test_the_coarse_to_fine_match_finds_a_shifted_texture(shift: tuple[int, int]) -> None:
    lr, ref = shifted_pair(shift)
    match, score = fine_match(lr, ref, coarse_match(lr, ref))
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    expected = torch.stack([rows + shift[0], cols + shift[1]], dim=-1)  # (32, 32, 2)
    # Wherever the true patch lies inside Ref-down (and the LR patch is not a replicated border), and so does the
    # true place of its block's centre patch at every dilation, the match is exact and its cosine similarity 1.
    centres = torch.stack([rows // 8 * 8 + 4 + shift[0], cols // 8 * 8 + 4 + shift[1]], dim=-1)
    inside = (expected >= 1).all(-1) & (expected <= 30).all(-1) & (centres >= 3).all(-1) & (centres <= 28).all(-1)
    inside &= (rows >= 1) & (rows <= 30) & (cols >= 1) & (cols <= 30)
    assert inside.sum() > 400
    assert (match == expected).all(-1)[:, inside].all()
    assert torch.allclose(score[:, 0][:, inside], torch.ones(()), atol=1e-5)


def test_extraction_moves_the_reference_back_onto_the_lr_grid_at_every_scale() -> None:
    lr, ref = shifted_pair((3, -3))
    match, score = fine_match(lr, ref, coarse_match(lr, ref))
    for s in (1, 2, 4):
        fine_ref = ref.repeat_interleave(s, 2).repeat_interleave(s, 3)  # Ref features s times finer
        fine_lr = lr.repeat_interleave(s, 2).repeat_interleave(s, 3)
        out = extract(fine_ref, match, score, s)
        assert out.shape == fine_lr.shape
        m = 5 * s  # away from the borders where the true patch leaves Ref-down
        assert torch.allclose(out[..., m:-m, m:-m], fine_lr[..., m:-m, m:-m], atol=1e-4)


def test_untrained_spatial_adaptation_gives_the_reference_the_lr_statistics() -> None:
    lr = 3.0 + 2.0 * torch.randn(2, 4, 16, 16)
    ref = -1.0 + 0.1 * torch.randn(2, 4, 16, 16)
    out = SpatialAdaptation(4)(lr, ref)
    assert torch.allclose(out.mean(dim=(2, 3)), lr.mean(dim=(2, 3)), atol=1e-4)
    assert torch.allclose(out.std(dim=(2, 3)), lr.std(dim=(2, 3)), rtol=1e-2)


def test_the_fine_match_searches_only_its_blocks_region() -> None:
    """Given coarse centres 10 px off the truth, every LR patch still has its exact copy in Ref-down, but outside
    its block's region: a search of the whole Ref-down would find it (similarity 1), MEM's must not. Regions
    near the border are shifted to lie inside Ref-down."""
    lr, ref = shifted_pair((0, 0))
    true_centres = coarse_match(lr, ref)  # (B, 16, 2): each block's own centre
    for offset in (10, -10):
        centres = (true_centres + offset).clamp(0, 31)
        match, score = fine_match(lr, ref, centres)
        size = 2 * int(8 / 2 * 1.5) + 3  # 15: 13 centres plus a margin pixel per side
        origin = (centres - size // 2).clamp(0, 32 - size)  # (B, 16, 2) region corners inside Ref-down
        block_of = (torch.arange(32)[:, None] // 8 * 4 + torch.arange(32)[None, :] // 8).flatten()  # (1024,)
        low = origin[:, block_of].reshape(2, 32, 32, 2) + 1  # patch centres lie a margin inside the region
        assert ((match >= low) & (match <= low + size - 3)).all()
        # The exact copy (at the patch's own place) is found where the region holds it, and only there.
        rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
        own = torch.stack([rows, cols], dim=-1)  # (32, 32, 2)
        held = ((own >= low) & (own <= low + size - 3)).all(-1)  # (B, 32, 32)
        interior = (rows >= 1) & (rows <= 30) & (cols >= 1) & (cols <= 30)  # no replicated border in the patch
        assert (score[:, 0][~held & interior] < 0.999).all() and (~held & interior).sum() > 500
        assert torch.allclose(score[:, 0][held & interior], torch.ones(()), atol=1e-5)
