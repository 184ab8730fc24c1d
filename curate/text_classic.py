"""The hand-written text detector that text_overlay used before the learned one (issue 11): kept as the
baseline ``bench/bench_filters.py`` measures the PP-OCRv4 detector against.

Classical stroke detection plus persistence, on CPU, no model. Rendered text is a row of high-contrast,
thin, similar-height strokes, and an overlay stays put while the scene changes, so requiring a pixel to
be text in most sampled frames rejects scene texture that moves and keeps subtitles. Its weakness, and
why it is no longer the filter: dense man-made texture (windows and rooftops of a city aerial, shelves
of boxes, machinery) is also rows of thin strokes that stay put, and read as text (issue 11).

Per frame (resized to a 256-px height): top-hat and black-hat (thin bright or dark strokes) -> Otsu
threshold -> horizontal closing joins letters into lines -> connected components kept when they look
like a line of text (height 1.5-25% of the frame, wider than 2x its height, a row through it crosses
several strokes, moderate fill). ``text_area`` is the fraction of the frame covered by pixels flagged
in at least ``persist_frac`` of the sampled frames.
"""
from __future__ import annotations

import cv2
import numpy as np

from reelforge.curate.stages.common import to_luma

WORK_HEIGHT = 256
STROKE_KERNEL = 9          # px at WORK_HEIGHT: wider than a subtitle stroke, narrower than scene shapes
MIN_CONTRAST = 40          # gradient (8-bit) below this is never a glyph edge
MIN_STROKES = 3            # strokes a box must cross to be a word, not the edge of a shape


def _crossings(patch: np.ndarray) -> int:
    """(h, w) uint8 box -> most ink/background transitions along a row near its middle (Otsu-binarised).

    A word crossed horizontally flips between ink and paper at every stroke; the edge of a shape or a
    gradient flips once or twice.
    """
    _, ink = cv2.threshold(patch, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    rows = ink[[int(patch.shape[0] * f) for f in (0.35, 0.5, 0.65)]].astype(np.int8)  # (3, w)
    return int(np.abs(np.diff(rows, axis=1)).sum(axis=1).max())


def text_mask(gray: np.ndarray) -> np.ndarray:
    """(H, W) uint8 at WORK_HEIGHT -> bool (H, W): pixels inside boxes that look like lines of text."""
    h, w = gray.shape
    # top-hat / black-hat keep bright / dark structures thinner than the kernel (strokes) and drop
    # larger shapes and their edges (checkerboards, objects, gradients)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (STROKE_KERNEL, STROKE_KERNEL))
    thin = np.maximum(cv2.morphologyEx(gray, cv2.MORPH_TOPHAT, kernel),
                      cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, kernel))
    otsu, _ = cv2.threshold(thin, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, edges = cv2.threshold(thin, max(float(otsu), MIN_CONTRAST), 255, cv2.THRESH_BINARY)
    mask = np.zeros((h, w), dtype=bool)
    # letters sit about a letter-width apart: two closing widths join small (subtitle) and large
    # (title) lettering into lines
    for join in (max(3, w // 50), max(5, w // 20)):
        lines = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (join, 1)))
        lines = cv2.morphologyEx(lines, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
        _, _, stats, _ = cv2.connectedComponentsWithStats(lines, connectivity=8)
        for x, y, bw, bh, area in stats[1:]:
            if not (0.015 * h <= bh <= 0.25 * h and bw >= 2 * bh and bw >= 0.02 * w):
                continue
            if not 0.3 <= area / float(bw * bh) <= 0.98:
                continue
            if _crossings(gray[y:y + bh, x:x + bw]) < 2 * MIN_STROKES:
                continue
            mask[y:y + bh, x:x + bw] = True
    return mask


def text_area(frames: np.ndarray, persist_frac: float = 0.5) -> float:
    """(K, H, W, 3) uint8 -> fraction of the frame covered by text that persists across frames."""
    luma = to_luma(frames)  # (K, H, W)
    k, h, w = luma.shape
    size = (max(16, round(w * WORK_HEIGHT / h)), WORK_HEIGHT)
    gray = [cv2.resize(np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8), size, interpolation=cv2.INTER_AREA)
            for f in luma]
    votes = np.mean([text_mask(g) for g in gray], axis=0)  # (H', W') fraction of frames flagging the pixel
    return float((votes >= persist_frac).mean())
