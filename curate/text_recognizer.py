"""Learned text recognition: PaddleOCR's PP-OCRv4 recogniser (a CTC line reader) on onnxruntime.

The text_overlay stage does not need to know what a line says; it uses the reader as a second opinion
on boxes the detector is unsure of (``text_detector.TextDetector``): a DB-net box over dark rocks in a
snow field scores like a subtitle over a checkerboard (0.59 both), but the reader reads the subtitle
("Where were you last night?", confidence 0.99) and finds one stray symbol in the rocks ("#", 0.16).

The ONNX file ships inside the ``rapidocr-onnxruntime`` wheel (``models/ch_PP-OCRv4_rec_infer.onnx``,
with its 6,623-character dictionary in the model's metadata). Preprocessing is PaddleOCR's: the box is
cut out of the frame upright (``crop_box``), scaled to 48 px high keeping its aspect, BGR in [-1, 1],
right-padded with zeros to the widest crop of its batch (at least 320 px); CTC greedy decoding, the
confidence being the mean probability of the characters read.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from reelforge.curate.onnx_models import ModelFileError, open_session, packaged_file

PACKAGE, MODEL_FILE = "rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx"
WHAT = "text recogniser (PP-OCRv4 rec)"
HEIGHT, MIN_WIDTH = 48, 320  # PaddleOCR's rec_image_shape [3, 48, 320]


def crop_box(img: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The (4, 2) rectangle ``box`` (any corner order) of an (H, W, 3) image, warped upright; a crop at
    least 1.5x taller than wide is turned a quarter (vertical lines read left to right), as PaddleOCR
    does."""
    pts = _clockwise(box.astype(np.float32))                          # tl, tr, br, bl
    w = max(1, int(max(np.linalg.norm(pts[0] - pts[1]), np.linalg.norm(pts[2] - pts[3]))))
    h = max(1, int(max(np.linalg.norm(pts[0] - pts[3]), np.linalg.norm(pts[1] - pts[2]))))
    m = cv2.getPerspectiveTransform(pts, np.float32([[0, 0], [w, 0], [w, h], [0, h]]))
    crop = cv2.warpPerspective(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC)
    return np.ascontiguousarray(np.rot90(crop)) if h >= 1.5 * w else crop


def _clockwise(pts: np.ndarray) -> np.ndarray:
    """Corners ordered top-left, top-right, bottom-right, bottom-left (PaddleOCR's get_mini_boxes)."""
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    left, right = left[np.argsort(left[:, 1])], right[np.argsort(right[:, 1])]
    return np.stack([left[0], right[0], right[1], left[1]])


def ctc_greedy(probs: np.ndarray) -> list[tuple[list[int], float]]:
    """(N, T, C) per-step class probabilities (class 0 = CTC blank) -> per line the character ids read
    (repeats merged, blanks dropped) and their mean probability (0 when nothing is read)."""
    idx, p = probs.argmax(2), probs.max(2)                            # (N, T) each
    keep = np.ones_like(idx, dtype=bool)
    keep[:, 1:] = idx[:, 1:] != idx[:, :-1]
    keep &= idx != 0
    return [(idx[i][keep[i]].tolist(), float(p[i][keep[i]].mean()) if keep[i].any() else 0.0)
            for i in range(len(idx))]


class TextRecognizer:
    """PP-OCRv4 line recognition on batches of crops."""

    def __init__(self, model_path: str = "", max_batch: int = 16, threads: int = 1, device: str = "auto"):
        path = model_path or packaged_file(PACKAGE, MODEL_FILE, WHAT)
        self.session = open_session(path, WHAT, threads=threads, device=device)
        meta = self.session.get_modelmeta().custom_metadata_map
        if "character" not in meta:
            raise ModelFileError(f"{WHAT}: model file {path} has no 'character' dictionary in its metadata; "
                                 f"is this a PP-OCR recognition model?")
        # CTC blank first and a space last, as PaddleOCR's CTCLabelDecode builds it
        self.charset = ["", *meta["character"].splitlines(), " "]
        self.input_name = self.session.get_inputs()[0].name
        self.max_batch = max_batch

    def read(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(h, w, 3) uint8 RGB crops, one text line each -> (text, confidence in [0, 1]) per crop."""
        ratios = np.array([c.shape[1] / max(1, c.shape[0]) for c in crops])
        order = np.argsort(ratios)  # similar widths share a batch: less padding
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for s in range(0, len(crops), self.max_batch):
            idx = order[s:s + self.max_batch]
            width = max(MIN_WIDTH, math.ceil(HEIGHT * ratios[idx].max()))
            x = np.zeros((len(idx), 3, HEIGHT, width), np.float32)        # (n, 3, 48, W)
            for j, i in enumerate(idx):
                w = min(width, math.ceil(HEIGHT * ratios[i]))
                line = cv2.resize(crops[i], (w, HEIGHT))[..., ::-1]      # RGB -> BGR (Paddle's order)
                x[j, :, :, :w] = line.transpose(2, 0, 1) / 127.5 - 1.0
            probs = self.session.run(None, {self.input_name: x})[0]       # (n, W / 8, 6625)
            for i, (ids, conf) in zip(idx, ctc_greedy(probs)):
                out[i] = ("".join(self.charset[c] for c in ids if c < len(self.charset)), conf)
        return out
