"""Motion on generated clips with known motion: static, moving object, pan, hand-held jitter."""
import numpy as np
import pytest
from filter_rows import encoded_row, shot_row

from reelforge.curate.stages.motion import MotionConfig, MotionStage, back_and_forth
from reelforge.samples import ShotSpec

CFG = MotionConfig()


def _scores(row):
    row.update(MotionStage().process_row(row))
    return row


@pytest.mark.parametrize("background", ["blobs", "stripes", "checker", "noise"])
def test_static_shot_is_filtered_as_static(background):
    row = _scores(shot_row(ShotSpec(40, background, (90, 140, 60), "circle", motion="static")))
    assert row["motion_mean"] < CFG.min_motion / 10
    assert CFG.check(row).startswith("motion: motion_mean=")


@pytest.mark.parametrize("background", ["stripes", "checker", "noise", "blobs"])
def test_moving_object_is_object_motion_not_camera(background):
    row = _scores(shot_row(ShotSpec(50, background, (90, 140, 60), "circle", motion="object")))
    assert row["motion_mean"] > 4 * CFG.min_motion
    assert row["motion_object"] > 4 * row["motion_camera"]
    assert CFG.check(row) is None


def test_pan_is_camera_motion_with_the_right_speed():
    # 2 px/frame at 320 px wide, 240 high, 25 fps: 50 px/s = 0.208 of the short side per second
    row = _scores(shot_row(ShotSpec(50, "checker", (90, 140, 60), None, motion="pan", speed=2.0)))
    assert row["motion_camera"] == pytest.approx(2.0 * 25 / 240, rel=0.15)
    assert row["motion_object"] < 0.1 * row["motion_camera"]
    assert row["motion_jitter"] < CFG.max_jitter / 4 and CFG.check(row) is None


def test_jitter_is_flagged_and_pan_is_not(tmp_path):
    shaky = _scores(encoded_row(ShotSpec(60, "noise", (120, 40, 160), "square", motion="jitter"),
                                tmp_path, width=640, height=360, fps=30, clip_id="shaky"))
    assert shaky["motion_jitter"] > CFG.max_jitter
    assert CFG.check(shaky).startswith("motion: motion_jitter=")


def test_static_survives_codec_noise(tmp_path):
    row = _scores(encoded_row(ShotSpec(40, "stripes", (30, 60, 200), None, motion="static"), tmp_path))
    assert row["motion_mean"] < CFG.min_motion / 5


def test_back_and_forth():
    steady = np.tile([[0.05, 0.0]], (6, 1))
    assert back_and_forth(steady) == 0.0
    shake = np.array([[0.02, 0], [-0.02, 0], [0.02, 0], [-0.02, 0]])
    assert back_and_forth(shake) == pytest.approx(0.02)


def test_one_frame_has_no_motion():
    out = MotionStage().process_row({"frames": np.zeros((1, 64, 64, 3), np.uint8)})
    assert out == {} and CFG.check({"motion_mean": None}) is None
