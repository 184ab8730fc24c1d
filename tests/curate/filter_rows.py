"""Clip rows with known properties for the filter tests, built from the sample-video generator.

A row looks like what the transcode stage hands the scorers: K evenly spaced RGB frames (short side
<= 256), their times, and the clip's size, duration and fps.
"""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from reelforge.samples import ShotSpec, VideoSpec, render_frames, render_video


def _sample(frames: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.linspace(0, len(frames) - 1, min(k, len(frames))).round().astype(int)
    picked = []
    for i in idx:
        f = frames[i]
        h, w = f.shape[:2]
        s = min(1.0, 256 / min(h, w))
        picked.append(cv2.resize(f, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA) if s < 1 else f)
    return np.stack(picked), idx


def make_row(frames: list[np.ndarray], fps: float, clip_id: str = "clip", k: int = 8, **extra) -> dict:
    """A scorer-ready row from full-size frames."""
    sampled, idx = _sample(frames, k)
    h, w = frames[0].shape[:2]
    row = {"clip_id": clip_id, "status": "ok", "reason": None, "width": w, "height": h,
           "src_width": w, "src_height": h, "fps": float(fps), "num_frames": len(frames),
           "duration_s": len(frames) / float(fps), "frames": sampled,
           "frame_times": [float(i / fps) for i in idx], "caption": ""}
    row.update(extra)
    return row


def shot_row(shot: ShotSpec, width: int = 320, height: int = 240, fps: float = 25.0, letterbox: int = 0,
             seed: int = 0, clip_id: str = "clip", k: int = 8) -> dict:
    """Row from the generator's raw frames (no codec) of one shot."""
    spec = VideoSpec(clip_id, [shot], width=width, height=height, fps=fps, letterbox=letterbox, seed=seed)
    return make_row(list(render_frames(spec)), fps, clip_id=clip_id, k=k)


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def encoded_row(shot: ShotSpec, out_dir: Path, width: int = 320, height: int = 240, fps: float = 25.0,
                letterbox: int = 0, seed: int = 0, clip_id: str = "clip", codec: str = "h264",
                k: int = 8) -> dict:
    """Row from the shot rendered, encoded (real codec noise) and decoded again."""
    spec = VideoSpec(clip_id, [shot], width=width, height=height, fps=fps, letterbox=letterbox, seed=seed,
                     codec=codec)
    path = render_video(spec, out_dir)
    return make_row(decode(path), fps, clip_id=clip_id, k=k, video_path=str(path))
