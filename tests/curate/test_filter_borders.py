"""Letterbox / pillarbox detection on generated clips."""
import numpy as np
import pytest
from filter_rows import shot_row

from reelforge.curate.stages.borders import BordersConfig, BordersStage, detect_letterbox
from reelforge.samples import ShotSpec


def test_generated_letterbox_is_found_and_scaled_to_clip_pixels():
    # 854x480 with 60-px bars top and bottom; sampled frames are 256 high, clip coords are 480 high
    row = shot_row(ShotSpec(20, "noise", (120, 60, 40), "circle", motion="object"),
                   width=854, height=480, letterbox=60)
    row["frames"] = np.stack([np.asarray(f) for f in row["frames"]])
    fh = row["frames"].shape[1]
    x0, y0, x1, y1 = detect_letterbox(row["frames"])
    assert (x0, x1) == (0, row["frames"].shape[2])
    assert abs(y0 - 60 * fh / 480) <= 1.5 and abs((fh - y1) - 60 * fh / 480) <= 1.5
    out = BordersStage().process_row(row)
    assert abs(out["crop_y0"] - 60) <= 3 and abs(out["crop_y1"] - 420) <= 3
    assert out["crop_x0"] == 0 and out["crop_x1"] == 854
    assert out["border_area"] == pytest.approx(0.25, abs=0.01)
    assert BordersConfig().check(out) is None          # 0.25 < 0.3: kept (crop it on transcode)
    assert BordersConfig(max_border_area=0.2).check(out).startswith("borders: border_area=0.25")


def test_pillarbox_and_no_bars():
    row = shot_row(ShotSpec(10, "checker", (30, 160, 200), None, motion="static"), width=320, height=240)
    assert detect_letterbox(row["frames"]) == (0, 0, 320, 240)
    pillar = row["frames"].copy()
    pillar[:, :, :40] = 0
    pillar[:, :, -40:] = 3  # bars are rarely exactly 0 after a codec
    assert detect_letterbox(pillar) == (40, 0, 280, 240)


def test_dark_scene_is_not_a_letterbox():
    # a night shot: dark everywhere, a faint moving light in the middle rows only
    frames = np.full((8, 120, 160, 3), 4, np.uint8)
    for i in range(8):
        frames[i, 50:60, 10 + 10 * i: 30 + 10 * i] = 90
    assert detect_letterbox(frames) == (0, 0, 160, 120)


def test_large_frames_use_a_strided_view():
    frames = np.zeros((2, 1080, 1920, 3), np.uint8)
    frames[:, 140:940] = 128
    x0, y0, x1, y1 = detect_letterbox(frames)
    assert (x0, x1) == (0, 1920) and abs(y0 - 140) <= 4 and abs(y1 - 940) <= 4


def test_bad_frames_fail_the_row_not_the_batch():
    batch = {"clip_id": ["a", "b"], "status": ["ok", "ok"], "reason": [None, None],
             "frames": [np.zeros((4, 32, 32, 3), np.uint8), None], "width": [32, 32], "height": [32, 32]}
    out = BordersStage()(batch)
    assert out["status"] == ["ok", "failed"] and "frames is None" in out["reason"][1]
