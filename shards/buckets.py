"""Bucketing: a table of (height, width, num_frames) shapes, each with its own batch size, and the rule
that assigns each clip to one of them.

Assignment rule (see SPEC.md):
  1. Kind: image samples (1 frame) go to 1-frame buckets only; video samples to multi-frame buckets only.
  2. Length: frames are sampled with stride ``max(1, clip_fps / table.fps)`` (never duplicated), so a clip
     offers ``floor((num_frames - 1) / stride) + 1`` frames; a bucket needs at most that many.
  3. Resolution: the clip is resized, aspect preserved, until it covers the bucket
     (``scale = max(H_b / h, W_b / w)``) and centre-cropped; ``scale`` must be <= ``max_upscale``.
  4. Crop: the crop keeps ``min(ar_b / ar, ar / ar_b)`` of the resized frame; it must be >= ``min_crop_keep``.
  5. Among eligible buckets pick the closest aspect ratio (|log(ar / ar_b)|), then the most pixels x frames,
     then the name. No eligible bucket -> ``None``: the clip is kept out of training and counted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import pyarrow as pa

from reelforge.shards.spec import KIND_IMAGE


@dataclass
class BucketConfig:
    height: int
    width: int
    num_frames: int
    batch_size: int
    name: str = ""  # defaults to "<H>x<W>x<T>"

    def __post_init__(self):
        for key in ("height", "width", "num_frames", "batch_size"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"bucket {key} must be a positive integer, got {value!r}")
        if self.height % 2 or self.width % 2:
            raise ValueError(f"bucket height/width must be even, got {self.height}x{self.width}")
        if not self.name:
            self.name = f"{self.height}x{self.width}x{self.num_frames}"
        if "/" in self.name or "." in self.name:
            raise ValueError(f"bucket name must not contain '/' or '.': {self.name!r}")

    @property
    def aspect(self) -> float:
        return self.width / self.height


def _default_buckets() -> list[BucketConfig]:
    # (H, W) at ~256p for 1:1, 16:9, 9:16, 4:3, 3:4; frame counts 4k+1 suit causal video VAEs.
    # Batch sizes keep pixels x frames per batch roughly constant across buckets.
    shapes = [(256, 256), (144, 256), (256, 144), (192, 256), (256, 192)]
    out = []
    for frames, per_256sq in ((1, 64), (17, 4), (33, 2)):
        for h, w in shapes:
            out.append(BucketConfig(h, w, frames, max(1, round(per_256sq * 256 * 256 / (h * w)))))
    return out


@dataclass
class BucketTable:
    buckets: list[BucketConfig] = field(default_factory=_default_buckets)
    fps: float = 8.0             # target sampling rate for video buckets
    max_upscale: float = 1.0     # 1.0: never enlarge a clip to fit a bucket
    min_crop_keep: float = 0.75  # fraction of the resized frame the centre crop must keep

    def __post_init__(self):
        if not self.buckets:
            raise ValueError("buckets must not be empty")
        self.buckets = [b if isinstance(b, BucketConfig) else BucketConfig(**b) for b in self.buckets]
        names = [b.name for b in self.buckets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"bucket names must be unique, repeated: {dup}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_upscale < 1.0:
            raise ValueError(f"max_upscale must be >= 1.0, got {self.max_upscale}")
        if not 0.0 < self.min_crop_keep <= 1.0:
            raise ValueError(f"min_crop_keep must be in (0, 1], got {self.min_crop_keep}")
        self._by_name = {b.name: b for b in self.buckets}

    def __getitem__(self, name: str) -> BucketConfig:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def stride(self, clip_fps: float) -> float:
        """Source frames per sampled frame at the table's fps (never below 1: frames are not repeated)."""
        return max(1.0, clip_fps / self.fps)

    def available_frames(self, num_frames: int, clip_fps: float) -> int:
        return int(math.floor((num_frames - 1) / self.stride(clip_fps) + 1e-9)) + 1

    def assign(self, kind: str, width, height, num_frames, fps) -> str | None:
        """Name of the bucket for one clip, or None when no bucket fits (or metadata is missing)."""
        if not width or not height or width <= 0 or height <= 0:
            return None
        if kind == KIND_IMAGE:
            frames = 1
        else:
            if not num_frames or not fps or num_frames < 2 or fps <= 0:
                return None
            frames = self.available_frames(int(num_frames), float(fps))
        aspect = width / height
        best, best_key = None, None
        for b in self.buckets:
            if (b.num_frames == 1) != (kind == KIND_IMAGE) or b.num_frames > frames:
                continue
            if max(b.height / height, b.width / width) > self.max_upscale + 1e-9:
                continue
            if min(b.aspect / aspect, aspect / b.aspect) < self.min_crop_keep - 1e-9:
                continue
            key = (abs(math.log(aspect / b.aspect)), -b.height * b.width * b.num_frames, b.name)
            if best_key is None or key < best_key:
                best, best_key = b.name, key
        return best

    def to_dict(self) -> dict:
        return {"buckets": [vars(b).copy() for b in self.buckets], "fps": self.fps,
                "max_upscale": self.max_upscale, "min_crop_keep": self.min_crop_keep}


def assign_buckets(table: pa.Table, buckets: BucketTable) -> pa.Array:
    """The bucket of each row of an index-like ``pyarrow.Table`` (``kind``, ``width``, ``height``,
    ``num_frames``, ``fps``; a missing column counts as null) -> a string array, null where none fits."""
    def col(name):
        return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows
    return pa.array([buckets.assign(k, w, h, n, f) for k, w, h, n, f in zip(
        col("kind"), col("width"), col("height"), col("num_frames"), col("fps"))], pa.string())
