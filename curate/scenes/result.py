"""What a shot detector returns: hard cuts, gradual transitions and the exact time of every frame."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end_exclusive) of every run of True in a per-frame boolean mask, in order: how both
    detectors turn per-frame flags (black frames, cut probabilities) into spans."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], np.asarray(mask, np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class SceneDetectionError(ValueError):
    """The file cannot be decoded (not a video, corrupt, or no frames)."""


@dataclass
class Transition:
    start: int  # first frame of the transition
    end: int  # exclusive: first frame after it
    kind: str  # "fade" | "dissolve" | "gradual"

    def __post_init__(self):
        if not 0 <= self.start < self.end:
            raise ValueError(f"transition needs 0 <= start < end, got {self.start}..{self.end}")


@dataclass
class SceneResult:
    path: str
    frames: int  # decoded frame count
    fps: float  # average frame rate
    # (frames,) float64: presentation time of each frame in seconds, presentation order, absolute
    # (container start offset included): exactly PyAV's frame.time of the decoded frames
    pts: np.ndarray
    cuts: list[int] = field(default_factory=list)  # first frame of each new shot after a hard cut
    transitions: list[Transition] = field(default_factory=list)

    def shots(self) -> list[tuple[int, int]]:
        """(start, end_exclusive) spans of picture between cuts and transitions, in order.

        Frames inside a transition belong to no shot; a transition at the very start or end of the
        video just trims the first or last shot."""
        spans: list[tuple[int, int]] = []
        start = 0
        events = sorted([(c, c) for c in self.cuts] + [(t.start, t.end) for t in self.transitions])
        for a, b in events:
            if a > start:
                spans.append((start, a))
            start = max(start, b)
        if start < self.frames:
            spans.append((start, self.frames))
        return spans

    def to_json(self) -> dict:
        """The ``reelforge scenes --json`` object (see curate/scenes/cli.py)."""
        pts = self.pts
        return {
            "path": self.path,
            "status": "ok",
            "frames": int(self.frames),
            "fps": float(self.fps),
            "start_time": float(pts[0]) if len(pts) else 0.0,
            "scene_starts": [int(c) for c in self.cuts],
            "scene_starts_seconds": [round(float(pts[c]), 6) for c in self.cuts],
            "transitions": [
                {"kind": t.kind, "start": t.start, "end": t.end,
                 "start_seconds": round(float(pts[t.start]), 6),
                 "end_seconds": round(float(pts[t.end - 1]), 6)}
                for t in self.transitions
            ],
            "shots": [[int(a), int(b)] for a, b in self.shots()],
        }
