"""The frames a captioner sees: N per clip, uniform over the clip or at a rate, decoded on a CPU worker.

Frames are downscaled here to at most ``max_pixels`` (aspect kept) so that what crosses to the model
worker is small; the model's own processor then resizes to its preferred resolution (Qwen2.5-VL: a
multiple of 28 within its pixel budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from reelforge.shards.members import decode_frames_pyav, open_video


@dataclass
class FrameConfig:
    sampling: Literal["uniform", "fps"] = "uniform"
    num_frames: int = 8            # uniform: frames per clip
    fps: float = 2.0               # fps: frames per second of clip, within [min_frames, max_frames]
    min_frames: int = 4
    max_frames: int = 32
    multiple_of: int = 2           # Qwen-VL patches 2 frames at a time; the count is rounded to this
    max_pixels: int = 448 * 448    # per frame, after decoding (the processor resizes further)

    def __post_init__(self):
        if self.num_frames < 1 or self.min_frames < 1 or self.max_frames < self.min_frames:
            raise ValueError("frames: need num_frames >= 1 and 1 <= min_frames <= max_frames")
        if self.fps <= 0 or self.multiple_of < 1 or self.max_pixels < 64:
            raise ValueError("frames: fps > 0, multiple_of >= 1 and max_pixels >= 64 required")

    def count(self, num_frames: int, clip_fps: float) -> int:
        """How many frames to take from a clip of ``num_frames`` frames at ``clip_fps``."""
        if self.sampling == "uniform":
            n = self.num_frames
        else:
            n = min(max(num_frames / max(clip_fps, 1e-6) * self.fps, self.min_frames), self.max_frames)
        n = max(self.multiple_of, int(round(n / self.multiple_of)) * self.multiple_of)
        return n


def frame_indices(num_frames: int, count: int) -> list[int]:
    """``count`` indices at the centres of ``count`` equal segments (repeats when the clip is shorter)."""
    return [min(num_frames - 1, int((i + 0.5) * num_frames / count)) for i in range(count)]


def fit_pixels(h: int, w: int, max_pixels: int) -> tuple[int, int]:
    scale = min(1.0, math.sqrt(max_pixels / (h * w)))
    return max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)


def sample_frames(mp4: bytes, cfg: FrameConfig) -> tuple[np.ndarray, float]:
    """(frames (T, H, W, 3) uint8 RGB, sampled frames per second of clip time). Raises ValueError."""
    try:
        vr = open_video(mp4)
        n, fps = len(vr), float(vr.get_avg_fps() or 25.0)
        if n == 0:
            raise ValueError("video has no frames")
        count = cfg.count(n, fps)
        frames = vr.get_batch(frame_indices(n, count)).asnumpy()  # (T, H, W, 3)
    except ValueError:
        raise
    except Exception:  # decord rejects some valid streams (odd sizes): PyAV decodes them
        all_frames = decode_frames_pyav(mp4)
        n, fps = len(all_frames), 25.0
        count = cfg.count(n, fps)
        frames = all_frames[frame_indices(n, count)]
    h, w = fit_pixels(frames.shape[1], frames.shape[2], cfg.max_pixels)
    if (h, w) != frames.shape[1:3]:
        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    duration = n / fps
    return np.ascontiguousarray(frames), count / max(duration, 1e-6)


def decode_rows(dataset, rows: list[dict], cfg: FrameConfig) -> tuple[list, list]:
    """Index rows -> (``Clip``s, ``CaptionResult`` failures for clips that could not be read or decoded).
    Members are read through ``shards.access`` by their index offsets."""
    from reelforge.recaption.captioner import Clip
    from reelforge.recaption.postprocess import CaptionResult
    from reelforge.shards.access import ShardFiles, open_member

    clips, failed = [], []
    files = ShardFiles(max_open=8)
    try:
        for row in rows:
            try:
                frames, fps = sample_frames(open_member(dataset, row, "mp4", files), cfg)
                clips.append(Clip(row["clip_id"], frames, fps))
            except (OSError, KeyError, ValueError) as exc:
                why = f"frames: {type(exc).__name__}: {exc}"[:300]
                failed.append(CaptionResult(row["clip_id"], None, "failed", why, 0, 0))
    finally:
        files.close()
    return clips, failed
