"""Frame thumbnails and the distances the content detector compares them with."""
from __future__ import annotations

from functools import lru_cache

import av
import numpy as np

THUMB_W, THUMB_H = 64, 36  # luma thumbnail; chroma thumbnails are half that each way
THUMB_DIM = THUMB_W * THUMB_H + 2 * (THUMB_W // 2) * (THUMB_H // 2)
_PLANAR_8BIT = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"}


def thumbnail(frame: av.VideoFrame) -> np.ndarray:
    """(THUMB_DIM,) uint8 thumbnail of Y, U and V, area-averaged from the decoder's own planes.

    uint8: the detector keeps one per decoded frame for the whole video (3.4 KB; float32 was
    13.8 KB, ~2.4 GB for a two-hour film at 24 fps). Numpy only: OpenCV's INTER_AREA gave the same
    bytes (this is its arithmetic, rounding half to even) but importing cv2 cost ~0.14 s of each
    ``reelforge scenes`` process (BENCHMARKS.md, issue 12)."""
    if frame.format.name not in _PLANAR_8BIT:  # 10-bit, nv12, rgb…: convert (slower, rare)
        frame = frame.reformat(format="yuv420p")
    parts = []
    for plane, (w, h) in zip(frame.planes, [(THUMB_W, THUMB_H)] + [(THUMB_W // 2, THUMB_H // 2)] * 2):
        img = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]
        if img.shape[0] >= 4 * h and img.shape[1] >= 4 * w:
            # point-sample 4 rows/columns per output pixel, evenly spread, and average those 4x4:
            # averaging a full 1080p plane costs ~2 ms, this ~0.1
            s = _sum4(_sum4(img, h, 0), w, 1)  # (h, w) uint16 sums of 16 pixels
            parts.append(((s + 7 + ((s >> 4) & 1)) >> 4).astype(np.uint8).ravel())  # s / 16, half to even
        else:  # a small video (under 256x144): an area average over fractional pixels, cheap here
            if img.shape[0] >= 4 * h:  # the long side point-sampled to 4x as above
                img = img[np.arange(4 * h) * img.shape[0] // (4 * h)]
            if img.shape[1] >= 4 * w:
                img = img[:, np.arange(4 * w) * img.shape[1] // (4 * w)]
            s = _area_weights(img.shape[0], h) @ img @ _area_weights(img.shape[1], w).T  # (h, w)
            parts.append(np.rint(s).astype(np.uint8).ravel())
    return np.concatenate(parts)


def _sum4(img: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Sums of 4 rows (axis 0) or columns (axis 1) per output row/column: ``n`` sums of rows
    ``i * size // (4 n)`` for 4 consecutive i, evenly spread over the plane. Strided views when the
    size is a multiple of 4 n, else one gather of the 4 n rows/columns. → uint16"""
    size, m = img.shape[axis], 4 * n
    if size % m == 0:
        st = size // m
        views = [img[k * st::4 * st] if axis == 0 else img[:, k * st::4 * st] for k in range(4)]
    else:
        idx = np.arange(m) * size // m
        g = img[idx] if axis == 0 else img[:, idx]
        views = [g[k::4] if axis == 0 else g[:, k::4] for k in range(4)]
    s = np.add(views[0], views[1], dtype=np.uint16)
    s += views[2]
    s += views[3]
    return s


@lru_cache(maxsize=32)
def _area_weights(size: int, n: int) -> np.ndarray:
    """(n, size) float64: output pixel i averages source pixels over [i s, (i + 1) s), s = size / n,
    each weighted by its overlap (an area resize along one axis; rows sum to 1)."""
    s = size / n
    edges = np.arange(n + 1) * s  # (n + 1,)
    lo, hi = edges[:-1, None], edges[1:, None]  # (n, 1)
    j = np.arange(size)[None, :]  # (1, size)
    return np.clip(np.minimum(j + 1, hi) - np.maximum(j, lo), 0, None) / s


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
