"""Keeping a long-lived worker's heap the size of what it holds, not of what it once held.

A video task decodes 1080p frames (3 MB buffers from FFmpeg's pools, re-created for every decode pass)
on several threads and frees them again; glibc's malloc does not give that memory back by itself:

- its mmap threshold is dynamic: after the first large buffer is freed it rises (up to 32 MB), so every
  later frame buffer is carved out of a heap instead of mmapped, and freed heap memory below a live
  chunk stays resident;
- every thread that allocates may get an arena of its own (up to 8 per core), each keeping its freed
  memory for itself.

Measured (BENCHMARKS.md, "Memory of the whole build"): after the shot detector had read 2 minutes of
1080p the process held 201 MB of freed heap (6 MB in use); with both calls below the video task's peak
over 5 minutes of 1080p was 1,045 MB instead of 1,239 MB (886 MB instead of 1,239 MB at its end).
:func:`bound_heap` fixes the mmap threshold (large buffers are mmapped and unmapped on free)
and caps the arenas; :func:`release` returns freed heap pages to the OS, called where a phase of the
task has just dropped its data (after the shot split, after each clip batch). Both are no-ops off
glibc (macOS, musl): there the allocator's own policy stands.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os

# mallopt parameters (glibc malloc.h)
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

# buffers from this size up are mmapped: a 1080p luma plane (2 MB) and every frame-sized array, never
# the many small objects (thumbnails are 3.4 KB), which a per-allocation mmap would make costly
MMAP_THRESHOLD = 1 << 20
ARENA_MAX = 2

_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            try:  # the usual name first: ctypes.util.find_library runs ldconfig (a process start-up cost)
                lib = ctypes.CDLL("libc.so.6")
            except OSError:
                lib = ctypes.CDLL(ctypes.util.find_library("c"))
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def bound_heap() -> bool:
    """Fix the mmap threshold at :data:`MMAP_THRESHOLD` and cap arenas at :data:`ARENA_MAX` in this
    process, unless the environment already sets them (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``:
    an operator's choice wins). Returns whether glibc took the settings."""
    libc = _glibc()
    if libc is None:
        return False
    ok = True
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        ok &= bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if "MALLOC_ARENA_MAX" not in os.environ:
        ok &= bool(libc.mallopt(_M_ARENA_MAX, ARENA_MAX))
    return ok


def release() -> None:
    """Give freed heap pages back to the OS (``malloc_trim(0)``: every arena, pages inside the heap too,
    not only its top). Costs a walk over the free lists: call it between phases, not per frame."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


def release_arrow() -> None:
    """Give Arrow's freed buffers back to the OS (``default_memory_pool().release_unused()``): its pool
    (mimalloc by default) keeps them otherwise, apart from glibc's heap, so :func:`release` cannot. Call
    it where a batch or chunk of Arrow data was just dropped; the index build peaked ~30 MB higher
    without it (BENCHMARKS.md, issue 16)."""
    import pyarrow as pa  # here, not at the top: the shot reader imports this module and never needs Arrow

    pa.default_memory_pool().release_unused()
