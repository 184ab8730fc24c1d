"""Exposure and sharpness: flag dark, blown-out and blurry clips from the sampled frames.

Everything is measured inside the borders stage's crop box (when it ran first), so letterbox bars are
neither "dark pixels" nor "sharp edges".

Two sharpness columns:
- ``laplacian_var``: the classic focus measure (variance of the Laplacian), per tile of a 4x4 grid,
  90th percentile over tiles, median over frames, at a 128-px short side. Kept for reference and
  comparison with other pipelines; it mostly measures *contrast*: on the sample generator's shots a
  4-px-blurred stripe pattern scores ~850 while sharp smooth gradients score ~200.
- ``sharpness`` (what the filter uses): inverse edge width. At the strongest edges (top 10% of gradient
  magnitude) it divides the gradient by the local intensity range (15x15 window) and takes the median:
  a step edge blurred by a Gaussian of sigma px has slope range/(2.5 sigma), so the score ~ 1/(2.5 sigma)
  per px whatever the edge contrast. Unlike a Laplacian ratio it does not rise with codec ringing
  (generated shots score the same raw, H.264 and MPEG-4 to +-0.03). Measured at the sampled frames' own
  size (short side <= 256) because resizing would itself change the blur. Calibration: generated sharp
  shots 0.15-0.44, the same blurred with sigma 4 px 0.07-0.105; Sintel trailer shots 0.118-0.179, after a
  sigma-2 blur 0.096-0.126. Known blind spot: a fine periodic pattern (the generator's stripes) blurs
  into a lower-contrast sinusoid and keeps its score; its contrast drop shows in ``laplacian_var``.
  A frame with no edges has no sharpness (None), and a clip whose frames all lack edges is not judged.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reelforge.curate.stage import Resources, Stage
from reelforge.curate.stages.common import as_frames, bound_reason, crop_in_frames, first_reason, to_luma

DARK_PIXEL = 0.1     # luma below this is "crushed"
BRIGHT_PIXEL = 0.95  # luma above this is "clipped"
TILES = 4
LAPLACIAN_SHORT_SIDE = 128
MIN_EDGE_SLOPE = 2.0     # intensity/px below which nothing is an edge (encoder noise, smooth gradients)
MIN_EDGE_RANGE = 20.0    # an edge must separate levels at least this far apart (8-bit)
EDGE_WINDOW = 15         # px; wider than the blur it should measure (sigma 4 spans ~ +-8 px)
MIN_EDGE_PIXELS = 50


def laplacian_var(gray_u8: np.ndarray) -> float:
    """(H, W) uint8 -> 90th percentile over a TILES x TILES grid of the Laplacian variance (128-px short side)."""
    h, w = gray_u8.shape
    scale = LAPLACIAN_SHORT_SIDE / min(h, w)
    if abs(scale - 1.0) > 1e-3:
        gray_u8 = cv2.resize(gray_u8, (max(8, round(w * scale)), max(8, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(gray_u8, cv2.CV_32F, ksize=3)  # (H', W')
    th, tw = lap.shape[0] // TILES, lap.shape[1] // TILES
    tiles = lap[: th * TILES, : tw * TILES].reshape(TILES, th, TILES, tw)
    return float(np.percentile(tiles.var(axis=(1, 3)), 90))


def edge_sharpness(gray: np.ndarray) -> float | None:
    """(H, W) float32 luma in [0, 255] -> median slope/range at the strongest edges (~1/(2.5 blur sigma)),
    or None when the frame has too few edges to judge."""
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3) / 8.0  # Sobel sums 8x the per-pixel slope
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    grad = np.hypot(gx, gy)  # (H, W) intensity per px
    window = np.ones((EDGE_WINDOW, EDGE_WINDOW), np.uint8)
    spread = cv2.dilate(gray, window) - cv2.erode(gray, window)  # (H, W) local max - min
    edges = (grad > max(float(np.percentile(grad, 90)), MIN_EDGE_SLOPE)) & (spread > MIN_EDGE_RANGE)
    if edges.sum() < MIN_EDGE_PIXELS:
        return None
    return float(np.median(grad[edges] / spread[edges]))


@dataclass
class ExposureConfig:
    enabled: bool = True
    # score clips this filter removes with the model stages too (text, nsfw, CLIP: the costly part), so that a
    # --refilter that loosens this filter can re-decide them; false: left unscored (curate/stage.py REMOVED_EARLY)
    score_removed: bool = False
    min_mean: float = 0.08          # mean luma in [0, 1]; below = too dark
    max_mean: float = 0.92          # above = washed out
    max_dark_frac: float = 0.95     # fraction of pixels with luma < 0.1
    max_bright_frac: float = 0.6    # fraction of pixels with luma > 0.95 (blown-out highlights)
    # inverse edge width, ~1/(2.5 blur sigma) per px; see the module docstring for the calibration
    min_sharpness: float = 0.11

    def __post_init__(self):
        for k in ("min_mean", "max_mean", "max_dark_frac", "max_bright_frac"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"exposure: {k} must be in [0, 1], got {v}")
        if self.min_mean >= self.max_mean:
            raise ValueError(f"exposure: min_mean={self.min_mean} must be < max_mean={self.max_mean}")
        if not 0.0 <= self.min_sharpness <= 1.0:
            # a step edge scores 0.5 (0.71 on a diagonal): anything above 1 would drop every clip
            raise ValueError(f"exposure: min_sharpness is an inverse edge width in 1/px and must be in [0, 1], "
                             f"got {self.min_sharpness} (Laplacian-variance thresholds apply to the "
                             f"laplacian_var column, which is not filtered on)")

    def check(self, row: dict) -> str | None:
        return first_reason(
            bound_reason("exposure", "exposure_mean", row.get("exposure_mean"), lo=self.min_mean, hi=self.max_mean),
            bound_reason("exposure", "exposure_dark_frac", row.get("exposure_dark_frac"), hi=self.max_dark_frac),
            bound_reason("exposure", "exposure_bright_frac", row.get("exposure_bright_frac"),
                         hi=self.max_bright_frac),
            bound_reason("exposure", "sharpness", row.get("sharpness"), lo=self.min_sharpness),
        )


class ExposureStage(Stage):
    name = "exposure"
    removes_early = True  # its removals are not scored by the model stages (score_removed)
    inputs = ("frames",)
    outputs = ("exposure_mean", "exposure_dark_frac", "exposure_bright_frac", "sharpness", "laplacian_var")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: ExposureConfig | None = None):
        self.cfg = cfg or ExposureConfig()

    @classmethod
    def resources(cls, cfg: ExposureConfig | None = None) -> Resources:
        return Resources(num_cpus=1, batch_size=32)

    def process_row(self, row: dict) -> dict:
        frames = as_frames(row.get("frames"))
        x0, y0, x1, y1 = crop_in_frames(row, frames)
        frames = frames[:, y0:y1, x0:x1]
        luma = to_luma(frames)  # (K, h, w) in [0, 1]
        gray = np.clip(luma * 255.0 + 0.5, 0, 255).astype(np.uint8)  # (K, h, w)
        sharp = [v for v in (edge_sharpness(g.astype(np.float32)) for g in gray) if v is not None]
        return {
            "exposure_mean": float(luma.mean()),
            "exposure_dark_frac": float((luma < DARK_PIXEL).mean()),
            "exposure_bright_frac": float((luma > BRIGHT_PIXEL).mean()),
            "sharpness": float(np.median(sharp)) if sharp else None,
            "laplacian_var": float(np.median([laplacian_var(g) for g in gray])),
        }
