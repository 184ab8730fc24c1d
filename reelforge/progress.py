"""One progress line per phase, in a terminal and in a job log alike.

``bar(...)`` is a drop-in for the ``tqdm(...)`` calls the build makes (iterate it, or ``update`` it inside
``with``). In a terminal it *is* tqdm: one bar redrawn in place. Anywhere else (``ray job submit`` logs,
CI, a pipe) a redrawn bar becomes one line per redraw, so it prints instead one plain line every
``REELFORGE_PROGRESS_SECONDS`` (default 15) and a last one when the phase ends:

    videos: 120/480 video, 2.31 video/s, 52s, ETA 2m36s, clips=1870

A 20-second phase therefore logs one line, an hour-long phase about 240. Both keep ticking while no item
finishes (a background thread): small videos go 32 to a task and a long one is one item, so minutes can
pass between updates, and a log that stops looks like a hung job. Ray Data's own progress
output is switched off in ``reelforge.cluster.init_ray`` (``ray.progress_bars`` turns it back on).
"""
from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from typing import Iterable, Iterator, TextIO

INTERVAL_ENV = "REELFORGE_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 15.0


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "")
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_INTERVAL
    except ValueError:
        raise ValueError(f"${INTERVAL_ENV} must be a number of seconds, got {raw!r}") from None


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LineProgress:
    """The non-terminal bar: counts like tqdm, prints a plain line at most every ``interval`` seconds
    and once when closed (even when nothing was done, so every phase shows up in the log)."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", file: TextIO | None = None, interval: float | None = None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit = total, desc, unit
        self.file = file or sys.stderr
        self.interval = _interval() if interval is None else interval
        self.n = 0
        self.postfix: dict = {}
        self.t0 = self.last = time.monotonic()
        self.closed = False
        self._lock = threading.Lock()  # the heartbeat thread prints too
        self._stop = threading.Event()
        if self.interval > 0:
            _heartbeat(self._stop, self.interval, weakref.WeakMethod(self._beat))

    def line(self, now: float | None = None) -> str:
        """``desc: n/total unit, rate unit/s, elapsed, ETA`` (ETA only while a total is known and unmet)."""
        elapsed = (now if now is not None else time.monotonic()) - self.t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        parts = [f"{self.desc}: {done} {self.unit}", f"{rate:.2f} {self.unit}/s", _duration(elapsed)]
        if self.total is not None and self.n < self.total and rate > 0 and not self.closed:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}")
        elif self.closed:  # closed short of its total: a phase left by an error or Ctrl-C
            parts.append("done" if self.total is None or self.n >= self.total else "stopped")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        return ", ".join(parts)

    def update(self, n: int = 1) -> None:
        with self._lock:
            self.n += n
            now = time.monotonic()
            if now - self.last >= self.interval:
                self.last = now
                self._print(now)

    def _beat(self) -> None:
        """A line when none was printed for ``interval`` (nothing finished): the elapsed time moves on."""
        with self._lock:
            now = time.monotonic()
            if not self.closed and now - self.last >= self.interval:
                self.last = now
                self._print(now)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs) -> None:
        """tqdm's ``set_postfix``: extra ``key=value`` fields shown on the next line."""
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._print()

    def _print(self, now: float | None = None) -> None:
        print(self.line(now), file=self.file, flush=True)

    def __iter__(self) -> Iterator:
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _heartbeat(stop: threading.Event, seconds: float, beat) -> None:
    """Call ``beat()()`` every ``seconds`` until ``stop`` is set or the bar is gone (``beat`` is a weak
    reference: a bar its caller dropped without closing, after an error, stops ticking; a daemon thread)."""
    def loop():
        while not stop.wait(max(seconds, 0.05)):
            fn = beat()
            if fn is None:
                return
            fn()
            del fn

    threading.Thread(target=loop, name="progress-heartbeat", daemon=True).start()


def bar(iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it",
        file: TextIO | None = None):
    """A progress bar for one phase: tqdm when ``file`` (default stderr) is a terminal, else a
    :class:`LineProgress`. Takes tqdm's ``iterable``/``total``/``desc``/``unit``."""
    out = file or sys.stderr
    if getattr(out, "isatty", lambda: False)():
        from tqdm import tqdm

        t = tqdm(iterable, total=total, desc=desc, unit=unit, file=out, dynamic_ncols=True)
        # tqdm redraws only on update: between items its elapsed time would stand still
        stop = threading.Event()
        bar_ref = weakref.ref(t)

        def redraw():
            bar = bar_ref()
            if bar is not None and not bar.disable:  # disable: closed
                bar.refresh()
            else:
                stop.set()
        _heartbeat(stop, 1.0, lambda: redraw)
        return t
    return LineProgress(iterable, total=total, desc=desc, unit=unit, file=out)
