"""curate/malloc.py: freed frame-sized buffers and freed small objects go back to the OS.

Each case runs in a fresh interpreter: glibc's dynamic mmap threshold is per-process state that an
earlier test (any decode) would already have moved."""
from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc",
                                reason="glibc malloc only")

_PRELUDE = """
import os, numpy as np
os.environ.pop("MALLOC_MMAP_THRESHOLD_", None); os.environ.pop("MALLOC_ARENA_MAX", None)
from reelforge.curate import malloc
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") >> 20
"""

# 60 frame-sized (3 MB) buffers, each followed by a small object that stays alive (a decoder's
# bookkeeping): with glibc's dynamic threshold the first free moves the threshold above 3 MB, the
# rest come from the heap, and the live small objects pin them there after they are freed
_FRAMES = _PRELUDE + """
if {bound}:
    assert malloc.bound_heap()
first = np.ones(3 << 20, np.uint8); del first   # the free that raises glibc's dynamic threshold
base = rss()
frames, pins = [], []
for i in range(60):
    frames.append(np.ones(3 << 20, np.uint8))
    pins.append(np.ones(512, np.uint8))
del frames
print(rss() - base)
"""

_SMALL = _PRELUDE + """
base = rss()
thumbs = [np.ones(3456, np.uint8) for _ in range(40000)]   # ~140 MB of shot-detector thumbnails
kept = thumbs[::64]                                          # a few stay alive all over the heap
del thumbs
before = rss() - base
malloc.release()
print(before, rss() - base)
"""


def _run(code: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [int(x) for x in out.stdout.split()]


def test_bound_heap_returns_freed_frame_buffers():
    (held_default,) = _run(_FRAMES.format(bound=False))
    (held_bounded,) = _run(_FRAMES.format(bound=True))
    assert held_default > 120, "glibc's dynamic threshold no longer keeps freed frames: test is moot"
    assert held_bounded < 20, f"{held_bounded} MB of freed 3 MB buffers still resident"


def test_release_returns_freed_small_objects():
    before, after = _run(_SMALL)
    assert before > 100, f"freed thumbnails were not held by the heap ({before} MB): test is moot"
    assert after < before / 2, f"malloc_trim left {after} of {before} MB resident"
