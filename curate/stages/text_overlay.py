"""Text overlays: burnt-in subtitles, captions, title cards, watermarks with lettering.

A learned text detector (PaddleOCR's PP-OCRv4 DB-net, ``curate/text_detector.py``) finds text boxes on
``frames_per_clip`` evenly spaced frames inside the borders stage's crop box; all frames of a batch of
clips go through the network together. A box counts as text only when PP-OCRv4's recogniser can
read it (or, when ``sure_box_thresh`` < 1, when the detector scores it that high): the detector's score
alone calls rocks in snow text. The reader sees only the boxes, not the frames, so text-free clips
cost almost nothing more. Score columns, all fractions of the (cropped) frame:

- ``text_area``: union of the boxes in a frame, averaged over the scored frames (subtitles that come
  and go count by how much of the clip they cover);
- ``text_boxes``: the most boxes (text lines) found in one frame;
- ``text_box_max``: the largest single box in any frame (one big title word).

Why not the hand-written stroke detector this stage used before (``curate/text_classic.py``): dense
man-made texture (city aerials, shelves, machinery) reads as text to it, and it dropped good footage
(issue 11). ``prepass`` runs it first, as a cheap gate in front of the model: a clip where it flags no
pixel in any scored frame skips the network and scores 0. It is off by default: on the labelled set it
let 19 of 42 clips skip the model (~40% of the CPU), but 3 of them had text it cannot see (big bold
lettering, whose strokes are wider than its kernel; text running sideways), and recall fell from 1.00
to 0.82 (BENCHMARKS.md).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from reelforge.curate.stage import Batch, Resources, Stage, batch_len, error_reason, row_at, rows_to_batch
from reelforge.curate.stages.common import as_frames, bound_reason, crop_in_frames, first_reason
from reelforge.curate.stages.nsfw import pick_frames

SCORES = ("text_area", "text_boxes", "text_box_max")


@dataclass
class TextOverlayConfig:
    enabled: bool = True
    # mean share of the frame covered by text boxes; one line of subtitles at the bottom is ~0.02-0.06,
    # a small title card's line ~0.015; a one- or two-word corner watermark (0.002-0.009) passes
    max_text_area: float = 0.01
    max_text_boxes: int = 0        # most text lines in one frame; 0 = no limit
    max_text_box: float = 1.0      # largest single box share; 1 = no limit
    frames_per_clip: int = 4       # evenly spaced among the K sampled frames
    # network input short side (x32); cost grows with its square. 320 found "text" in snow and ruins
    short_side: int = 256
    # mean text probability inside a box to keep it as a candidate (rapidocr's DB default)
    box_thresh: float = 0.5
    # candidates scoring under sure_box_thresh count only when PP-OCRv4's recogniser reads them with
    # confidence >= min_read_score (PaddleOCR's drop_score). The box score cannot tell text from texture:
    # dark rocks in a snowy Sintel shot and a subtitle over a checkerboard both score 0.59 (the reader:
    # 0.16 and 0.99), and a re-encoded snow shot gave a 0.67 box over 10% of the frame (read: 0.13).
    # 1 = read every box; <= box_thresh = read none (the recogniser is not loaded)
    sure_box_thresh: float = 1.0
    min_read_score: float = 0.5
    max_read_ratio: float = 10.0   # read at most this many box heights of a line, around its centre
    min_aspect: float = 1.5        # long/short side of a box to count as a line of text
    prepass: bool = False          # hand-written detector as a gate: no stroke found -> skip the model
    model_path: str = ""           # empty: the PP-OCRv4 det file inside the rapidocr-onnxruntime wheel
    rec_model_path: str = ""       # empty: the PP-OCRv4 rec file inside the same wheel
    device: str = "auto"           # auto | cpu | cuda (onnxruntime provider)
    threads: int = 1               # onnxruntime intra-op threads per actor
    concurrency: int = 1
    num_cpus: float = 0.5          # a scheduling label, below 1 so model actors leave room for decoding
    num_gpus: float = 0.0          # GPUs Ray reserves per actor; device auto uses it (decided on the worker)
    batch_size: int = 16

    def __post_init__(self):
        for name in ("max_text_area", "max_text_box", "box_thresh", "sure_box_thresh", "min_read_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"text_overlay: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.max_read_ratio < 1.0:
            raise ValueError(f"text_overlay: max_read_ratio must be >= 1, got {self.max_read_ratio}")
        if self.max_text_boxes < 0:
            raise ValueError(f"text_overlay: max_text_boxes must be >= 0, got {self.max_text_boxes}")
        if self.short_side < 32 or self.short_side % 32:
            raise ValueError(f"text_overlay: short_side must be a multiple of 32, got {self.short_side}")
        if self.min_aspect < 1.0:
            raise ValueError(f"text_overlay: min_aspect must be >= 1, got {self.min_aspect}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"text_overlay: device must be auto, cpu or cuda, got {self.device!r}")
        if min(self.frames_per_clip, self.threads, self.concurrency, self.batch_size) < 1:
            raise ValueError("text_overlay: frames_per_clip, threads, concurrency and batch_size must be >= 1")
        if self.num_gpus < 0:
            raise ValueError(f"text_overlay: num_gpus must be >= 0, got {self.num_gpus}")

    def check(self, row: dict) -> str | None:
        return first_reason(
            bound_reason("text_overlay", "text_area", row.get("text_area"), hi=self.max_text_area),
            bound_reason("text_overlay", "text_boxes", row.get("text_boxes"),
                         hi=self.max_text_boxes if self.max_text_boxes > 0 else None),
            bound_reason("text_overlay", "text_box_max", row.get("text_box_max"),
                         hi=self.max_text_box if self.max_text_box < 1.0 else None))


def clip_scores(per_frame: list) -> dict:
    """Per-frame FrameText of one clip -> its score columns."""
    return {"text_area": float(np.mean([f.area for f in per_frame])),
            "text_boxes": int(max(len(f.boxes) for f in per_frame)),
            "text_box_max": float(max(f.largest for f in per_frame))}


class TextOverlayStage(Stage):
    name = "text_overlay"
    inputs = ("frames",)
    outputs = SCORES
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: TextOverlayConfig | None = None):
        from reelforge.curate.text_detector import TextDetector

        self.cfg = cfg or TextOverlayConfig()
        self.detector = TextDetector(self.cfg.model_path, short_side=self.cfg.short_side,
                                     box_thresh=self.cfg.box_thresh, sure_box_thresh=self.cfg.sure_box_thresh,
                                     min_read_score=self.cfg.min_read_score, max_read_ratio=self.cfg.max_read_ratio,
                                     rec_model_path=self.cfg.rec_model_path, min_aspect=self.cfg.min_aspect,
                                     max_batch=self.cfg.batch_size, threads=self.cfg.threads,
                                     device=self.cfg.device)
        self.skipped = 0  # clips the prepass let skip the model (the bench reads it)

    @classmethod
    def resources(cls, cfg: TextOverlayConfig | None = None) -> Resources:
        cfg = cfg or TextOverlayConfig()
        gpus = max(cfg.num_gpus, 1.0) if cfg.device == "cuda" else cfg.num_gpus
        return Resources(num_cpus=cfg.num_cpus, num_gpus=gpus, batch_size=cfg.batch_size,
                         concurrency=cfg.concurrency)

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        todo: dict[int, np.ndarray] = {}  # row index -> its cropped, picked frames (n, h, w, 3)
        for i, row in enumerate(rows):
            row.update({k: None for k in SCORES})
            if row.get("status", "ok") not in self.acts_on:
                continue
            try:
                frames = as_frames(row.get("frames"))
                x0, y0, x1, y1 = crop_in_frames(row, frames)
                frames = np.ascontiguousarray(pick_frames(frames, self.cfg.frames_per_clip)[:, y0:y1, x0:x1])
                if self.cfg.prepass and not _strokes_found(frames):
                    row.update(text_area=0.0, text_boxes=0, text_box_max=0.0)
                    self.skipped += 1
                    continue
                todo[i] = frames
            except Exception as exc:
                row.update(status="failed", reason=error_reason(self.name, exc, self.on_error))
        # one network call per frame size (clips of one source share it), not one per clip
        by_size: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, frames in todo.items():
            by_size[frames.shape[1:3]].append(i)
        for idx in by_size.values():
            try:
                found = self.detector.detect(np.concatenate([todo[i] for i in idx]),
                                             clips=[i for i in idx for _ in range(len(todo[i]))])
                bounds = np.cumsum([0] + [len(todo[i]) for i in idx])
                for j, i in enumerate(idx):
                    rows[i].update(clip_scores(found[bounds[j]:bounds[j + 1]]))
            except Exception:  # find the row that breaks it; the others still get scored
                for i in idx:
                    self._score_one(rows[i], todo[i])
        return rows_to_batch(rows, like=batch)

    def _score_one(self, row: dict, frames: np.ndarray) -> None:
        try:
            row.update(clip_scores(self.detector.detect(frames, clips=[0] * len(frames))))
        except Exception as exc:
            row.update(status="failed", reason=error_reason(self.name, exc, self.on_error))


def _strokes_found(frames: np.ndarray) -> bool:
    """The hand-written detector flags at least one text-like pixel in one of ``frames``."""
    from reelforge.curate.text_classic import text_area

    return any(text_area(f[None], persist_frac=1.0) > 0 for f in frames)
