"""reelforge/progress.py: tqdm in a terminal; elsewhere a bounded number of plain lines per phase."""
from __future__ import annotations

import io
import time

from tqdm import tqdm

from reelforge import progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_tqdm_and_a_pipe_gets_lines():
    assert isinstance(progress.bar(total=3, desc="x", file=_Tty()), tqdm)
    assert isinstance(progress.bar(total=3, desc="x", file=io.StringIO()), progress.LineProgress)


def test_lines_are_bounded_by_time_not_by_items(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    out = io.StringIO()
    with progress.bar(total=1000, desc="clips", unit="clip", file=out) as bar:
        bar.interval = 10.0
        for _ in range(1000):
            clock[0] += 0.125  # 125 s in all: a line at most every 10 s, then the last one
            bar.update(1)
            bar.set_postfix(shards=2, refresh=False)
    lines = out.getvalue().splitlines()
    assert len(lines) == 13
    assert lines[0].startswith("clips: 80/1000 clip, 8.00 clip/s, 10s, ETA 1m55s")
    assert lines[-1] == "clips: 1000/1000 clip, 8.00 clip/s, 2m05s, done, shards=2"


def test_iterating_prints_one_line_for_a_short_phase_even_when_empty(monkeypatch):
    monkeypatch.setenv(progress.INTERVAL_ENV, "60")
    out = io.StringIO()
    assert list(progress.bar(iter(range(5)), total=5, desc="videos", unit="video", file=out)) == list(range(5))
    assert list(progress.bar([], desc="empty", file=out)) == []
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("videos: 5/5 video") and lines[1].startswith("empty: 0/0 it")


def test_a_phase_with_no_item_done_still_prints_a_line_every_interval():
    # one task of 32 small videos, or one long video, is minutes without an update: the log must tick
    out = io.StringIO()
    b = progress.LineProgress(total=3, desc="videos", unit="video", file=out, interval=0.05)
    time.sleep(0.4)
    ticking = out.getvalue().splitlines()
    b.close()
    time.sleep(0.15)
    lines = out.getvalue().splitlines()
    assert len(ticking) >= 3 and all(line.startswith("videos: 0/3 video") for line in ticking)
    assert lines[-1].startswith("videos: 0/3 video") and lines[-1].endswith("stopped")
    assert len(lines) == len(ticking) + 1  # closed: the heartbeat stops


def test_terminal_bar_redraws_while_waiting():
    out = _Tty()
    t = progress.bar(total=2, desc="videos", unit="video", file=out)
    before = out.getvalue()
    time.sleep(2.3)  # the heartbeat redraws once a second
    t.close()
    assert out.getvalue().count("0/2") > before.count("0/2") + 1


def test_a_bar_dropped_after_an_error_stops_ticking_and_a_short_close_says_stopped():
    import gc

    out = io.StringIO()
    b = progress.LineProgress(total=3, desc="videos", unit="video", file=out, interval=0.05)
    b.update(1)
    del b  # the caller's frame went away with an exception, the bar never closed
    gc.collect()
    time.sleep(0.1)
    n = len(out.getvalue().splitlines())
    time.sleep(0.3)
    assert len(out.getvalue().splitlines()) == n  # a thread would otherwise print into whatever runs next

    out = io.StringIO()
    with progress.bar(total=3, desc="videos", unit="video", file=out) as b:
        b.update(1)
    assert out.getvalue().splitlines()[-1].endswith("stopped")  # not "done": 1 of 3
