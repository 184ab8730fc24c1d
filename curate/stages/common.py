"""Small helpers the scoring stages share: frame validation, luma, the crop box, threshold reasons.

Scoring stages read ``frames``: a uint8 RGB array (K, H, W, 3) of K evenly spaced frames of the clip
(short side <= 256), produced by the transcode stage so no scorer decodes the clip again.
"""
from __future__ import annotations

import numpy as np

# ITU-R BT.601 luma weights: what "brightness" means for 8-bit video
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def as_frames(value) -> np.ndarray:
    """The ``frames`` column of one row as a (K, H, W, 3) uint8 array, or ValueError saying what is wrong."""
    if value is None:
        raise ValueError("no sampled frames (frames is None)")
    frames = np.asarray(value)
    if frames.dtype == object:  # Ray/Arrow can hand a ragged list of per-frame arrays
        frames = np.stack([np.asarray(f) for f in frames])
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be (K, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    return frames


def to_luma(frames: np.ndarray) -> np.ndarray:
    """(K, H, W, 3) uint8 RGB -> (K, H, W) float32 luma in [0, 1]."""
    return (frames.astype(np.float32) @ LUMA_WEIGHTS) / 255.0


def crop_in_frames(row: dict, frames: np.ndarray) -> tuple[int, int, int, int]:
    """The borders stage's crop box (clip pixel coords) mapped onto the sampled frames; full frame if absent.

    Scorers look inside the box so letterbox bars do not count as dark pixels or sharp edges.
    """
    h, w = frames.shape[1:3]
    box = [row.get(k) for k in ("crop_x0", "crop_y0", "crop_x1", "crop_y1")]
    cw, ch = row.get("width"), row.get("height")
    if any(v is None for v in box) or not cw or not ch:
        return 0, 0, w, h
    sx, sy = w / float(cw), h / float(ch)
    x0, y0 = int(round(box[0] * sx)), int(round(box[1] * sy))
    x1, y1 = int(round(box[2] * sx)), int(round(box[3] * sy))
    if x1 - x0 < 8 or y1 - y0 < 8:  # a degenerate box is no better than none
        return 0, 0, w, h
    return max(0, x0), max(0, y0), min(w, x1), min(h, y1)


def bound_reason(stage: str, column: str, value, lo: float | None = None, hi: float | None = None) -> str | None:
    """``"stage: column=value < min lo"`` (or ``> max hi``) when ``value`` is outside [lo, hi], else None.

    A missing score (None / NaN: not computed) never filters a clip.
    """
    if value is None:
        return None
    v = float(value)
    if v != v:  # NaN
        return None
    if lo is not None and v < lo:
        return f"{stage}: {column}={v:.4g} < min {lo:.4g}"
    if hi is not None and v > hi:
        return f"{stage}: {column}={v:.4g} > max {hi:.4g}"
    return None


def first_reason(*reasons: str | None) -> str | None:
    for r in reasons:
        if r:
            return r
    return None
