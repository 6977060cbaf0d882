"""In-plane tiling, the memory budget, empty slices and bf16 mode of the slice loop."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fasr import heap
from fasr.errors import FasrError
from fasr.inference.engine import memory
from fasr.inference.engine.slices import RunSettings, super_resolve_slices
from fasr.inference.engine.tiling import tile_spans, tiled_forward
from fasr.models import ModelConfig, build_model

SCALE = 4


def _model(search_window: int = 2) -> torch.nn.Module:
    cfg = ModelConfig(name="fasr", scale=SCALE, n_feats=8, n_blocks=(1, 1, 1), embed_dim=8,
                      search_window=search_window, backbone_weights=None)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    torch.nn.init.normal_(model.tail.weight, std=0.05)  # not the zero-initialised (bicubic) output
    return model


def _images(n: int, h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    ref = np.clip(g.normal(0, 0.5, (n, h * SCALE, w * SCALE)), -1, 1).astype(np.float32)
    lr = ref.reshape(n, h, SCALE, w, SCALE).mean((2, 4)) * 0.8  # a related, smaller "contrast"
    return lr.astype(np.float32), ref


def _forward(model):
    def run(lr, ref):
        out = model(lr, ref)
        return out.sr, out.confidence

    return run


def test_tile_spans_cover_with_overlap() -> None:
    spans = tile_spans(50, 16, 4)
    assert spans[0][0] == 0 and spans[-1][1] == 50
    assert all(b0 <= a1 - 4 for (_, a1), (b0, _) in zip(spans, spans[1:]))
    assert tile_spans(10, 16, 4) == [(0, 10)]


class _LocalNet(torch.nn.Module):
    """A small convolutional (lr, ref) -> SR model with a receptive field of 2 HR pixels and no global
    statistics, so that tiling with any margin >= 1 LR pixel must reproduce it exactly (FASR-Net itself centres
    its features per image, which tiles cannot reproduce exactly)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(2, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 3, padding=1)
        )

    def forward(self, lr, ref):
        from fasr.data.degrade import resize
        from fasr.models.output import SROutput

        up = resize(lr, ref.shape[-2:])
        out = self.body(torch.cat([up, ref], dim=1))
        return SROutput(sr=up + out[:, :1], attention={}, confidence=torch.sigmoid(out[:, 1:]))


def test_tiled_equals_untiled_away_from_seams() -> None:
    model = _LocalNet().eval()
    lr, ref = (torch.from_numpy(a)[:, None] for a in _images(2, 45, 38))
    with torch.inference_mode():
        whole = model(lr, ref)
        done: list[int] = []
        sr, conf, n_tiles = tiled_forward(_forward(model), lr, ref, SCALE, tile=16, margin=6, overlap=4,
                                          on_tile=lambda: done.append(1))
    assert n_tiles == len(tile_spans(45, 16, 4)) * len(tile_spans(38, 16, 4)) > 4
    assert len(done) == n_tiles  # the progress callback fires once per tile
    seam = torch.zeros(45 * SCALE, 38 * SCALE, dtype=torch.bool)
    for axis, n in ((0, 45), (1, 38)):
        for a, _ in tile_spans(n, 16, 4)[1:]:
            band = slice((a - 1) * SCALE, (a + 5) * SCALE)  # the blend band and 1 LR px around it
            if axis == 0:
                seam[band] = True
            else:
                seam[:, band] = True
    assert 0.2 < (~seam).float().mean() < 0.9
    assert float((sr - whole.sr)[..., ~seam].abs().max()) < 1e-3
    assert float((conf - whole.confidence)[..., ~seam].abs().max()) < 1e-3
    assert float((sr - whole.sr).abs().max()) < 1e-3  # blending equal outputs changes nothing either


def test_tiny_budget_forces_tiling_and_too_small_a_budget_is_refused() -> None:
    model = _LocalNet().eval()  # the plan is FASR-Net's estimate; a cheap local model keeps the test fast
    lr, ref = _images(2, 96, 80)
    settings = RunSettings.for_model(ModelConfig(n_feats=8, search_window=2, match_memory_mib=8))
    kw = dict(n_feats=8, match_memory_mib=8, search_window=2, base_gib=0)
    reused = heap.reuse_freed_memory()  # as every fasr command does
    heap.release_freed_memory()  # as the planner does before it takes the RSS as its base
    budget = memory.current_rss_gib() + 0.7 * memory.estimate((96, 80), SCALE, 1, **kw).peak_gib
    tiled = super_resolve_slices(model, lr, ref, SCALE, 2, torch.device("cpu"), False,
                                 dataclasses.replace(settings, max_memory_gib=budget))
    assert tiled.stats["tile"] is not None and tiled.stats["tiles_per_slice"] > 1 and tiled.stats["batch"] == 1
    assert tiled.stats["estimated_peak_gib"] <= budget
    assert tiled.stats["heap"] == ("released eagerly" if reused else "allocator defaults")  # tiles: budget first
    assert heap.reusing() == reused  # and reuse again after the loop
    whole = super_resolve_slices(model, lr, ref, SCALE, 2, torch.device("cpu"), False,
                                 dataclasses.replace(settings, max_memory_gib=1e3))
    assert whole.stats["tile"] is None and whole.stats["tiles_per_slice"] == 1 and whole.stats["batch"] == 2
    assert whole.stats["heap"] == ("reused" if reused else "allocator defaults")  # room for what reuse adds
    assert np.abs(tiled.sr - whole.sr).max() < 1e-3 and np.abs(tiled.confidence - whole.confidence).max() < 1e-3
    with pytest.raises(FasrError, match="--max-memory-gib .* too small"):
        super_resolve_slices(model, lr, ref, SCALE, 1, torch.device("cpu"), False,
                             dataclasses.replace(settings, max_memory_gib=memory.current_rss_gib() + 1e-3))


def test_plan_is_whole_slices_when_they_fit_and_tiles_grow_with_budget() -> None:
    small = memory.plan_tiles((1024, 1024), 4, 1, 2.0)
    large = memory.plan_tiles((1024, 1024), 4, 1, 8.0)
    assert small.tile is not None and large.tile is not None and large.tile > small.tile
    assert small.estimate.peak_gib <= 2.0
    assert memory.plan_tiles((60, 60), 4, 8, 8.0) == memory.plan_tiles((60, 60), 4, 8, 9.0)
    assert memory.plan_tiles((60, 60), 4, 8, 8.0).tile is None


def test_empty_slices_skip_the_network() -> None:
    model = _model()
    calls = []
    original = model.forward
    model.forward = lambda lr, ref: calls.append(lr.shape[0]) or original(lr, ref)
    lr, ref = _images(4, 16, 16)
    lr[1] = -1.0  # background only
    lr[3] = -1.0 + 1e-6 * np.random.default_rng(0).standard_normal((16, 16))  # blank up to resampling round-off
    out = super_resolve_slices(model, lr, ref, SCALE, 4, torch.device("cpu"), False)
    assert calls == [2] and out.stats["skipped_empty"] == 2
    assert np.all(out.sr[1] == -1.0) and np.all(out.confidence[1] == 0.0)
    assert np.allclose(out.sr[3], -1.0, atol=1e-5) and np.all(out.confidence[3] == 0.0)
    assert out.stats["slices_per_second"] > 0


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="CPU without native bf16")
def test_bf16_mode_keeps_matching_fp32(monkeypatch) -> None:
    import fasr.models.matching as matching

    seen = []
    block_scores = matching._block_scores

    def spy(levels, qsl, ksl):
        out = block_scores(levels, qsl, ksl)
        seen.append((out.dtype, {lvl.q.dtype for lvl in levels}))
        return out

    monkeypatch.setattr(matching, "_block_scores", spy)
    model = _model(search_window=0)
    autocast = []
    model.extractor.register_forward_hook(lambda *_: autocast.append(torch.is_autocast_enabled("cpu")))
    lr, ref = _images(1, 16, 16)
    out = super_resolve_slices(model, lr, ref, SCALE, 1, torch.device("cpu"), False, RunSettings(precision="bf16"))
    assert out.stats["precision"] == "bf16" and autocast and all(autocast)  # the convolutions ran in bf16
    assert seen and all(dtype == torch.float32 and inputs == {torch.float32} for dtype, inputs in seen)
    fp32 = super_resolve_slices(model, lr, ref, SCALE, 1, torch.device("cpu"), False)
    assert np.abs(out.sr - fp32.sr).max() < 0.05
