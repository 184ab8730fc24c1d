"""Motion: dense optical flow between consecutive sampled frames; flags static and jittery clips.

Flow is OpenCV DIS (dense inverse search) on frames downscaled to a 128-px short side, inside the crop
box. DIS rather than Farneback because sampled frames are far apart (K frames over the clip, often
0.3-1 s): on generated pans of 20 px at 128 px Farneback collapses to ~0 while DIS recovers the shift,
and Farneback misses small objects on flat backgrounds entirely. Flow in textureless pixels is not
observable (any flow explains a flat wall), and DIS fills it with propagated garbage, so only pixels
where a frame has a gradient are trusted. For each pair a similarity transform (shift, rotation, zoom)
is fit to the trusted flow with RANSAC: that is the camera, and flat pixels are taken to move with it.
What the camera model does not explain is object motion. Units are chosen to be independent of frame size and sampling rate:

- ``motion_mean`` / ``motion_camera`` / ``motion_object``: mean displacement per second as a fraction of
  the frame's short side (0.1 = a tenth of the frame height per second in landscape video).
- ``motion_jitter``: how far the camera moves *back* between consecutive pairs (see
  :func:`back_and_forth`), as a fraction of the short side (not per second: shake is an amplitude, not
  a speed). Pans, even fast action whip pans, score ~0; a hand-held shake scores its wobble. Sampled
  frames are far apart, so this sees slow wobble, not high-frequency vibration.

Calibration on the sample generator's demo shots (raw and H.264-encoded, 8 frames per shot) and on the
Sintel trailer's shots (tests/curate/test_filter_motion.py checks the generated ones):

  shot                                   motion_mean        motion_jitter
  static (slideshow, 4 backgrounds)      <= 4e-5            0
  object, 1.5-2 px/frame at 320 px       0.0026 - 0.010     < 1e-4
  pan over textured backgrounds          0.27 - 0.33        0
  pan over a smooth gradient             0.001 - 0.004      0   (little to see: reads as near-still)
  jitter (generator's hand-held shake)   0.065 - 0.072      0.0097 - 0.0127
  Sintel trailer shots                   0.012 - 0.76       0 - 0.013 (one 1-s action shot)

so ``min_motion`` = 0.0005 and ``max_jitter`` = 0.008. Open-Sora-Plan's LPIPS window (0.001-0.3) and
NeMo Curator's global flow mean (0.00098, px per frame at its own resolution) are in other units and
do not transfer directly.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reelforge.curate.stage import Resources, Stage
from reelforge.curate.stages.common import as_frames, bound_reason, crop_in_frames, first_reason, to_luma

FLOW_SHORT_SIDE = 128
GRID_STEP = 4  # px between the flow samples the camera model is fit to
# Sobel (3x3, 8-bit) magnitude below which a pixel is "flat"; encoder noise stays well under it
TEXTURE_GRADIENT = 24.0
MIN_CAMERA_POINTS = 24
# phase-correlation peak below this is no single global shift (object motion, scene change)
PHASE_MIN_RESPONSE = 0.2
# the global shift must cut the mean frame difference to this fraction to be used
SHIFT_GAIN = 0.7


def _resize_gray(luma: np.ndarray) -> np.ndarray:
    """(K, h, w) luma in [0, 1] -> (K, h', w') uint8 with short side FLOW_SHORT_SIDE (never upscaled)."""
    k, h, w = luma.shape
    scale = min(1.0, FLOW_SHORT_SIDE / min(h, w))
    size = (max(16, round(w * scale)), max(16, round(h * scale)))
    gray = np.clip(luma * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in gray])


def _textured(gray: np.ndarray) -> np.ndarray:
    """(h, w) uint8 -> bool mask of pixels whose Sobel gradient magnitude exceeds TEXTURE_GRADIENT."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy) > TEXTURE_GRADIENT


def dense_flow(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) uint8 x2 -> (flow (h, w, 2) px with textureless pixels zeroed, textured mask (h, w)).

    A global shift from phase correlation is removed first and added back: DIS's pyramid alone lost a
    20-px pan on one generated pair in seven, phase correlation finds such shifts to a tenth of a pixel.
    """
    h, w = a.shape
    window = cv2.createHanningWindow((w, h), cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(a.astype(np.float32), b.astype(np.float32), window)
    if response < PHASE_MIN_RESPONSE or np.hypot(dx, dy) < 0.5:
        dx = dy = 0.0
    else:  # b_shifted(x) = b(x + d): what is left between a and b_shifted is small
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        shifted = cv2.warpAffine(b, shift, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
        # Periodic texture (stripes, checkers) aliases: a moving object can win the correlation while
        # the background matches one period off. Keep the shift only if it clearly explains the pair.
        m = int(np.ceil(max(abs(dx), abs(dy)))) + 1
        inner = (slice(m, h - m), slice(m, w - m))
        if 2 * m >= min(h, w):  # a shift as large as the picture (an 8x8 source): nothing left to compare
            err_still, err_shift = 0.0, 1.0
        else:
            err_still = cv2.absdiff(a, b)[inner].mean()
            err_shift = cv2.absdiff(a, shifted)[inner].mean()
        if err_shift < SHIFT_GAIN * err_still:
            b = shifted
        else:
            dx = dy = 0.0
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # cheap; cv2 objects do not pickle
    flow = dis.calc(a, b, None)
    flow[..., 0] += dx
    flow[..., 1] += dy
    textured = _textured(a) | _textured(b)
    flow[~textured] = 0.0
    return flow, textured


def split_camera_object(flow: np.ndarray, textured: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 2) flow, (h, w) mask -> (camera flow (h, w, 2), camera translation (2,) px).

    The similarity transform is fit with RANSAC to flow at textured grid points, plus flat points on a
    4x sparser grid that vote for "no motion": flat regions cannot show a pan, so they only tip the fit
    towards a still camera when the textured evidence is a small moving object on a plain background.
    """
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[GRID_STEP // 2:h:GRID_STEP, GRID_STEP // 2:w:GRID_STEP]
    ys, xs = ys.ravel(), xs.ravel()
    tex = textured[ys, xs]
    sparse = ((ys // GRID_STEP) % 4 == 0) & ((xs // GRID_STEP) % 4 == 0) & ~tex
    keep = tex | sparse
    zero = np.zeros(2, dtype=np.float32)
    if tex.sum() < MIN_CAMERA_POINTS:
        return np.zeros_like(flow), zero
    src = np.stack([xs[keep], ys[keep]], axis=1).astype(np.float32)  # (P, 2)
    dst = src + flow[ys[keep], xs[keep]]
    model, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if model is None:
        return np.zeros_like(flow), zero
    model = model.astype(np.float32)
    # camera(x, y) = model @ (x, y, 1) - (x, y), by broadcasting a row and a column of coordinates:
    # the same values as a (h, w, 3) @ (3, 2) product, without building the (h, w, 3) grid per pair
    gx = np.arange(w, dtype=np.float32)[None, :]  # (1, w)
    gy = np.arange(h, dtype=np.float32)[:, None]  # (h, 1)
    camera = np.empty((h, w, 2), np.float32)
    camera[..., 0] = (model[0, 0] - 1.0) * gx + model[0, 1] * gy + model[0, 2]
    camera[..., 1] = model[1, 0] * gx + (model[1, 1] - 1.0) * gy + model[1, 2]
    centre = np.array([w / 2.0, h / 2.0, 1.0], dtype=np.float32)
    return camera, centre @ model.T - centre[:2]  # shift of the frame centre


def pair_intervals(row: dict, k: int) -> np.ndarray:
    """Seconds between consecutive sampled frames, (k-1,); from ``frame_times`` or the clip duration."""
    times = row.get("frame_times")
    if times is not None and len(times) == k:
        dt = np.diff(np.asarray(times, dtype=np.float64))
        if np.all(dt > 0):
            return dt
    duration = float(row.get("duration_s") or 0.0)
    return np.full(k - 1, duration / (k - 1) if duration > 0 else 1.0)


def back_and_forth(shifts: np.ndarray) -> float:
    """(P, 2) camera shifts of consecutive pairs -> mean distance the camera goes *back* between pairs.

    A pair counts when the camera's next move points against its last one (negative dot product), and
    then by the smaller of the two moves: a pan or a whip pan never reverses and scores 0, a shake
    reverses on about every other pair.
    """
    norms = np.linalg.norm(shifts, axis=1)  # (P,)
    reverses = (shifts[1:] * shifts[:-1]).sum(axis=1) < 0  # (P-1,)
    return float(np.where(reverses, np.minimum(norms[1:], norms[:-1]), 0.0).mean())


@dataclass
class MotionConfig:
    enabled: bool = True
    # score clips this filter removes with the model stages too (text, nsfw, CLIP: the costly part), so that a
    # --refilter that loosens this filter can re-decide them; false: left unscored (curate/stage.py REMOVED_EARLY)
    score_removed: bool = False
    min_motion: float = 0.0005  # motion_mean below this = static (still image, slideshow)
    max_motion: float = 0.0     # motion_mean above this = chaotic; 0 = no upper bound
    max_jitter: float = 0.008   # motion_jitter above this = shaky camera; 0 = no bound

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
    removes_early = True  # its removals are not scored by the model stages (score_removed)
    inputs = ("frames", "frame_times", "duration_s")
    outputs = ("motion_mean", "motion_camera", "motion_object", "motion_jitter")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: MotionConfig | None = None):
        self.cfg = cfg or MotionConfig()

    @classmethod
    def resources(cls, cfg: MotionConfig | None = None) -> Resources:
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
            flow, textured = dense_flow(gray[i], gray[i + 1])  # (h, w, 2), (h, w)
            cam, shift = split_camera_object(flow, textured)
            norm = short * dt[i]  # px -> fraction of short side per second
            # flat pixels cannot show their motion: they are taken to move with the camera
            flow = np.where(textured[..., None], flow, cam)
            total.append(np.linalg.norm(flow, axis=-1).mean() / norm)
            camera.append(np.linalg.norm(cam, axis=-1).mean() / norm)
            obj.append(np.linalg.norm(flow - cam, axis=-1).mean() / norm)
            shifts.append(shift / short)
        jitter = back_and_forth(np.stack(shifts)) if k >= 3 else None
        return {"motion_mean": float(np.mean(total)), "motion_camera": float(np.mean(camera)),
                "motion_object": float(np.mean(obj)), "motion_jitter": jitter}
