"""Per-frame thumbnails of a whole video (``Features``), and the plain reader that decodes every frame.

The fast reader (``reader.py``) gives the same ``Features`` while decoding far fewer frames; this
module holds what both share: opening a file with clear errors, the frame rate, and the exact path
it falls back to.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from .result import SceneDetectionError
from .thumbs import thumbnail


@dataclass
class Features:
    pts: np.ndarray  # (N,) float64 frame.time of every frame, presentation order
    # (K, THUMB_DIM) uint8 Y|U|V thumbnails of the decoded frames only, in presentation order: row r
    # is frame np.flatnonzero(known)[r]. Nothing is kept for frames the detector never sees
    thumbs: np.ndarray
    known: np.ndarray  # (N,) bool: frame was decoded (it has a row in thumbs)
    fps: float
    decoded: int  # frames decoded (re-decoded ones count again)
    mode: str  # "fast" | "exact"


class FastPathUnsupported(Exception):
    """The fast reader met something it does not handle; decode every frame instead."""


def open_video(path: str, threads: str = "AUTO"):
    """(container, first video stream) or SceneDetectionError."""
    try:
        container = av.open(path)
    except Exception as exc:  # PyAV raises many different errors for non-video input
        raise SceneDetectionError(f"cannot open {path}: {type(exc).__name__}: {exc}") from exc
    # the first video stream that is not cover art (as curate/media.main_video_stream, which would
    # bring fsspec into `reelforge scenes`' start-up): a file may list its cover picture first
    stream = next((s for s in container.streams.video
                   if not s.disposition & av.stream.Disposition.attached_pic), None)
    if stream is None:
        only_cover = bool(container.streams.video)
        container.close()
        raise SceneDetectionError(f"{path} has no video stream" + (" (only cover art)" if only_cover else ""))
    stream.thread_type = threads
    return container, stream


def stream_rate(stream) -> Fraction | None:
    """The stream's average frame rate; read it while the container is open (PyAV crashes after)."""
    return stream.average_rate or stream.base_rate or stream.guessed_rate


def fps_of(rate: Fraction | None, pts: np.ndarray) -> float:
    if rate:
        return float(rate)
    if len(pts) > 1 and pts[-1] > pts[0]:
        return (len(pts) - 1) / float(pts[-1] - pts[0])
    return 0.0


def decode_all(path: str, per_frame, threads: str = "AUTO") -> tuple[np.ndarray, np.ndarray, float]:
    """Decode every frame, map each through ``per_frame(av.VideoFrame) -> ndarray``; returns the stacked
    results and their pts in presentation order, and the fps. Raises SceneDetectionError."""
    container, stream = open_video(path, threads)
    rate = stream_rate(stream)
    times, items = [], []
    try:
        with container:
            for frame in container.decode(stream):
                # a frame without a timestamp gets one from its index, so the output stays usable
                t = frame.time
                times.append(t if t is not None else (times[-1] + 1 / float(rate or 25)) if times else 0.0)
                items.append(per_frame(frame))
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
    stacked = np.stack(items)
    del items[:]  # one copy of the per-frame arrays at a time (two for out-of-order timestamps)
    if np.any(np.diff(order) != 1):
        stacked = stacked[order]
    return stacked, pts, fps_of(rate, pts)


def read_exact(path: str, threads: str = "AUTO") -> Features:
    """Decode every frame (the reference behaviour, and the fallback of the fast path)."""
    stacked, pts, fps = decode_all(path, thumbnail, threads)
    return Features(pts, stacked, np.ones(len(pts), bool), fps, len(pts), "exact")
