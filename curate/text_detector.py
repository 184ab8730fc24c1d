"""Learned text detection: PaddleOCR's PP-OCRv4 detector (a DB-net) on onnxruntime, its boxes confirmed
by reading them.

The ONNX file ships inside the ``rapidocr-onnxruntime`` wheel (``models/ch_PP-OCRv4_det_infer.onnx``);
we load it ourselves so frames go through in batches (the package's API takes one image at a time).
Recognition never runs on whole frames, only on the boxes found (below).

The network outputs a per-pixel text probability map at its input resolution. DB post-processing, as
in PaddleOCR (``DBPostProcess``): binarise the map at ``thresh``, dilate 2x2, take each contour's
minimum-area rectangle, keep it when the mean probability inside it reaches ``box_thresh``, then
"unclip" it: DB is trained on text regions shrunk by ``area * (1 - r^2) / perimeter``, so detections are
grown back by ``area * unclip_ratio / perimeter`` on every side. PaddleOCR offsets the polygon with
pyclipper and takes the minimum-area rectangle of the result; for a rectangle that is the same
rectangle grown by 2d in width and height, which is what we do, without pyclipper or shapely.

The box score alone cannot separate every case at one threshold: a subtitle over a high-contrast
checkerboard and dark rocks in a snowy Sintel shot both score 0.59. So a box found at ``box_thresh``
(rapidocr's 0.5) is a candidate: unless it scores ``sure_box_thresh`` or more, it is cut out of the
frame and read by PP-OCRv4's recogniser (``text_recognizer.py``), and it counts only when the reader
reads it with mean confidence ``min_read_score`` or more (PaddleOCR's ``drop_score``, 0.5: the level
below which PaddleOCR itself discards a read line). Reading costs CPU in proportion to the line's
length (37 ms for a 48 x 320 input, 79 ms at 48 x 480; the detector: 49 ms a 256 x 455 frame), so only
a window of at most ``max_read_ratio`` box heights around the line's centre is read (enough to tell
lettering from rocks), and a box at the place of one already read in the same clip is not read again.
Text-free clips mostly have no box at all, so they cost what detection alone did.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from reelforge.curate.onnx_models import open_session, packaged_file
from reelforge.curate.text_recognizer import TextRecognizer, crop_box

PACKAGE, MODEL_FILE = "rapidocr_onnxruntime", "models/ch_PP-OCRv4_det_infer.onnx"
MIN_SIDE = 3  # px on the probability map: thinner components are noise (PaddleOCR's min_size)


@dataclass(frozen=True)
class FrameText:
    """Text found in one frame; areas are fractions of the frame."""

    boxes: np.ndarray      # (n, 4, 2) float32 corners in frame pixels
    scores: np.ndarray     # (n,) mean text probability inside each box
    area: float            # union of the boxes / frame area
    largest: float         # largest single box / frame area


def det_size(h: int, w: int, short_side: int) -> tuple[int, int]:
    """(h, w) of the network input: short side scaled to ``short_side``, both sides multiples of 32
    (the DB-net's stride)."""
    s = short_side / min(h, w)
    return max(32, int(round(h * s / 32)) * 32), max(32, int(round(w * s / 32)) * 32)


def boxes_from_map(prob: np.ndarray, thresh: float, box_thresh: float, unclip_ratio: float,
                   max_candidates: int, min_aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) float probability map -> (n, 4, 2) float32 rectangles in map pixels, (n,) scores.

    Rectangles whose long side is under ``min_aspect`` times the short side are dropped: a line of text
    is long, while the DB-net's false positives on real footage are blobs (a face in a dark frame
    scored 0.80 over a square box of 20% of the frame). The price is a lone character in a box.
    """
    bitmap = cv2.dilate((prob > thresh).astype(np.uint8), np.ones((2, 2), np.uint8))
    contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    h, w = prob.shape
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        (cx, cy), (rw, rh), angle = cv2.minAreaRect(contour)
        if min(rw, rh) < MIN_SIDE or max(rw, rh) < min_aspect * min(rw, rh):
            continue
        pts = cv2.boxPoints(((cx, cy), (rw, rh), angle))  # (4, 2)
        score = _mean_inside(prob, pts)
        if score < box_thresh:
            continue
        d = rw * rh * unclip_ratio / (2 * (rw + rh))
        if min(rw, rh) + 2 * d < MIN_SIDE + 2:
            continue
        grown = cv2.boxPoints(((cx, cy), (rw + 2 * d, rh + 2 * d), angle))
        grown[:, 0] = np.clip(grown[:, 0], 0, w)
        grown[:, 1] = np.clip(grown[:, 1], 0, h)
        boxes.append(grown)
        scores.append(score)
    if not boxes:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(boxes).astype(np.float32), np.array(scores, np.float32)


def _mean_inside(prob: np.ndarray, pts: np.ndarray) -> float:
    """Mean of ``prob`` inside the polygon ``pts`` (PaddleOCR's "fast" box score)."""
    h, w = prob.shape
    x0, y0 = np.clip(np.floor(pts.min(0)).astype(int), 0, [w - 1, h - 1])
    x1, y1 = np.clip(np.ceil(pts.max(0)).astype(int), 0, [w - 1, h - 1])
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    cv2.fillPoly(mask, [np.round(pts - [x0, y0]).astype(np.int32)], 1)
    return float(cv2.mean(prob[y0:y1 + 1, x0:x1 + 1], mask)[0])


def frame_text(boxes: np.ndarray, scores: np.ndarray, h: int, w: int) -> FrameText:
    """Union and largest-box areas of ``boxes`` (frame pixels) in an (h, w) frame."""
    if len(boxes) == 0:
        return FrameText(boxes, scores, 0.0, 0.0)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, list(np.round(boxes).astype(np.int32)), 1)
    largest = max(cv2.contourArea(b) for b in boxes) / float(h * w)
    return FrameText(boxes, scores, float(mask.mean()), float(min(1.0, largest)))


def centre_window(crop: np.ndarray, max_ratio: float) -> np.ndarray:
    """The middle of an (h, w, 3) line crop, at most ``max_ratio * h`` wide."""
    h, w = crop.shape[:2]
    keep = max(1, int(round(max_ratio * h)))
    return crop if w <= keep else crop[:, (w - keep) // 2:(w - keep) // 2 + keep]


class TextDetector:
    """PP-OCRv4 text detection on batches of frames, candidates confirmed by reading them.

    ``short_side`` sets the network input (the frame's short side is scaled to it): the cost grows with
    its square; subtitles at 256 px are ~10 px tall, which the detector still finds. Boxes found at
    ``box_thresh`` count when they score ``sure_box_thresh`` or more, or when the recogniser reads them
    at ``min_read_score`` or more; ``sure_box_thresh <= box_thresh`` turns reading off (the recogniser
    is then not even loaded). ``read``/``confirmed`` count the boxes read and accepted.
    """

    def __init__(self, model_path: str = "", short_side: int = 256, thresh: float = 0.3,
                 box_thresh: float = 0.5, sure_box_thresh: float = 1.0, min_read_score: float = 0.5,
                 max_read_ratio: float = 10.0, rec_model_path: str = "", unclip_ratio: float = 1.5,
                 min_aspect: float = 1.5,
                 max_candidates: int = 300,
                 max_batch: int = 16, threads: int = 1, device: str = "auto"):
        path = model_path or packaged_file(PACKAGE, MODEL_FILE, "text detector (PP-OCRv4 det)")
        self.session = open_session(path, "text detector (PP-OCRv4 det)", threads=threads, device=device)
        self.input_name = self.session.get_inputs()[0].name
        self.short_side, self.max_batch = short_side, max_batch
        self.sure_box_thresh, self.min_read_score, self.max_read_ratio = sure_box_thresh, min_read_score, max_read_ratio
        self.post = dict(thresh=thresh, box_thresh=box_thresh, unclip_ratio=unclip_ratio,
                         max_candidates=max_candidates, min_aspect=min_aspect)
        self.reader = None
        if sure_box_thresh > box_thresh:
            self.reader = TextRecognizer(rec_model_path, max_batch=max_batch, threads=threads, device=device)
        self.read = self.confirmed = 0

    def probability(self, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB, one size -> (N, h, w) float32 text probability at the network size."""
        n, h, w = frames.shape[:3]
        dh, dw = det_size(h, w, self.short_side)
        # PaddleOCR models are trained on BGR (cv2.imread) normalised to [-1, 1]
        x = np.stack([cv2.resize(f, (dw, dh), interpolation=cv2.INTER_AREA if dh < h else cv2.INTER_LINEAR)
                      for f in frames])[..., ::-1]                         # (N, dh, dw, 3) BGR
        x = (x.astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)    # (N, 3, dh, dw)
        out = [self.session.run(None, {self.input_name: np.ascontiguousarray(x[i:i + self.max_batch])})[0]
               for i in range(0, n, self.max_batch)]
        return np.concatenate(out)[:, 0]                                    # (N, dh, dw)

    def detect(self, frames: np.ndarray, clips: list | None = None) -> list[FrameText]:
        """(N, H, W, 3) uint8 RGB frames of one size -> the text in each frame, in frame pixels.

        ``clips`` (N,) names the clip of each frame: a box read in one frame of a clip settles the boxes
        at the same place in its other frames (burnt-in text stays put; so does a rock in a still shot),
        so static text is read once per clip, not once per frame. None: every frame is its own clip."""
        return self.confirm(frames, self.candidates(frames), clips)

    def candidates(self, frames: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(N, H, W, 3) uint8 RGB frames of one size -> per frame the boxes found at ``box_thresh``
        ((n, 4, 2) float32 in frame pixels) and their scores, before any is read: the network's part."""
        h, w = frames.shape[1:3]
        probs = self.probability(frames)
        sy, sx = h / probs.shape[1], w / probs.shape[2]
        found = []
        for prob in probs:
            boxes, scores = boxes_from_map(prob, **self.post)
            found.append((boxes * np.array([sx, sy], np.float32), scores))
        return found

    def confirm(self, frames: np.ndarray, found: list, clips: list | None = None) -> list[FrameText]:
        """``candidates(frames)`` -> the text in each frame (boxes the reader confirms); ``clips`` as in
        ``detect``."""
        h, w = frames.shape[1:3]
        if self.reader is not None:
            found = self._confirm(frames, found, list(range(len(frames))) if clips is None else list(clips))
        return [frame_text(boxes, scores, h, w) for boxes, scores in found]

    def _confirm(self, frames: np.ndarray, found: list, clips: list) -> list:
        """Drop the boxes under ``sure_box_thresh`` that the recogniser cannot read. A box overlapping
        (IoU >= 0.5) one already queued in its clip takes that box's verdict; the crops of all frames go
        through the reader together."""
        queued: list[tuple[int, int]] = []        # (frame, box) to read
        verdict_of: dict[tuple[int, int], int] = {}  # (frame, box) -> index into queued
        for f, (boxes, scores) in enumerate(found):
            for b in np.flatnonzero(scores < self.sure_box_thresh):
                same = next((q for q, (g, c) in enumerate(queued)
                             if clips[g] == clips[f] and _iou(found[g][0][c], boxes[b]) >= 0.5), None)
                if same is None:
                    queued.append((f, b))
                    same = len(queued) - 1
                verdict_of[(f, b)] = same
        if not queued:
            return found
        reads = self.reader.read([centre_window(crop_box(frames[f], found[f][0][b]), self.max_read_ratio)
                                  for f, b in queued])
        ok = [bool(text.strip()) and conf >= self.min_read_score for text, conf in reads]
        self.read += len(queued)
        self.confirmed += sum(ok)
        out = []
        for f, (boxes, scores) in enumerate(found):
            keep = np.array([ok[verdict_of[(f, b)]] if (f, b) in verdict_of else True
                             for b in range(len(boxes))], bool)
            out.append((boxes[keep].reshape(-1, 4, 2), scores[keep]))
        return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the axis-aligned bounds of two (4, 2) boxes."""
    (ax0, ay0), (ax1, ay1) = a.min(0), a.max(0)
    (bx0, by0), (bx1, by1) = b.min(0), b.max(0)
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return float(inter / union) if union > 0 else 0.0
