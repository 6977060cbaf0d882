"""fasr.heap: with reuse on, a forward pass on a large slice runs in memory already faulted in by the previous
pass (no fresh mmap and kernel zeroing per activation); release and the eager context hand memory back; an
explicit malloc setting of the user's wins. Probes that need a heap no other test has used run in a fresh
process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fasr import heap

pytestmark = pytest.mark.skipif(not heap.available(), reason="glibc's allocator only")

# Fresh-process probes: a small conv net's forward passes on a (1, 8, 1100, 1100) fp32 slice (38.7 MB per
# activation: above glibc's largest mmap threshold, 32 MiB) and one 4 MiB block (above the eager 1 MiB threshold,
# below any threshold glibc would pick by itself after the first pass).
_PROBE = """
import resource, sys, torch
from fasr import heap

def faults_per_pass(passes=4):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3, padding=1))
    x = torch.randn(1, 8, 1100, 1100)
    counts = []
    with torch.no_grad():
        for _ in range(passes + 1):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            y = net(x) + x
            del y
            counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return sum(counts[1:]) / passes

def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

def returned_on_free(numel):
    x = torch.empty(numel)
    x.fill_(1.0)
    held = rss_bytes()
    del x
    return held - rss_bytes()

activation_pages = 8 * 1100 * 1100 * 4 // resource.getpagesize()
mode = sys.argv[1]
if mode == "reuse":
    assert heap.reuse_freed_memory()
    faults = faults_per_pass()
    kept = rss_bytes()
    heap.release_freed_memory()
    print(faults / activation_pages, (kept - rss_bytes()) / (activation_pages * resource.getpagesize()))
elif mode == "defaults":
    print(faults_per_pass() / activation_pages)
else:
    assert heap.reuse_freed_memory()
    with heap.released_eagerly():
        with heap.released_eagerly():
            pass  # an inner context does not end the outer one
        inner = heap.reusing()
        eager = returned_on_free(2**20) / 2**22  # 4 MiB of fp32
    kept = returned_on_free(2**20) / 2**22
    print(int(inner), eager, kept, faults_per_pass() / activation_pages, int(heap.reusing()))
"""


def _probe(mode: str) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in heap._USER_SETTINGS}
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1], env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return [float(v) for v in done.stdout.split()]


def _thp_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


@pytest.mark.skipif(_thp_always(), reason="huge pages: a fault maps 2 MiB, so fault counts do not tell")
def test_reuse_runs_each_pass_in_memory_the_last_one_freed_and_release_hands_it_back():
    (defaults,) = _probe("defaults")
    faults, released = _probe("reuse")
    assert defaults > 6  # glibc's defaults: ~8 activations' pages faulted in on every pass (measured 8.0)
    assert faults < 2  # measured 0.25: the pass runs in the heap the previous pass freed
    assert released > 2  # malloc_trim hands the kept activations back (the tiled loop's budget holds)


@pytest.mark.skipif(_thp_always(), reason="huge pages: a fault maps 2 MiB, so fault counts do not tell")
def test_within_released_eagerly_freed_memory_goes_back_at_once_and_reuse_returns_after():
    inner, eager, kept, faults, reusing = _probe("eager")
    assert inner == 0  # still eager after a nested context ended
    assert eager > 0.9  # a 4 MiB block is unmapped on free
    assert kept < 0.1  # with reuse, it stays for the next allocation
    assert faults < 2 and reusing == 1  # reuse is back after the context


def test_the_users_own_malloc_setting_is_left_alone(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    assert heap.reuse_freed_memory() is False
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
    assert heap.available() is False
