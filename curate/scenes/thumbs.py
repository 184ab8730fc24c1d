"""Frame thumbnails and the distances the content detector compares them with."""
from __future__ import annotations

import av
import cv2
import numpy as np

THUMB_W, THUMB_H = 64, 36  # luma thumbnail; chroma thumbnails are half that each way
THUMB_DIM = THUMB_W * THUMB_H + 2 * (THUMB_W // 2) * (THUMB_H // 2)
_PLANAR_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}


def thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """(THUMB_DIM,) uint8 thumbnail of Y, U and V, area-averaged from the decoder's own planes.

    uint8, as INTER_AREA gives it: the detector keeps one per decoded frame for the whole video
    (3.4 KB; float32 was 13.8 KB, ~2.4 GB for a two-hour film at 24 fps)."""
    if frame.format.name not in _PLANAR_8BIT:  # 10-bit, nv12, rgb…: convert (slower, rare)
        frame = frame.reformat(format="yuv420p")
    parts = []
    for plane, (w, h) in zip(frame.planes, [(THUMB_W, THUMB_H)] + [(THUMB_W // 2, THUMB_H // 2)] * 2):
        img = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        # point-sample to ~4x the target first: INTER_AREA over a full 1080p plane costs ~2 ms
        img = _sample(_sample(img, 4 * h, 0), 4 * w, 1)
        parts.append(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA).ravel())
    return np.concatenate(parts)


def _sample(img: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Every k-th row (axis 0) or column (axis 1) of ``img``: exactly ``n`` of them, evenly spread,
    when the size is a multiple of ``n`` or not a whole stride apart (1080 = 7.5 x 144), so INTER_AREA
    then averages whole 4x4 blocks: its fractional-ratio path costs 10x more (~0.3 ms a 1080p
    plane, most of a thumbnail). Sizes under 4x the target are left for INTER_AREA as they are."""
    size = img.shape[axis]
    if size < n:
        return img
    if size % n == 0:
        return img[:: size // n] if axis == 0 else img[:, :: size // n]
    idx = np.arange(n) * size // n
    return img[idx] if axis == 0 else img[:, idx]  # (n, W) or (H, n)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean absolute difference of thumbnails, per plane, summed over Y, U, V (0-255 scale each).

    ``a``, ``b``: (..., THUMB_DIM) uint8 or float → (...) float32"""
    ny = THUMB_W * THUMB_H
    nc = (THUMB_W // 2) * (THUMB_H // 2)
    d = np.subtract(a, b, dtype=np.float32)  # uint8 would wrap around
    np.abs(d, out=d)
    # per-plane sums in one pass, then means: 2-3x faster than three .mean() calls for one pair (the
    # detector takes thousands), and the same values (thumbnails hold whole numbers: exact sums)
    s = np.add.reduceat(d, [0, ny, ny + nc], axis=-1)
    return s[..., 0] / ny + s[..., 1] / nc + s[..., 2] / nc


def distance_pairs(thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, block: int = 128) -> np.ndarray:
    """``distance(thumbs[i], thumbs[j])``, the same values, a block of pairs at a time: gathering
    hundreds of thumbnails at once makes fresh multi-megabyte temporaries whose page faults cost
    more than the arithmetic (2-3x slower over a 720-frame clip's dissolve windows)."""
    if not len(i):
        return np.zeros(0, np.float32)
    return np.concatenate([distance(thumbs[i[s:s + block]], thumbs[j[s:s + block]])
                           for s in range(0, len(i), block)])


def steps_between(thumbs: np.ndarray, block: int = 4096) -> np.ndarray:
    """``distance(thumbs[1:], thumbs[:-1])``, a block of rows at a time: the float temporaries stay
    a few tens of MB however long the video. ``thumbs``: (K, THUMB_DIM) → (K-1,) float32"""
    if len(thumbs) < 2:
        return np.zeros(0, np.float32)
    n = len(thumbs) - 1  # steps
    return np.concatenate([distance(thumbs[s + 1:min(s + block, n) + 1], thumbs[s:min(s + block, n)])
                           for s in range(0, n, block)])


def median(x) -> float:
    """``np.median`` of a short 1-D array, the same value: ~10x cheaper than its general machinery
    (~50 us a call), and the detector and the reader take the local level of change hundreds of
    times per video."""
    v = np.sort(np.asarray(x))
    m = len(v) // 2
    return float(v[m]) if len(v) % 2 else float((v[m - 1] + v[m]) / 2)


def structure_change(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """1 - correlation of two luma thumbnails, and the smaller of their two contrasts (std).

    Brightness and colour shifts leave it near 0 (the picture's layout is unchanged); a new shot
    moves it towards 1. Rows and columns that are flat and identical in both (letterbox and
    pillarbox bars) are left out: they would make any two framed pictures look alike. Meaningless on
    flat pictures: callers check the contrast. ``a``, ``b``: (THUMB_DIM,)"""
    y = np.stack([a[: THUMB_W * THUMB_H], b[: THUMB_W * THUMB_H]]).reshape(2, THUMB_H, THUMB_W)

    def same_flat(axis: int) -> np.ndarray:  # both pictures at once: the detector calls this a lot
        m, sd = y.mean(axis), y.std(axis)  # (2, W) or (2, H)
        return (sd[0] < 2) & (sd[1] < 2) & (np.abs(m[0] - m[1]) < 2)

    rows, cols = ~same_flat(2), ~same_flat(1)  # (H,), (W,) the live area
    if not rows.any() or not cols.any():
        return 0.0, 0.0
    ya, yb = y[0][rows][:, cols], y[1][rows][:, cols]
    ya, yb = ya - ya.mean(), yb - yb.mean()
    sa, sb = float(np.sqrt((ya * ya).mean())), float(np.sqrt((yb * yb).mean()))
    corr = float((ya * yb).mean()) / max(sa * sb, 1e-6)
    return 1.0 - corr, min(sa, sb)
