"""Scheduling the fast reader's chunks: windows of chunks decoded in parallel, checked in order.

Chunks (whole GOPs) start at keyframes and are decoded independently, so ``decode_workers`` threads
decode several at once, each with its own decoder (PyAV releases the GIL while decoding). A chunk
may stop early ("quiet": only its keyframes decoded; or ``Paused``: its tail after the last spike
left undecoded); whether it must be finished depends on the next chunk's first frame, so chunks
are checked in order as soon as the next one's keyframe is decoded. After a window, what the
detector still needs across its chunks (``policy.needed``) is decoded.
"""
from __future__ import annotations

import threading

from reelforge.curate import malloc

from .decoders import Paused
from .policy import needed
from .thumbs import distance

# a window of chunks is decoded in parallel; each window ends with its last chunk decoded whole
# (nothing after it to check against) and a wait for its slowest chunk, so windows are long;
# bounded by the packets they hold (a 4K stream at 50 Mb/s: ~10 s of video)
WINDOW_CHUNKS = 64
WINDOW_BYTES = 64 << 20  # the packets held in memory: ~2 minutes of 1080p at 6 Mb/s
# chunks per worker decoded ahead of the in-order check (fewer left a worker idle behind a costly
# chunk; BENCHMARKS.md)
_AHEAD_PER_WORKER = 3
# chunks between two returns of freed heap memory to the system: the decoders free and allocate
# multi-megabyte frame and packet buffers on several threads, glibc keeps what is freed, and that grew
# with the video's length (`reelforge scenes` peaked at 479 MB on 5 minutes of 1080p and 645 MB on 10
# with ~130 MB in use; BENCHMARKS.md, issue 12)
_TRIM_EVERY = 4


def run_windows(reader, executor, source) -> None:
    """Decode every chunk ``source`` (the demuxer) gives, a window at a time, with ``reader``'s
    per-chunk passes (``reader.FastReader``) on ``executor``'s threads."""
    last_chunk = None
    window = next(source, None)
    while window is not None:
        chunks, window = _run_window(reader, executor, window, source)
        # the previous window's last chunk goes along: its frames are the context of a cut at the
        # start of this one
        _context(reader, executor, ([last_chunk] if last_chunk else []) + chunks)
        last_chunk = chunks[-1]
        del chunks  # a window's packets (up to WINDOW_BYTES) are not held while the next one is read


def _run_window(reader, executor, first: list, source) -> tuple[list[list], list | None]:
    """Decode a window of chunks in parallel, then finish the quiet and paused ones whose last
    decoded frame does not lead into the next chunk's first. The window starts with chunk
    ``first`` and takes more from ``source`` as they are needed, up to WINDOW_CHUNKS chunks or
    WINDOW_BYTES of packets; returns its chunks and the next window's first chunk (None at the end
    of the video).

    Chunks are demuxed only as decoding reaches them, so decoding starts with the first chunk.
    They are checked in order, each as soon as it is done and the next one's keyframe is decoded,
    so a tail goes on decoding beside the chunks after it; and only a few chunks per worker run
    ahead of the check: a paused decoder holds its frames until then, so the number alive at once
    is bounded and the idle ones are reused. A window's last chunk is always decoded whole:
    nothing decoded after it to check against."""
    cfg = reader.cfg
    chunks: list[list] = []
    held = 0
    nxt = None  # the next window's first chunk
    ended = False  # no more chunks for this window

    def pull(i: int) -> bool:
        """Whether chunk i is in this window (demuxing up to it)."""
        nonlocal held, nxt, ended
        while len(chunks) <= i and not ended:
            c = first if not chunks else next(source, None)
            if c is None or len(chunks) == WINDOW_CHUNKS or held >= WINDOW_BYTES:
                nxt, ended = c, True
                break
            chunks.append(c)
            held += sum(p.size for p in c)
            reader.key_ready[c[0].pts] = threading.Event()
        return i < len(chunks)

    # fewer chunks than workers: a decoder per chunk leaves cores idle; frame threads use them
    # (+20-30% CPU time, but on cores that had nothing to do)
    few = not pull(reader.workers - 1) and cfg.decode_threads == "NONE"
    reader.decoders.threads = "FRAME" if few else cfg.decode_threads
    ahead = _AHEAD_PER_WORKER * reader.workers
    running: dict[int, object] = {}
    finishing = []

    def start(i: int) -> None:
        if pull(i):
            last = not pull(i + 1)
            running[i] = executor.submit(reader.process, chunks[i], cfg.skip_quiet and not last)
            # a chunk that ends without its first frame decoded (or fails) wakes the check too
            running[i].add_done_callback(lambda _, e=reader.key_ready[chunks[i][0].pts]: e.set())

    def first_frame(i: int):
        """Thumbnail of chunk i's first packet (its keyframe) once decoded, else once the chunk is
        done, its first decoded frame."""
        reader.key_ready[chunks[i][0].pts].wait()
        th = reader.thumbs.get(chunks[i][0].pts)
        if th is None:
            running[i].result()  # raises the chunk's error, if any
            th = reader.edge(chunks[i], last=False)
        return th

    try:
        for i in range(ahead):
            start(i)
        i = 0
        while i in running:
            state = running[i].result()
            start(i + ahead)
            if i % _TRIM_EVERY == _TRIM_EVERY - 1:
                malloc.release()
            if state != "done":
                before, after = reader.edge(chunks[i], last=True), first_frame(i + 1)
                if before is None or after is None or distance(before, after) > cfg.refine_threshold:
                    if state == "quiet":
                        finishing.append(executor.submit(reader.process, chunks[i], False))
                    else:
                        finishing.append(executor.submit(reader.resume, chunks[i], state))
                elif isinstance(state, Paused):  # leads on: drop its frames, keep the decoder
                    cc = state.take()
                    cc.flush_buffers()
                    reader.decoders.release(cc, shared=True)
            i += 1
        for f in finishing:
            f.result()
    finally:
        for f in list(running.values()) + finishing:  # on error: drop what has not started
            f.cancel()
    return chunks, nxt


def _context(reader, executor, chunks: list[list]) -> None:
    """Decode what ``policy.needed`` asks for across these chunks, again until it asks for nothing
    (a decoded gap may show a jump at its far end that needs context in turn).

    Most of it is a cut at a chunk's keyframe (encoders put keyframes at cuts) whose chunk decoded
    only its keyframe, or whose first gap skipped frames: a re-decode from the keyframe up to the
    gap's end, a few packets mostly."""
    while True:  # each round decodes frames not decoded before (or raises): it ends
        order = reader.order(p for c in chunks for p in c)
        wanted = needed(order, reader.thumbs, reader.cfg)
        jobs = [(c, w) for c in chunks if (w := wanted & {p.pts for p in c})]
        if not jobs:
            return
        list(executor.map(lambda job: reader.decode_gaps(*job), jobs))
