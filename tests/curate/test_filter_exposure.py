"""Exposure and sharpness on generated shots with known brightness and blur."""
import numpy as np
import pytest
from filter_rows import encoded_row, shot_row

from reelforge.curate.stages.exposure import ExposureConfig, ExposureStage
from reelforge.samples import ShotSpec

CFG = ExposureConfig()


def _scores(shot, **kw):
    row = shot_row(shot, **kw)
    row.update(ExposureStage().process_row(row))
    return row


def test_lit_sharp_shot_passes():
    row = _scores(ShotSpec(12, "checker", (40, 90, 200), "circle", motion="object"))
    assert 0.2 < row["exposure_mean"] < 0.8 and row["sharpness"] > 2 * CFG.min_sharpness
    assert CFG.check(row) is None


def test_dark_shot_is_filtered_as_dark():
    row = _scores(ShotSpec(12, "checker", (40, 90, 200), "circle", motion="object", brightness=0.08))
    assert row["exposure_dark_frac"] > 0.9
    assert CFG.check(row).startswith("exposure: exposure_mean=0.0")


def test_blown_out_shot_is_filtered():
    row = _scores(ShotSpec(12, "blobs", (230, 230, 220), None, motion="static", brightness=3.0))
    assert row["exposure_bright_frac"] > 0.6
    assert CFG.check(row).startswith("exposure: exposure_mean=") or "bright_frac" in CFG.check(row)


@pytest.mark.parametrize("background", ["checker", "noise", "blobs", "gradient"])
def test_blurred_shot_is_filtered_as_blurry(background):
    sharp = _scores(ShotSpec(8, background, (200, 60, 60), "circle", motion="static"))
    blurry = _scores(ShotSpec(8, background, (200, 60, 60), "circle", motion="static", blur=4.0))
    assert sharp["sharpness"] > 1.3 * CFG.min_sharpness
    assert blurry["sharpness"] < CFG.min_sharpness
    assert CFG.check(blurry).startswith("exposure: sharpness=")
    # the classic measure ranks them too, but its scale depends on the content's contrast
    assert blurry["laplacian_var"] < sharp["laplacian_var"]


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_sharpness_survives_a_real_codec(tmp_path, codec):
    shot = ShotSpec(25, "checker", (40, 90, 200), "circle", motion="object")
    blurred = ShotSpec(25, "checker", (40, 90, 200), "circle", motion="object", blur=4.0)
    for s, keep in ((shot, True), (blurred, False)):
        raw = shot_row(s)
        enc = encoded_row(s, tmp_path, codec=codec)
        raw.update(ExposureStage().process_row(raw))
        enc.update(ExposureStage().process_row(enc))
        assert enc["sharpness"] == pytest.approx(raw["sharpness"], abs=0.03)  # ringing does not fake edges
        assert (CFG.check(enc) is None) == keep


def test_flat_frames_have_no_sharpness_and_are_not_judged_on_it():
    row = {"frames": np.full((4, 64, 64, 3), 128, np.uint8), "status": "ok"}
    row.update(ExposureStage().process_row(row))
    assert row["sharpness"] is None and CFG.check(row) is None


def test_crop_box_excludes_bars():
    frames = np.full((4, 100, 100, 3), 150, np.uint8)
    frames[:, :25] = 0
    frames[:, 75:] = 0
    row = {"frames": frames, "width": 100, "height": 100, "status": "ok"}
    whole = ExposureStage().process_row(row)["exposure_mean"]
    row.update(crop_x0=0, crop_y0=25, crop_x1=100, crop_y1=75)
    inside = ExposureStage().process_row(row)["exposure_mean"]
    assert whole == pytest.approx(inside / 2, rel=0.02) and inside == pytest.approx(150 / 255, abs=0.01)


def test_config_validation():
    with pytest.raises(ValueError, match="min_mean"):
        ExposureConfig(min_mean=0.9, max_mean=0.5)
    with pytest.raises(ValueError, match="inverse edge width"):
        ExposureConfig(min_sharpness=20.0)  # a Laplacian-variance threshold would drop every clip
