"""How this process's C heap (glibc malloc) keeps and returns the memory that tensors free.

Ours, measured (docs/performance.md): glibc serves every allocation above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and unmaps it on free, so each full-resolution activation of a large slice (a 640x640
slice's 64-channel fp32 map is 105 MB) is faulted in and zeroed page by page by the kernel on every forward
pass. On a 2-core CPU that was a third of the CPU time (31 of 90 s of a 256 + 640 speed run was system time)
and a 640x640 slice took 7.28 s instead of 2.74 s. :func:`reuse_freed_memory` makes the main heap keep freed
memory for the next pass instead (allocations above 64 MiB in threads other than the main one are still
mmapped: glibc's thread heaps cannot hold them).

API:

* :func:`reuse_freed_memory` ``() -> bool``: every ``fasr`` command calls it first; Python API users may too.
* :func:`release_freed_memory` ``()``: ``malloc_trim(0)``.
* :func:`released_eagerly` a context in which every allocation above 1 MiB is mmapped and returned to the OS
  when freed: for runs that must stay within a memory budget. Measured: a 512x512 slice tiled under
  ``--max-memory-gib 1.6`` peaked at 1.92 GiB with reuse (36 tiles of 30 LR px), because tiles of
  different sizes fragment a heap that keeps what it frees; the tiled slice loop therefore runs in this context.
* :func:`reusing` ``() -> bool``: whether reuse is in effect now.

All are no-ops where the allocator is not glibc's (musl, macOS, Windows, or jemalloc / tcmalloc preloaded). A
malloc setting of the user's own in the environment (``MALLOC_MMAP_MAX_``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc`` tunables in ``GLIBC_TUNABLES``) is left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from collections.abc import Iterator

__all__ = ["reuse_freed_memory", "release_freed_memory", "released_eagerly", "reusing", "available", "REUSE_OVERHEAD"]

# glibc <malloc.h> mallopt parameters
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_GLIBC_MMAP_MAX = 65536  # glibc's default
# Measured (2026-12-02): a 1 MiB mmap threshold kept a 512x512 slice tiled under a 1.6 GiB budget
# at 1.29 GiB peak RSS (a 256x256 slice then ran 50 % slower than with glibc's dynamic threshold).
_EAGER_THRESHOLD = 2**20
_KEEP_BYTES = 2**31 - 1  # trim the heap's top on free only past 2 GiB free (mallopt takes an int)
_USER_SETTINGS = ("MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _libc():
    if any(name in os.environ.get("LD_PRELOAD", "") for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return None  # another allocator serves malloc; glibc's settings would do nothing
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    if lib is None or not hasattr(lib, "mallopt") or not hasattr(lib, "malloc_trim"):
        return None  # not glibc (musl, macOS)
    lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.malloc_trim.argtypes = [ctypes.c_size_t]
    return lib


_LIBC = _libc()
_APPLIED = False  # whether reuse_freed_memory's settings were applied in this process
_EAGER_DEPTH = 0  # open released_eagerly contexts (they suspend the reuse)

# Ours, measured: peak RSS of a whole-slice forward pass with reuse over glibc's defaults (fp32 640x640 slice:
# 3007 / 2600 MiB, `fasr bench speed --sizes 640 --precision fp32 --repeats 1` at 2411f9b and 44bc728). A slice
# loop reuses only when its memory estimate leaves this much room under its budget.
REUSE_OVERHEAD = 1.16


def available() -> bool:
    """Whether :func:`reuse_freed_memory` would apply: glibc's allocator, and no malloc setting of the user's."""
    user = any(k in os.environ for k in _USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    return _LIBC is not None and not user


def reusing() -> bool:
    """Whether freed memory is kept for reuse now (False within :func:`released_eagerly`)."""
    return _APPLIED and not _EAGER_DEPTH


def _apply_reuse() -> bool:
    global _APPLIED
    _APPLIED = bool(_LIBC.mallopt(_M_MMAP_MAX, 0)) and bool(_LIBC.mallopt(_M_TRIM_THRESHOLD, _KEEP_BYTES))
    return _APPLIED


def reuse_freed_memory() -> bool:
    """Serve large allocations from the heap and keep freed memory for reuse (no ``mmap`` per tensor).

    Returns whether the settings were applied (False where :func:`available` is False).
    """
    if not available():
        return False
    if _EAGER_DEPTH:
        return True  # applied when the outermost released_eagerly context ends
    return _apply_reuse()


def release_freed_memory() -> None:
    """Hand the memory freed since the last call back to the OS (glibc ``malloc_trim``; elsewhere a no-op).

    Ours, measured: forward passes over tiles of varying sizes fragment the heap, and the process's RSS
    between tiles crept from 0.7 to 1.6 GiB over 26 tiles of a 512x512 slice (peak 2.7 GiB over its 121
    tiles under a 1.6 GiB budget). The tiled slice loop trims after every tile, which keeps it at 0.3 GiB, and
    every slice loop trims once before it measures the process's memory; whole-slice batches are not trimmed
    between passes (the next pass reuses the heap).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@contextlib.contextmanager
def released_eagerly() -> Iterator[None]:
    """Within: allocations above 1 MiB are mmapped and unmapped on free; after the outermost such context:
    reuse again. A no-op where reuse is not in effect."""
    global _EAGER_DEPTH
    if not _APPLIED:
        yield
        return
    if not _EAGER_DEPTH:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, _EAGER_THRESHOLD)
        _LIBC.mallopt(_M_TRIM_THRESHOLD, _EAGER_THRESHOLD)
        _LIBC.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX)
        release_freed_memory()
    _EAGER_DEPTH += 1
    try:
        yield
    finally:
        _EAGER_DEPTH -= 1
        if not _EAGER_DEPTH:
            _apply_reuse()
