from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelforge.config import ConfigError, load_config
from reelforge.shards.buckets import BucketConfig, BucketTable
from reelforge.shards.transform import center_crop, cover_size, frame_indices

ROOT = Path(__file__).resolve().parents[2]

TABLE = BucketTable(buckets=[BucketConfig(256, 256, 17, 4), BucketConfig(144, 256, 17, 7),
                             BucketConfig(144, 256, 33, 4), BucketConfig(256, 256, 1, 64)],
                    fps=8.0, max_upscale=1.0, min_crop_keep=0.75)


def test_default_yaml_mirrors_the_dataclass():
    assert load_config(BucketTable, ROOT / "configs/buckets/default.yaml").to_dict() == BucketTable().to_dict()
    with pytest.raises(ConfigError, match="fps must be > 0"):
        load_config(BucketTable, None, ["fps=0"])


@pytest.mark.parametrize("kind,w,h,n,fps,expected", [
    ("video", 1920, 1080, 300, 30.0, "144x256x33"),   # 16:9, long: the longest 16:9 bucket
    ("video", 1920, 1080, 100, 30.0, "144x256x17"),   # 100 frames at stride 3.75 -> 27 sampled: 17 fits, 33 not
    ("video", 1080, 1080, 200, 24.0, "256x256x17"),   # square
    ("video", 640, 480, 200, 24.0, "256x256x17"),     # 4:3 is as far from 1:1 as from 16:9: larger shape wins
    ("video", 1080, 1920, 300, 30.0, None),           # portrait 9:16: no such bucket, 1:1 keeps only 56 %
    ("video", 200, 112, 200, 24.0, None),             # would need upscaling
    ("video", 1920, 1080, 16, 30.0, None),            # too short for 17 frames
    ("video", 1920, 1080, 20, 6.0, "144x256x17"),     # low fps: stride 1 (no repeated frames), 20 >= 17
    ("image", 800, 800, None, None, "256x256x1"),
    ("image", 1920, 1080, None, None, None),          # images never go to video buckets
    ("video", None, 1080, 100, 30.0, None),           # missing metadata -> no bucket, no KeyError
])
def test_assignment_rule(kind, w, h, n, fps, expected):
    assert TABLE.assign(kind, w, h, n, fps) == expected


def test_frame_sampling_and_crop():
    assert frame_indices(50, 3.0, 17, None) == list(range(1, 50, 3))  # centred in the 1 spare frame, even steps
    rng = np.random.default_rng(0)
    idx = frame_indices(100, 3.0, 17, rng)
    assert len(idx) == 17 and np.all(np.diff(idx) == 3) and 0 <= idx[0] and idx[-1] <= 99
    with pytest.raises(ValueError, match="needs 49"):
        frame_indices(40, 3.0, 17, None)
    b = BucketConfig(144, 256, 17, 1)
    assert cover_size(854, 480, b) == (257, 144)
    assert cover_size(480, 480, b) == (256, 256)
    frames = np.arange(256 * 257 * 3, dtype=np.int64).reshape(1, 256, 257, 3)
    crop = center_crop(frames, b)
    assert crop.shape == (1, 144, 256, 3) and crop[0, 0, 0, 0] == frames[0, 56, 0, 0]
