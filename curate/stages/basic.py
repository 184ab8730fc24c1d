"""Basic filter: duration, resolution, frame rate and aspect-ratio bounds.

These values are already known from probing and transcoding; the stage only derives the two that are
not (``aspect_ratio`` and ``short_side``) so every bound the filter checks is a column of clips.parquet.
Resolution is judged on the *source* short side: the transcoder may downscale, but a 144p source is a
144p source however it is re-encoded.
"""
from __future__ import annotations

from dataclasses import dataclass

from reelforge.curate.stage import Resources, Stage
from reelforge.curate.stages.common import bound_reason, first_reason


@dataclass
class BasicConfig:
    enabled: bool = True
    # score clips this filter removes with the model stages too (text, nsfw, CLIP: the costly part), so that a
    # --refilter that loosens this filter can re-decide them; false: left unscored (curate/stage.py REMOVED_EARLY)
    score_removed: bool = False
    min_duration_s: float = 1.0
    max_duration_s: float = 120.0      # 0 = no upper bound
    min_short_side: int = 120          # px of the source's short side (the sample videos go down to 160x120;
                                       # raise to 360+ for real corpora)
    min_fps: float = 10.0
    max_fps: float = 121.0
    min_aspect: float = 0.5            # width / height of the output clip (portrait 1:2)
    max_aspect: float = 2.5            # (cinemascope ~2.39 passes)

    def __post_init__(self):
        if self.min_duration_s < 0 or self.max_duration_s < 0:
            raise ValueError("basic: durations must be >= 0")
        if self.max_duration_s and self.max_duration_s < self.min_duration_s:
            raise ValueError(f"basic: max_duration_s={self.max_duration_s} < min_duration_s={self.min_duration_s}")
        if self.min_short_side < 0:
            raise ValueError("basic: min_short_side must be >= 0")
        if self.max_fps < self.min_fps:
            raise ValueError(f"basic: max_fps={self.max_fps} < min_fps={self.min_fps}")
        if not 0 < self.min_aspect <= self.max_aspect:
            raise ValueError(f"basic: need 0 < min_aspect <= max_aspect, got {self.min_aspect}, {self.max_aspect}")

    def check(self, row: dict) -> str | None:
        return first_reason(
            bound_reason("basic", "duration_s", row.get("duration_s"), lo=self.min_duration_s,
                         hi=self.max_duration_s or None),
            bound_reason("basic", "short_side", row.get("short_side"), lo=self.min_short_side),
            bound_reason("basic", "fps", row.get("fps"), lo=self.min_fps, hi=self.max_fps),
            bound_reason("basic", "aspect_ratio", row.get("aspect_ratio"), lo=self.min_aspect, hi=self.max_aspect),
        )


class BasicStage(Stage):
    name = "basic"
    removes_early = True  # its removals are not scored by the model stages (score_removed)
    inputs = ("width", "height", "src_width", "src_height", "duration_s", "fps")
    outputs = ("aspect_ratio", "short_side")
    acts_on = ("ok", "filtered")

    def __init__(self, cfg: BasicConfig | None = None):
        self.cfg = cfg or BasicConfig()

    @classmethod
    def resources(cls, cfg: BasicConfig | None = None) -> Resources:
        return Resources(num_cpus=0.25, batch_size=256)

    def process_row(self, row: dict) -> dict:
        w, h = int(row.get("width") or 0), int(row.get("height") or 0)
        sw, sh = int(row.get("src_width") or w), int(row.get("src_height") or h)
        return {
            "aspect_ratio": (w / h) if w > 0 and h > 0 else None,
            "short_side": min(sw, sh) if sw > 0 and sh > 0 else None,
        }
