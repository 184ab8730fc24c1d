"""Exposure and sharpness: flag dark, blown-out and blurry clips from the sampled frames.

Everything is measured inside the borders stage's crop box (when it ran first), so letterbox bars are
neither "dark pixels" nor "sharp edges".

Sharpness is the variance of the Laplacian (the classic focus measure), taken per tile: the frame is cut
into a TILES x TILES grid and the score is the 90th percentile of tile variances, median over frames.
A whole-frame variance punishes sparse content: one crisp object on a flat background averages down to
"blurry". The per-tile percentile asks instead "is the sharpest part of the picture sharp?", which is
what out-of-focus and heavily compressed footage fails. Frames are resized to a fixed short side first
so the score does not depend on the sampled frame size.
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
SHARPNESS_SHORT_SIDE = 128


def laplacian_sharpness(gray_u8: np.ndarray) -> float:
    """(H, W) uint8 -> 90th percentile over a TILES x TILES grid of the Laplacian variance."""
    h, w = gray_u8.shape
    scale = SHARPNESS_SHORT_SIDE / min(h, w)
    if abs(scale - 1.0) > 1e-3:
        gray_u8 = cv2.resize(gray_u8, (max(8, round(w * scale)), max(8, round(h * scale))),
                             interpolation=cv2.INTER_AREA)
    lap = cv2.Laplacian(gray_u8, cv2.CV_32F, ksize=3)  # (H', W')
    th, tw = lap.shape[0] // TILES, lap.shape[1] // TILES
    tiles = lap[: th * TILES, : tw * TILES].reshape(TILES, th, TILES, tw)
    variances = tiles.var(axis=(1, 3))  # (TILES, TILES)
    return float(np.percentile(variances, 90))


@dataclass
class ExposureConfig:
    enabled: bool = True
    min_mean: float = 0.08          # mean luma in [0, 1]; below = too dark
    max_mean: float = 0.92          # above = washed out
    max_dark_frac: float = 0.95     # fraction of pixels with luma < 0.1
    max_bright_frac: float = 0.6    # fraction of pixels with luma > 0.95 (blown-out highlights)
    # Laplacian variance (8-bit units, 128-px short side). Calibrated on generated frames
    # (tests/curate/test_filter_exposure.py): sharp textured content scores in the hundreds or more,
    # a Gaussian blur with sigma 3 at 256 px brings it below 10.
    min_sharpness: float = 20.0

    def __post_init__(self):
        for k in ("min_mean", "max_mean", "max_dark_frac", "max_bright_frac"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"exposure: {k} must be in [0, 1], got {v}")
        if self.min_mean >= self.max_mean:
            raise ValueError(f"exposure: min_mean={self.min_mean} must be < max_mean={self.max_mean}")
        if self.min_sharpness < 0:
            raise ValueError("exposure: min_sharpness must be >= 0")

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
    inputs = ("frames",)
    outputs = ("exposure_mean", "exposure_dark_frac", "exposure_bright_frac", "sharpness")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: ExposureConfig | None = None):
        self.cfg = cfg or ExposureConfig()

    def resources(self) -> Resources:
        return Resources(num_cpus=1, batch_size=32)

    def process_row(self, row: dict) -> dict:
        frames = as_frames(row.get("frames"))
        x0, y0, x1, y1 = crop_in_frames(row, frames)
        frames = frames[:, y0:y1, x0:x1]
        luma = to_luma(frames)  # (K, h, w) in [0, 1]
        gray = np.clip(luma * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return {
            "exposure_mean": float(luma.mean()),
            "exposure_dark_frac": float((luma < DARK_PIXEL).mean()),
            "exposure_bright_frac": float((luma > BRIGHT_PIXEL).mean()),
            "sharpness": float(np.median([laplacian_sharpness(g) for g in gray])),
        }
