"""Per-frame thumbnails for shot detection, without fully decoding every frame.

Decoding is the whole cost of a content detector, and most of what a decoder does is wasted on it:
a frame between two reference frames that look alike cannot hide a hard cut. So the video is read
one chunk of whole GOPs at a time:

1. coarse: decode only the reference frames (``skip_frame=NONREF``: I, P and reference-B frames; no
   reference chain is broken, so every decoded picture is exact) and take small Y/U/V thumbnails
   straight from the decoder's planes (no colour conversion);
2. refine: where two consecutive decoded frames differ by more than ``refine_threshold``, the skipped
   frames between them may hold a cut or a transition: decode the chunk again, this time keeping
   the skipped frames inside those gaps, so decisions there are made on every frame.

Frame times come from the packets (``packet.pts * time_base``, sorted), which are exactly the
``frame.time`` values PyAV gives for the decoded frames; frames that were never decoded have a
time but no thumbnail. Anything unusual (packets without timestamps, duplicate timestamps, a
refinement that does not give back the frames it was asked for) falls back to decoding every frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from .result import SceneDetectionError

THUMB_W, THUMB_H = 64, 36  # luma thumbnail; chroma thumbnails are half that each way
THUMB_DIM = THUMB_W * THUMB_H + 2 * (THUMB_W // 2) * (THUMB_H // 2)
_PLANAR_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}
# GOPs are gathered into chunks of at least this many packets: each chunk ends with a decoder
# drain, which stalls frame threading, so chunks of tiny GOPs would waste the threads
_CHUNK_MIN_PACKETS = 48


@dataclass
class Features:
    pts: np.ndarray  # (N,) float64 frame.time of every frame, presentation order
    thumbs: np.ndarray  # (N, THUMB_DIM) float32 Y|U|V thumbnails, rows of undecoded frames are 0
    known: np.ndarray  # (N,) bool: frame was decoded (its thumbnail is real)
    fps: float
    decoded: int  # frames actually decoded (refinement re-decodes count again)
    mode: str  # "fast" | "exact"


class _NeedsExact(Exception):
    """The fast path met something it does not handle; decode every frame instead."""


def thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """(THUMB_DIM,) float32 thumbnail of Y, U and V, area-averaged from the decoder's own planes."""
    if frame.format.name not in _PLANAR_8BIT:  # 10-bit, nv12, rgb…: convert (slower, rare)
        frame = frame.reformat(format="yuv420p")
    parts = []
    for plane, (w, h) in zip(frame.planes, [(THUMB_W, THUMB_H)] + [(THUMB_W // 2, THUMB_H // 2)] * 2):
        img = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        # point-sample to ~4x the target first: INTER_AREA over a full 1080p plane costs ~2 ms
        sy, sx = max(1, img.shape[0] // (4 * h)), max(1, img.shape[1] // (4 * w))
        parts.append(cv2.resize(img[::sy, ::sx], (w, h), interpolation=cv2.INTER_AREA).ravel())
    return np.concatenate(parts).astype(np.float32)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of thumbnails, per plane, summed over Y, U, V (0-255 scale each).

    ``a``, ``b``: (..., THUMB_DIM) → (...)"""
    ny = THUMB_W * THUMB_H
    nc = (THUMB_W // 2) * (THUMB_H // 2)
    d = np.abs(a - b)
    return d[..., :ny].mean(-1) + d[..., ny:ny + nc].mean(-1) + d[..., ny + nc:].mean(-1)


def structure_change(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """1 - correlation of two luma thumbnails, and the smaller of their two contrasts (std).

    Brightness and colour shifts leave it near 0 (the picture's layout is unchanged); a new shot
    moves it towards 1. Rows and columns that are flat and identical in both (letterbox and
    pillarbox bars) are left out: they would make any two framed pictures look alike. Meaningless on
    flat pictures: callers check the contrast. ``a``, ``b``: (THUMB_DIM,)"""
    ya = a[: THUMB_W * THUMB_H].reshape(THUMB_H, THUMB_W)
    yb = b[: THUMB_W * THUMB_H].reshape(THUMB_H, THUMB_W)

    def same_flat(axis: int) -> np.ndarray:
        return ((ya.std(axis) < 2) & (yb.std(axis) < 2) & (np.abs(ya.mean(axis) - yb.mean(axis)) < 2))

    rows, cols = ~same_flat(1), ~same_flat(0)  # (H,), (W,) the live area
    if not rows.any() or not cols.any():
        return 0.0, 0.0
    ya, yb = ya[rows][:, cols], yb[rows][:, cols]
    ya, yb = ya - ya.mean(), yb - yb.mean()
    sa, sb = float(np.sqrt((ya * ya).mean())), float(np.sqrt((yb * yb).mean()))
    corr = float((ya * yb).mean()) / max(sa * sb, 1e-6)
    return 1.0 - corr, min(sa, sb)


def _open(path: str):
    try:
        container = av.open(path)
    except Exception as exc:  # PyAV raises many different errors for non-video input
        raise SceneDetectionError(f"cannot open {path}: {type(exc).__name__}: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise SceneDetectionError(f"{path} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def stream_rate(stream) -> Fraction | None:
    """The stream's average frame rate; read it while the container is open (PyAV crashes after)."""
    return stream.average_rate or stream.base_rate or stream.guessed_rate


def _fps(rate: Fraction | None, pts: np.ndarray) -> float:
    if rate:
        return float(rate)
    if len(pts) > 1 and pts[-1] > pts[0]:
        return (len(pts) - 1) / float(pts[-1] - pts[0])
    return 0.0


def read_features(path: str, refine_threshold: float, exact: bool = False) -> Features:
    if not exact:
        try:
            return _read_fast(path, refine_threshold)
        except _NeedsExact:
            pass
    return _read_exact(path)


def _read_exact(path: str) -> Features:
    """Decode every frame (the reference behaviour, and the fallback of the fast path)."""
    container, stream = _open(path)
    rate = stream_rate(stream)
    times, thumbs = [], []
    try:
        with container:
            for i, frame in enumerate(container.decode(stream)):
                # a frame without a timestamp gets one from its index, so the output stays usable
                t = frame.time
                times.append(t if t is not None else (times[-1] + 1 / float(rate or 25)) if times else 0.0)
                thumbs.append(thumbnail(frame))
    except SceneDetectionError:
        raise
    except Exception as exc:
        raise SceneDetectionError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from exc
    if not times:
        raise SceneDetectionError(f"{path}: no video frames could be decoded")
    # out-of-order timestamps: presentation order is timestamp order (a stable sort keeps the decode
    # order of equal timestamps)
    order = np.argsort(np.asarray(times), kind="stable")
    pts = np.asarray(times, np.float64)[order]
    stacked = np.stack(thumbs)[order]
    return Features(pts, stacked, np.ones(len(pts), bool), _fps(rate, pts), len(pts), "exact")


def _read_fast(path: str, refine_threshold: float) -> Features:
    container, stream = _open(path)
    rate = stream_rate(stream)
    tb = stream.time_base
    cc = stream.codec_context
    thumbs: dict[int, np.ndarray] = {}  # packet pts → thumbnail
    all_pts: list[int] = []
    state = {"decoded": 0, "last": None}  # last: (pts, thumb) of the latest known frame so far

    def decode_chunk(packets: list, wanted: set[int] | None) -> None:
        """Decode one chunk; ``wanted=None`` → coarse (refs only), else refs + these pts."""
        for pkt in packets:
            cc.skip_frame = "NONREF" if wanted is None or pkt.pts not in wanted else "DEFAULT"
            for frame in cc.decode(pkt):
                _take(frame)
        cc.skip_frame = "DEFAULT"
        for frame in cc.decode(None):  # drain: frame threading holds frames back
            _take(frame)
        cc.flush_buffers()

    def _take(frame) -> None:
        if frame.pts is None:
            raise _NeedsExact
        state["decoded"] += 1
        if frame.pts not in thumbs:
            thumbs[frame.pts] = thumbnail(frame)

    def process(packets: list) -> None:
        decode_chunk(packets, None)
        # walk this chunk's frames in presentation order; a gap between two decoded frames whose
        # thumbnails differ may hide a cut: ask for its skipped frames
        order = sorted(p.pts for p in packets)
        wanted: set[int] = set()
        last = state["last"]
        pending: list[int] = []  # undecoded pts since `last`
        for p in order:
            th = thumbs.get(p)
            if th is None:
                pending.append(p)
                continue
            if pending and last is not None and distance(last[1], th) > refine_threshold:
                wanted.update(pending)
            elif pending and last is None:  # undecoded frames before the first decoded one
                wanted.update(pending)
            pending = []
            last = (p, th)
        if pending:  # skipped frames at the end of the chunk: always look at them (rare: open GOP)
            wanted.update(pending)
        if wanted:
            decode_chunk(packets, wanted)
            if any(p not in thumbs for p in wanted):
                raise _NeedsExact  # e.g. open-GOP leading frames that need the previous chunk
        state["last"] = last if last is not None else state["last"]
        for p in order[::-1]:
            if p in thumbs:
                state["last"] = (p, thumbs[p])
                break

    try:
        with container:
            chunk: list = []
            for pkt in container.demux(stream):
                if pkt.size == 0:  # demuxer's end-of-stream marker
                    continue
                if pkt.pts is None:
                    raise _NeedsExact
                if pkt.is_keyframe and len(chunk) >= _CHUNK_MIN_PACKETS:
                    process(chunk)
                    chunk = []
                chunk.append(pkt)
                all_pts.append(pkt.pts)
            if chunk:
                process(chunk)
    except _NeedsExact:
        raise
    except Exception as exc:
        raise SceneDetectionError(f"cannot decode {path}: {type(exc).__name__}: {exc}") from exc
    if not all_pts:
        raise SceneDetectionError(f"{path}: no video frames could be decoded")
    ipts = np.sort(np.asarray(all_pts, np.int64))
    if np.any(np.diff(ipts) == 0):
        raise _NeedsExact  # duplicate timestamps: presentation order is ambiguous
    if set(thumbs) - set(all_pts):
        raise _NeedsExact  # decoder invented timestamps the packets do not have
    known = np.array([p in thumbs for p in ipts.tolist()], bool)
    stacked = np.zeros((len(ipts), THUMB_DIM), np.float32)
    for i, p in enumerate(ipts.tolist()):
        if known[i]:
            stacked[i] = thumbs[p]
    # exactly PyAV's frame.time: float(pts * time_base) on Fractions
    pts = np.array([float(p * tb) for p in ipts.tolist()], np.float64)
    return Features(pts, stacked, known, _fps(rate, pts), state["decoded"], "fast")
