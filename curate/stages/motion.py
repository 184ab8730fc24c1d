"""Motion: dense optical flow between consecutive sampled frames; flags static and jittery clips.

Flow is OpenCV Farneback on frames downscaled to a 128-px short side (inside the crop box). For each
pair a similarity transform (shift, rotation, zoom) is fit to the flow with RANSAC: that is the camera.
What the camera model does not explain is object motion. Units are chosen to be independent of frame
size and sampling rate:

- ``motion_mean`` / ``motion_camera`` / ``motion_object``: mean displacement per second as a fraction of
  the frame's short side (0.1 = a tenth of the frame height per second in landscape video).
- ``motion_jitter``: mean change of the camera's translation between consecutive pairs, as a fraction of
  the short side (not per second: shake is an amplitude, not a speed). A smooth pan scores ~0, a
  hand-held shake scores its wobble.

Calibration (tests/curate/test_filter_motion.py, generated clips with known motion): a still image
with encoder noise scores < 1e-3, an object moving 1 px/frame at 24 fps in a 256-px frame scores ~0.01
(mean over the whole frame, the object covering ~5% of it) and more for larger objects or pans.
The default ``min_motion`` 0.002 sits between; Open-Sora-Plan's LPIPS window (0.001-0.3) and NeMo
Curator's global flow mean (0.00098) are in other units and do not transfer directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reelforge.curate.stage import Resources, Stage
from reelforge.curate.stages.common import as_frames, bound_reason, crop_in_frames, first_reason, to_luma

FLOW_SHORT_SIDE = 128
GRID_STEP = 4  # px between the flow samples the camera model is fit to


def _resize_gray(luma: np.ndarray) -> np.ndarray:
    """(K, h, w) luma in [0, 1] -> (K, h', w') uint8 with short side FLOW_SHORT_SIDE (never upscaled)."""
    k, h, w = luma.shape
    scale = min(1.0, FLOW_SHORT_SIDE / min(h, w))
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    gray = np.clip(luma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray])


def _farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(h, w) uint8 x2 -> (h, w, 2) flow in px. Five pyramid levels: sampled frames can be far apart."""
    return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=5, winsize=15, iterations=3,
                                        poly_n=5, poly_sigma=1.2, flags=0)


def split_camera_object(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 2) flow -> (camera flow (h, w, 2), camera translation (2,)) from a RANSAC similarity fit."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[GRID_STEP // 2:h:GRID_STEP, GRID_STEP // 2:w:GRID_STEP]
    src = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)  # (P, 2)
    dst = src + flow[ys.ravel(), xs.ravel()]
    model, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if model is None:  # degenerate (flat frame): fall back to a pure shift
        shift = np.median(flow.reshape(-1, 2), axis=0)
        return np.broadcast_to(shift, flow.shape).copy(), shift
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    pts = np.stack([gx, gy, np.ones_like(gx)], axis=-1)  # (h, w, 3)
    camera = pts @ model.T.astype(np.float32) - pts[..., :2]  # (h, w, 2)
    centre = np.array([w / 2.0, h / 2.0, 1.0], dtype=np.float32)
    shift = centre @ model.T.astype(np.float32) - centre[:2]  # translation of the frame centre
    return camera, shift


def pair_intervals(row: dict, k: int) -> np.ndarray:
    """Seconds between consecutive sampled frames, (k-1,); from ``frame_times`` or the clip duration."""
    times = row.get("frame_times")
    if times is not None and len(times) == k:
        dt = np.diff(np.asarray(times, dtype=np.float64))
        if np.all(dt > 0):
            return dt
    duration = float(row.get("duration_s") or 0.0)
    return np.full(k - 1, duration / (k - 1) if duration > 0 else 1.0)


@dataclass
class MotionConfig:
    enabled: bool = True
    min_motion: float = 0.002   # motion_mean below this = static (still image, slideshow)
    max_motion: float = 0.0     # motion_mean above this = chaotic; 0 = no upper bound
    max_jitter: float = 0.05    # motion_jitter above this = shaky camera; 0 = no bound

    def __post_init__(self):
        for k in ("min_motion", "max_motion", "max_jitter"):
            if getattr(self, k) < 0:
                raise ValueError(f"motion: {k} must be >= 0, got {getattr(self, k)}")
        if self.max_motion and self.max_motion < self.min_motion:
            raise ValueError(f"motion: max_motion={self.max_motion} < min_motion={self.min_motion}")

    def check(self, row: dict) -> str | None:
        return first_reason(
            bound_reason("motion", "motion_mean", row.get("motion_mean"), lo=self.min_motion,
                         hi=self.max_motion or None),
            bound_reason("motion", "motion_jitter", row.get("motion_jitter"), hi=self.max_jitter or None),
        )


class MotionStage(Stage):
    name = "motion"
    inputs = ("frames", "frame_times", "duration_s")
    outputs = ("motion_mean", "motion_camera", "motion_object", "motion_jitter")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: MotionConfig | None = None):
        self.cfg = cfg or MotionConfig()

    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=16)

    def process_row(self, row: dict) -> dict:
        frames = as_frames(row.get("frames"))
        k = frames.shape[0]
        if k < 2:
            return {}  # one frame has no motion: scores stay None ("not computed")
        x0, y0, x1, y1 = crop_in_frames(row, frames)
        gray = _resize_gray(to_luma(frames[:, y0:y1, x0:x1]))  # (K, h, w)
        short = float(min(gray.shape[1:]))
        dt = pair_intervals(row, k)
        total, camera, obj, shifts = [], [], [], []
        for i in range(k - 1):
            flow = _farneback(gray[i], gray[i + 1])  # (h, w, 2)
            cam, shift = split_camera_object(flow)
            norm = short * dt[i]  # px -> fraction of short side per second
            total.append(np.linalg.norm(flow, axis=-1).mean() / norm)
            camera.append(np.linalg.norm(cam, axis=-1).mean() / norm)
            obj.append(np.linalg.norm(flow - cam, axis=-1).mean() / norm)
            shifts.append(shift / short)
        jitter = float(np.linalg.norm(np.diff(np.stack(shifts), axis=0), axis=1).mean()) if k >= 3 else None
        return {"motion_mean": float(np.mean(total)), "motion_camera": float(np.mean(camera)),
                "motion_object": float(np.mean(obj)), "motion_jitter": jitter}
