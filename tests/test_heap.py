"""fasr.heap: with reuse on, a forward pass on a large slice runs in memory already faulted in by the previous
pass (no fresh mmap and kernel zeroing per activation); release hands it back; an explicit MALLOC_* setting in the
environment wins."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fasr import heap

pytestmark = pytest.mark.skipif(heap._LIBC is None, reason="glibc only")

_SIDE = 1100  # one (1, 8, 1100, 1100) fp32 activation is 38.7 MB: above glibc's largest mmap threshold (32 MiB)
_PAGES = 8 * _SIDE * _SIDE * 4 // 4096  # pages of one activation


def _faults_per_pass(passes: int = 4) -> float:
    """Mean page faults of a small conv net's forward pass on a large slice (after one warm-up pass)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1))
    x = torch.randn(1, 8, _SIDE, _SIDE)
    counts = []
    with torch.no_grad():
        for _ in range(passes + 1):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            y = net(x) + x  # 8 activation-sized allocations (conv scratch included) with glibc's defaults
            del y
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sum(counts[1:]) / passes


@pytest.fixture
def no_user_setting(monkeypatch):
    for key in heap._USER_SETTINGS:
        monkeypatch.delenv(key, raising=False)


def test_freed_activations_are_reused_without_page_faults(no_user_setting):
    assert heap.reuse_freed_memory()
    # measured: 0-1 activation's pages per pass with reuse; glibc's defaults fault ~8 activations' pages every pass
    assert _faults_per_pass() < 2 * _PAGES


def _rss_pages() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1])


def test_release_hands_the_kept_memory_back(no_user_setting):
    assert heap.reuse_freed_memory()
    _faults_per_pass(1)
    kept = _rss_pages()
    heap.release_freed_memory()
    # measured: 526 -> 268 MiB; without the release the pass's memory stays resident for the next one
    assert kept - _rss_pages() > 2 * _PAGES * 4096 // resource.getpagesize()  # the tiled loop's budget holds


_EAGER_PROBE = """
import torch, tests.test_heap as t
from fasr import heap
assert heap.reuse_freed_memory()
with heap.released_eagerly():
    x = torch.empty(8 * t._SIDE * t._SIDE)
    x.fill_(1.0)
    held = t._rss_pages()
    del x
    returned = held - t._rss_pages()
print(returned, t._PAGES, t._faults_per_pass())
"""


def test_within_released_eagerly_freed_memory_goes_back_at_once(no_user_setting):
    # A fresh process: in this one, large free chunks left by other tests would serve the allocation.
    env = {k: v for k, v in os.environ.items() if k not in heap._USER_SETTINGS}
    out = subprocess.run([sys.executable, "-c", _EAGER_PROBE], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1], env=env, timeout=120).stdout.split()
    returned, pages, faults = (float(v) for v in out)
    assert returned > pages / 2  # unmapped on free: a budget holds without trimming
    assert faults < 2 * pages  # and after the context, reuse is back


def test_the_users_own_malloc_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert heap.reuse_freed_memory() is False
