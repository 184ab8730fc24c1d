"""NudeNet's 320n region detector (a YOLOv8n trained on body-part boxes) on onnxruntime, batched.

The ONNX file ships inside the ``nudenet`` wheel (``nudenet/320n.onnx``; the wheel's metadata says MIT,
its LICENSE file is AGPL-3.0). Its classes are body
parts marked exposed or covered, plus faces; only the *exposed* sexual parts below make a frame unsafe.
Why a region detector next to open_nsfw: open_nsfw is a whole-image classifier and rates skin-coloured
close-ups (a hand, a face, a pancake) as likely NSFW; a detector has to find the body part itself.

Preprocessing is NudeNet's: pad the frame to a square with black on the right and bottom, resize to 320,
[0, 1], RGB: the order the model was trained in (Ultralytics YOLOv8). The package's own ``_read_image``
swaps channels twice (``COLOR_RGBA2BGR`` on a 3-channel image, then ``swapRB``) and so feeds BGR; its
scores differ from ours by ~0.02 on a face. The network's output is (N, 4 + 18, anchors): a box and 18 class scores per anchor.
We only need the best score per class over the frame, so we take the max over anchors; NudeNet's NMS
only removes overlapping boxes of lower score, so it cannot change that max.
"""
from __future__ import annotations

import cv2
import numpy as np

from reelforge.curate.onnx_models import ModelFileError, open_session, packaged_file

PACKAGE, MODEL_FILE = "nudenet", "320n.onnx"
INPUT_SIZE = 320

# the model's class order (nudenet/nudenet.py)
LABELS = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED", "BELLY_COVERED",
    "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE", "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED", "BUTTOCKS_COVERED",
)
# exposed parts that make footage unsafe for a general-purpose training set; exposed feet, bellies,
# armpits and male chests are ordinary beach and sports footage
UNSAFE = ("FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED",
          "ANUS_EXPOSED")
UNSAFE_IDX = np.array([LABELS.index(c) for c in UNSAFE])


class NudityDetector:
    def __init__(self, model_path: str = "", max_batch: int = 16, threads: int = 1, device: str = "auto"):
        path = model_path or packaged_file(PACKAGE, MODEL_FILE, "NudeNet detector (320n)")
        self.session = open_session(path, "NudeNet detector (320n)", threads=threads, device=device)
        self.input_name = self.session.get_inputs()[0].name
        out_shape = self.session.get_outputs()[0].shape
        if len(out_shape) != 3 or out_shape[1] != 4 + len(LABELS):
            raise ModelFileError(f"NudeNet detector (320n): model file {path} has output shape {out_shape} is not (N, {4 + len(LABELS)}, "
                             f"anchors); is this the 320n model?")
        self.max_batch = max_batch

    def class_scores(self, frames: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """N frames (H, W, 3) uint8 RGB, any sizes -> (N, 18) best score of each class in each frame."""
        x = np.stack([_letterbox(f) for f in frames])                       # (N, 3, 320, 320)
        out = [self.session.run(None, {self.input_name: x[i:i + self.max_batch]})[0]
               for i in range(0, len(x), self.max_batch)]                   # (n, 22, anchors) each
        return np.concatenate(out)[:, 4:, :].max(axis=2)                    # (N, 18)


def worst_exposed(class_scores: np.ndarray) -> tuple[float, str]:
    """(n, 18) class scores of n >= 1 frames -> the highest unsafe-class score and that class."""
    unsafe = class_scores[:, UNSAFE_IDX]                                    # (n, len(UNSAFE))
    best = np.unravel_index(np.argmax(unsafe), unsafe.shape)
    return float(unsafe[best]), UNSAFE[best[1]]


def _letterbox(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3, 320, 320) float32: padded to a square at the bottom/right, as NudeNet does."""
    h, w = frame.shape[:2]
    side = max(h, w)
    square = cv2.copyMakeBorder(frame, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    # NudeNet's own call (it swaps its BGR input to RGB here; ours is RGB already)
    return cv2.dnn.blobFromImage(square, 1 / 255.0, (INPUT_SIZE, INPUT_SIZE), (0, 0, 0), swapRB=False, crop=False)[0]
