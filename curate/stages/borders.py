"""Black borders: detect letterbox (top/bottom) and pillarbox (left/right) bars and store the crop box.

A bar is a run of rows (columns) at the frame edge that is dark in *every* sampled frame. Looking at all
K frames at once is what separates a bar from a dark scene: a night sky is dark in one frame, a bar is
dark in all of them. The transcoder calls :func:`detect_letterbox` to crop when configured; this stage
records the bars of every clip so the filter (and later re-filtering) can judge them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelforge.curate.stage import Resources, Stage
from reelforge.curate.stages.common import as_frames, bound_reason, to_luma

# 8-bit luma at or below this is "black" (studio-range black is 16; noise and ringing add a little)
DARK_LEVEL = 28 / 255.0
# fraction of a row's pixels (over all frames) allowed above DARK_LEVEL: compression ringing at the
# content edge and a small channel logo in the bar should not stop a bar
BRIGHT_TOLERANCE = 0.02
# if less than this much of either dimension would remain, the clip is dark, not letterboxed
MIN_CONTENT_FRAC = 0.3


def _bar_profile(luma: np.ndarray, axis: int) -> np.ndarray:
    """(K, H, W) luma -> per-row (axis=1) or per-column (axis=2) fraction of pixels brighter than black."""
    bright = luma > DARK_LEVEL  # (K, H, W)
    other = 2 if axis == 1 else 1
    return bright.mean(axis=(0, other))  # (H,) or (W,)


def _run_from_edges(is_bar: np.ndarray) -> tuple[int, int]:
    """Length of the leading and trailing runs of True."""
    n = len(is_bar)
    content = np.flatnonzero(~is_bar)
    if len(content) == 0:
        return n, 0
    return int(content[0]), int(n - 1 - content[-1])


def detect_letterbox(frames: np.ndarray) -> tuple[int, int, int, int]:
    """Crop box ``(x0, y0, x1, y1)`` (pixel coords of ``frames``, x1/y1 exclusive) that removes black bars.

    ``frames``: (K, H, W, 3) uint8 RGB, any size. Returns the full frame ``(0, 0, W, H)`` when there are
    no bars or when the whole picture is dark (a dark scene is not a letterbox).
    """
    frames = as_frames(frames)
    k, h, w, _ = frames.shape
    if h * w > 512 * 512:  # bars are large features: a strided view keeps 4K frames cheap
        step = int(np.ceil(np.sqrt(h * w / (512 * 512))))
        sub = frames[:, ::step, ::step]
        x0, y0, x1, y1 = detect_letterbox(np.ascontiguousarray(sub))
        sh, sw = sub.shape[1:3]
        return (x0 * w // sw if x0 else 0, y0 * h // sh if y0 else 0,
                w if x1 == sw else x1 * w // sw, h if y1 == sh else y1 * h // sh)
    luma = to_luma(frames)  # (K, H, W)
    top, bottom = _run_from_edges(_bar_profile(luma, axis=1) <= BRIGHT_TOLERANCE)
    left, right = _run_from_edges(_bar_profile(luma, axis=2) <= BRIGHT_TOLERANCE)
    if h - top - bottom < MIN_CONTENT_FRAC * h or w - left - right < MIN_CONTENT_FRAC * w:
        return 0, 0, w, h
    return left, top, w - right, h - bottom


@dataclass
class BordersConfig:
    enabled: bool = True
    # score clips this filter removes with the model stages too (text, nsfw, CLIP: the costly part), so that a
    # --refilter that loosens this filter can re-decide them; false: left unscored (curate/stage.py REMOVED_EARLY)
    score_removed: bool = False
    # drop clips whose bars cover more than this fraction of the frame (2.39:1 film in 16:9 is ~0.26,
    # 4:3 pillarboxed in 16:9 is 0.25; a window-boxed clip with bars on all four sides is ~0.44)
    max_border_area: float = 0.3

    def __post_init__(self):
        if not 0.0 <= self.max_border_area <= 1.0:
            raise ValueError(f"borders: max_border_area must be in [0, 1], got {self.max_border_area}")

    def check(self, row: dict) -> str | None:
        return bound_reason("borders", "border_area", row.get("border_area"), hi=self.max_border_area)


class BordersStage(Stage):
    name = "borders"
    removes_early = True  # its removals are not scored by the model stages (score_removed)
    inputs = ("frames", "width", "height")
    # border_* are fractions of the clip's height (top/bottom) or width (left/right); crop_* are pixels
    # of the output clip (width x height), x1/y1 exclusive
    outputs = ("border_top", "border_bottom", "border_left", "border_right", "border_area",
               "crop_x0", "crop_y0", "crop_x1", "crop_y1")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: BordersConfig | None = None):
        self.cfg = cfg or BordersConfig()

    @classmethod
    def resources(cls, cfg: BordersConfig | None = None) -> Resources:
        return Resources(num_cpus=1, batch_size=32)

    def process_row(self, row: dict) -> dict:
        frames = as_frames(row.get("frames"))
        fh, fw = frames.shape[1:3]
        x0, y0, x1, y1 = detect_letterbox(frames)
        cw, ch = int(row.get("width") or fw), int(row.get("height") or fh)
        sx, sy = cw / fw, ch / fh
        return {
            "border_top": y0 / fh, "border_bottom": (fh - y1) / fh,
            "border_left": x0 / fw, "border_right": (fw - x1) / fw,
            "border_area": 1.0 - ((x1 - x0) * (y1 - y0)) / float(fw * fh),
            "crop_x0": int(round(x0 * sx)), "crop_y0": int(round(y0 * sy)),
            "crop_x1": int(round(x1 * sx)), "crop_y1": int(round(y1 * sy)),
        }
