"""Caption-clip match: CLIP cosine similarity between a clip's caption and its frames.

Runs after recaptioning. The score is the mean over frames of cos(text, frame), the CLIPScore quantity
without its 2.5 rescale. Use the same CLIP as the aesthetic stage: when frames are gone (re-scoring a
built dataset from clips.parquet) the stored ``clip_embedding`` stands in for them, and that is only
meaningful in the same embedding space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelforge.curate.clip_models import load_clip
from reelforge.curate.stage import (Batch, Resources, Stage, batch_len, check_gpu_setting, error_reason, gpu_request,
                                    row_at, rows_to_batch)
from reelforge.curate.stages.common import as_frames, bound_reason


@dataclass
class CaptionMatchConfig:
    enabled: bool = True
    model: str = "ViT-L-14"
    pretrained: str = ""           # "" = skip the stage (no weights offline)
    model_config: str = ""
    device: str = "auto"
    # ViT-L/14 cosines: matching captions ~0.25-0.35, unrelated ~0.10-0.15 (LAION-5B kept >= 0.28 on
    # ViT-B/32 alt-text). Generated captions are long and generic, so the default is lenient.
    min_similarity: float = 0.2
    concurrency: int = 1
    # CPUs Ray reserves per actor: a scheduling label, not a limit; below 1 so two model actors
    # leave room for the decode tasks on a 2-core machine
    num_cpus: float = 0.5
    # GPUs Ray reserves for the task that runs this stage; `device: auto` then runs on it (decided on the
    # worker). auto = gpu_share when the cluster has GPUs, none when it has not (decided where the build
    # plans its tasks, from the cluster's resources); a number = that many (0.5: two tasks share one GPU)
    num_gpus: float | str = "auto"
    gpu_share: float = 0.0         # what auto reserves; 0 = the cluster's GPUs per CPU (never fewer tasks than CPUs)
    batch_size: int = 32

    def __post_init__(self):
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ValueError(f"caption_match: min_similarity must be in [-1, 1], got {self.min_similarity}")
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("caption_match: concurrency and batch_size must be >= 1")
        check_gpu_setting("caption_match", self.num_gpus, self.gpu_share)

    def check(self, row: dict) -> str | None:
        return bound_reason("caption_match", "caption_match", row.get("caption_match"), lo=self.min_similarity)


class CaptionMatchStage(Stage):
    name = "caption_match"
    inputs = ("caption", "frames")
    outputs = ("caption_match",)  # None: empty caption, or no weights configured
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: CaptionMatchConfig | None = None):
        self.cfg = cfg or CaptionMatchConfig()
        self.clip = load_clip(self.cfg.model, self.cfg.pretrained, self.cfg.device, self.cfg.model_config) \
            if self.cfg.pretrained else None

    @classmethod
    def resources(cls, cfg: CaptionMatchConfig | None = None) -> Resources:
        cfg = cfg or CaptionMatchConfig()
        # the GPU is asked for from the config (num_gpus auto: from the cluster, where tasks are planned);
        # device `auto` is resolved on the worker that loads the model
        if not cfg.pretrained:  # no weights: nothing to put on a GPU
            return Resources(num_cpus=cfg.num_cpus, batch_size=cfg.batch_size, concurrency=cfg.concurrency)
        return Resources(num_cpus=cfg.num_cpus, **gpu_request(cls.name, cfg.device, cfg.num_gpus, cfg.gpu_share),
                         batch_size=cfg.batch_size, concurrency=cfg.concurrency)

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        todo: list[tuple[int, str, np.ndarray]] = []  # (row, caption, image embeddings (k, D))
        frame_jobs: list[tuple[int, np.ndarray]] = []
        for i, row in enumerate(rows):
            row["caption_match"] = None
            caption = (row.get("caption") or "").strip()
            if row.get("status", "ok") not in self.acts_on or self.clip is None or not caption:
                continue
            if row.get("frames") is not None:
                try:
                    frame_jobs.append((i, as_frames(row["frames"])))
                except ValueError as exc:
                    row.update(status="failed", reason=f"caption_match: {exc}")
            elif row.get("clip_embedding") is not None:
                todo.append((i, caption, np.asarray(row["clip_embedding"], dtype=np.float32)[None]))
        if frame_jobs:
            try:
                groups = self.clip.encode_groups([f for _, f in frame_jobs])
            except Exception:  # find the row that breaks it; the others still get scored
                groups = [self._encode_one(rows[i], f) for i, f in frame_jobs]
            for (i, _), emb in zip(frame_jobs, groups):
                if emb is not None:
                    todo.append((i, rows[i]["caption"].strip(), emb))
        if todo:
            text = self.clip.encode_texts([c for _, c, _ in todo])  # (N, D); the tokenizer truncates
            for (i, _, img), t in zip(todo, text):
                rows[i]["caption_match"] = float((img @ t).mean())
        return rows_to_batch(rows, like=batch)

    def _encode_one(self, row: dict, frames: np.ndarray) -> np.ndarray | None:
        try:
            return self.clip.encode_images(frames)
        except Exception as exc:
            row.update(status="failed", reason=error_reason(self.name, exc, self.on_error))
            return None
