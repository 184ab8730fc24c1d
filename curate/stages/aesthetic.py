"""Aesthetics: CLIP image embeddings of K frames per clip scored by a LAION aesthetic head.

The clip embedding (L2-normalised mean of its frame embeddings) is also what dedup and retrieval use,
so this stage outputs it even when no head is configured. The head sees each *frame* embedding (the
heads were trained on single images) and the clip's score is the mean over frames. The heads and their
file formats: ``curate/aesthetic_head.py``.

torch and open_clip are imported only when weights are configured: without them the stage records its
skip on every row, and a worker that imported torch for that paid 2-3 s of CPU for nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelforge.curate.stage import (Batch, Resources, Stage, batch_len, check_gpu_setting, error_reason, gpu_request,
                                    row_at, rows_to_batch)
from reelforge.curate.stages.common import as_frames, bound_reason


@dataclass
class AestheticConfig:
    enabled: bool = True
    model: str = "ViT-L-14"        # any open_clip model name
    pretrained: str = ""           # local checkpoint path or an open_clip pretrained tag; "" = skip stage
    model_config: str = ""         # optional open_clip model-config JSON registered under its file stem
    head: str = ""                 # LAION head .pth; "" = embeddings only, no score
    device: str = "auto"           # auto | cpu | cuda | cuda:N
    min_score: float = 4.5         # keep threshold (improved head: pipelines use 4.5-5)
    concurrency: int = 1           # actors (each loads the model once)
    # CPUs Ray reserves per actor: a scheduling label, not a limit; below 1 so two model actors
    # leave room for the decode tasks on a 2-core machine
    num_cpus: float = 0.5
    # GPUs Ray reserves for the task that runs this stage; `device: auto` then runs on it (decided on the
    # worker). auto = gpu_share when the cluster has GPUs, none when it has not (decided where the build
    # plans its tasks, from the cluster's resources); a number = that many (0.5: two tasks share one GPU)
    num_gpus: float | str = "auto"
    gpu_share: float = 0.0         # what auto reserves; 0 = the cluster's GPUs per CPU (never fewer tasks than CPUs)
    batch_size: int = 16           # clips per batch

    def __post_init__(self):
        if not self.model:
            raise ValueError("aesthetic: model must name an open_clip model")
        if self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("aesthetic: concurrency and batch_size must be >= 1")
        check_gpu_setting("aesthetic", self.num_gpus, self.gpu_share)

    def check(self, row: dict) -> str | None:
        return bound_reason("aesthetic", "aesthetic", row.get("aesthetic"), lo=self.min_score)


class AestheticStage(Stage):
    name = "aesthetic"
    inputs = ("frames",)
    # aesthetic: mean head score over frames; clip_embedding: list[float] (D,), unit norm;
    # aesthetic_skip: why the stage did not score (no weights configured), else None
    outputs = ("aesthetic", "clip_embedding", "aesthetic_skip")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: AestheticConfig | None = None):
        self.cfg = cfg or AestheticConfig()
        self.clip = None
        self.head = None
        self.skip = None
        if not self.cfg.pretrained:
            self.skip = "aesthetic: no CLIP weights configured (aesthetic.pretrained is empty)"
            return
        from reelforge.curate.aesthetic_head import load_aesthetic_head
        from reelforge.curate.clip_models import load_clip

        self.clip = load_clip(self.cfg.model, self.cfg.pretrained, self.cfg.device, self.cfg.model_config)
        if self.cfg.head:
            self.head = load_aesthetic_head(self.cfg.head).to(self.clip.device)
        else:
            self.skip = "aesthetic: no aesthetic head configured (aesthetic.head is empty); embeddings only"

    @classmethod
    def resources(cls, cfg: AestheticConfig | None = None) -> Resources:
        cfg = cfg or AestheticConfig()
        if not cfg.pretrained:  # nothing to load: a cheap task that only records why it skipped
            return Resources(num_cpus=0.25, batch_size=256)
        # the GPU is asked for from the config (num_gpus auto: from the cluster, where tasks are planned);
        # device `auto` is resolved on the worker that loads the model
        return Resources(num_cpus=cfg.num_cpus, **gpu_request(cls.name, cfg.device, cfg.num_gpus, cfg.gpu_share),
                         batch_size=cfg.batch_size, concurrency=cfg.concurrency)

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        todo: list[tuple[int, np.ndarray]] = []
        for i, row in enumerate(rows):
            row.update({"aesthetic": None, "clip_embedding": None, "aesthetic_skip": self.skip})
            if row.get("status", "ok") not in self.acts_on or self.clip is None:
                continue
            try:
                todo.append((i, as_frames(row.get("frames"))))
            except ValueError as exc:
                row.update(status="failed", reason=f"aesthetic: {exc}")
        if todo:
            try:  # one forward pass over every frame of the batch
                groups = self.clip.encode_groups([f for _, f in todo])
            except Exception:  # find the row that breaks it; the others still get scored
                groups = [self._encode_one(rows[i], f) for i, f in todo]
            for (i, _), emb in zip(todo, groups):
                if emb is None:
                    continue
                clip_emb = emb.mean(axis=0)  # (D,)
                rows[i]["clip_embedding"] = (clip_emb / max(np.linalg.norm(clip_emb), 1e-12)).tolist()
                scores = self._score(emb)
                if scores is not None:
                    rows[i]["aesthetic"] = float(scores.mean())
        return rows_to_batch(rows, like=batch)

    def _encode_one(self, row: dict, frames: np.ndarray) -> np.ndarray | None:
        try:
            return self.clip.encode_images(frames)
        except Exception as exc:
            row.update(status="failed", reason=error_reason(self.name, exc, self.on_error))
            return None

    def _score(self, emb: np.ndarray) -> np.ndarray | None:
        """(N, D) unit embeddings -> (N,) head scores, or None without a head."""
        if self.head is None:
            return None
        from reelforge.curate.aesthetic_head import score_frames

        return score_frames(self.head, emb, self.clip.device)
