"""From shots to clips: which frames of a video become training clips, and why the others do not.

Frames of a gradual transition are never part of a clip, and ``cut_margin_frames`` frames on each side
of a hard cut are dropped too (encoders smear a cut over a frame or two, and a detector may be off by
one). Shots longer than ``max_seconds`` are split into even pieces; pieces shorter than
``min_seconds`` are kept in the plan as ``filtered`` with the reason, so clips.parquet accounts for
every stretch of every video.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .scenes import SceneResult


@dataclass
class ClipPolicyConfig:  # config section "curate.clips"
    cut_margin_frames: int = 2  # frames dropped on each side of a hard cut
    min_seconds: float = 1.0
    max_seconds: float = 10.0  # longer shots split into even pieces

    def __post_init__(self):
        if self.cut_margin_frames < 0:
            raise ValueError(f"cut_margin_frames must be >= 0, got {self.cut_margin_frames}")
        if self.min_seconds < 0:
            raise ValueError(f"min_seconds must be >= 0, got {self.min_seconds}")
        if self.max_seconds <= 0 or self.max_seconds < self.min_seconds:
            raise ValueError(
                f"max_seconds must be > 0 and >= min_seconds ({self.min_seconds}), got {self.max_seconds}")


@dataclass
class ClipSpan:
    start_frame: int  # presentation-order frame indices, end exclusive
    end_frame: int
    start_s: float  # pts[start_frame]
    end_s: float  # pts[end_frame - 1] + 1 / fps (absolute, like pts)
    status: str  # "ok" | "filtered"
    reason: str  # "" or why the clip was dropped
    cut_before: str  # "start" | "cut" | "transition" | "split"
    cut_after: str  # "end" | "cut" | "transition" | "split"
    transition_before: str  # "" or "<kind>:<start>-<end>" of the transition just before the shot


def _shots_with_boundaries(result: SceneResult) -> list[tuple[int, int, str, str, str]]:
    """(start, end, cut_before, cut_after, transition_before) for each stretch between events."""
    events = sorted([(c, c, "cut", "") for c in result.cuts]
                    + [(t.start, t.end, "transition", f"{t.kind}:{t.start}-{t.end}") for t in result.transitions])
    out = []
    pos, before, trans = 0, "start", ""
    for a, b, kind, label in events:
        if a > pos:
            out.append((pos, a, before, kind, trans))
        if b >= pos:  # overlapping transitions: the later end wins
            pos, before, trans = max(pos, b), kind, label
    if pos < result.frames:
        out.append((pos, result.frames, before, "end", trans))
    return out


def plan_clips(result: SceneResult, cfg: ClipPolicyConfig) -> list[ClipSpan]:
    pts, fps = result.pts, result.fps
    frame_s = 1.0 / fps if fps > 0 else 0.0
    spans: list[ClipSpan] = []
    for start, end, before, after, trans in _shots_with_boundaries(result):
        if before == "cut":
            start += cfg.cut_margin_frames
        if after == "cut":
            end -= cfg.cut_margin_frames
        if end <= start:
            continue  # nothing left of a shot shorter than its two margins
        duration = float(pts[end - 1] - pts[start]) + frame_s
        pieces = max(1, math.ceil(duration / cfg.max_seconds - 1e-9))
        pieces = min(pieces, end - start)
        # even pieces by frame count (timestamps may be irregular, frames are what a clip holds)
        edges = [start + round(k * (end - start) / pieces) for k in range(pieces + 1)]
        for k in range(pieces):
            a, b = edges[k], edges[k + 1]
            start_s, end_s = float(pts[a]), float(pts[b - 1]) + frame_s
            length = end_s - start_s
            ok = length >= cfg.min_seconds
            spans.append(ClipSpan(
                start_frame=a, end_frame=b, start_s=start_s, end_s=end_s,
                status="ok" if ok else "filtered",
                reason="" if ok else f"clip_policy: duration {length:.2f}s < min_seconds {cfg.min_seconds}",
                cut_before=before if k == 0 else "split",
                cut_after=after if k == pieces - 1 else "split",
                transition_before=trans if k == 0 else "",
            ))
    return spans
