"""The fast reader's decoders: made with exactly the stream's parameters, reused across chunks.

A fresh decoder per chunk costs its setup and the first-touch page faults of its frame pool (8-18%
more CPU at 1080p; BENCHMARKS.md), so idle decoders are kept: each thread keeps its own (a
decoder's frames stay in that core's cache), and a shared list holds those freed by the thread
that runs the in-order check. A decoder stopped part-way through a chunk is a ``Paused``.
"""
from __future__ import annotations

import threading

import av

from .features import open_video


class DecoderPool:
    """Decoders for one stream. ``threads``: the PyAV thread_type new and reused decoders have
    (the scheduler switches to "FRAME" while a window has fewer chunks than workers); a decoder
    made with another threading is not handed out for it."""

    def __init__(self, path: str, stream, workers: int, threads: str, fast_decode: bool, nal_len: int | None):
        self.path, self.workers, self.threads, self.fast_decode = path, workers, threads, fast_decode
        self.codec = stream.codec_context.name
        self.extradata = stream.codec_context.extradata
        self.nal_len = nal_len
        self._local = threading.local()
        self._idle: list = []
        self._lock = threading.Lock()
        self._threads_of: dict[int, str] = {}  # id(decoder) → its threading
        self._opened: list = []

    def _new(self):
        """A decoder with exactly the stream's parameters.

        H.264/HEVC with avcC/hvcC extradata: a fresh context given that extradata (all the decoder
        reads besides the packets). Otherwise the codec context of a new opening of the file (never
        demuxed); opening probes the file again, which decodes its first frame (~13 ms at 1080p)."""
        if self.nal_len:
            cc = av.CodecContext.create(self.codec, "r")
            cc.extradata = self.extradata
            cc.thread_type = self.threads
        else:
            container, stream = open_video(self.path, self.threads)
            self._opened.append(container)  # closed by close()
            cc = stream.codec_context
        if self.threads == "FRAME":
            cc.thread_count = self.workers
        self._threads_of[id(cc)] = self.threads
        if self.fast_decode:
            if self.codec == "h264":
                # no reference frame is skipped, so skipping the loop filter only blurs block edges a
                # little: invisible in a 64x36 thumbnail, and ~15% less decoding. Not HEVC: its
                # deblocking and SAO drift along the P chain (2.5 levels 120 frames into a 250-frame
                # x265 GOP at 160x90), which moved a borderline cut (sintel 30 s, frame 356)
                cc.options = {"skip_loop_filter": "all"}
            cc.flags2 |= 1  # AV_CODEC_FLAG2_FAST
        return cc

    def _own(self) -> list:
        if not hasattr(self._local, "idle"):
            self._local.idle = []
        return self._local.idle

    def acquire(self):
        """An idle decoder (reset) with the current threading: this thread's, else a shared one,
        else a new one."""
        own = self._own()
        while own:
            if self._threads_of[id(cc := own.pop())] == self.threads:
                return cc
        with self._lock:
            while self._idle:
                if self._threads_of[id(cc := self._idle.pop())] == self.threads:
                    return cc
        return self._new()

    def release(self, cc, shared: bool = False) -> None:
        """Back to this thread's idle decoders (or the shared ones); ``cc`` must have been drained
        or flushed."""
        if not shared:
            self._own().append(cc)
            return
        with self._lock:
            self._idle.append(cc)

    def close(self) -> None:
        for c in self._opened:
            c.close()


class Paused:
    """A decoder stopped part-way through a chunk, undrained: ``next_index`` is the chunk's first
    packet not fed yet; ``helpers`` the reference B-frames its pass decodes without thumbnails."""

    def __init__(self, cc, next_index: int, helpers: set[int]):
        self._cc, self.next_index, self.helpers = cc, next_index, helpers

    def take(self):
        """The decoder, once (None after): whoever takes it drains or flushes it."""
        cc, self._cc = self._cc, None
        return cc
