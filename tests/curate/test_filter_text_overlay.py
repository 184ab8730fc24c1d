"""Text overlays on generated shots: subtitles flagged, plain and moving content not."""
import numpy as np
import pytest
from filter_rows import encoded_row, shot_row

from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage, text_area
from reelforge.samples import ShotSpec

CFG = TextOverlayConfig()


def _score(row):
    row.update(TextOverlayStage().process_row(row))
    return row


@pytest.mark.parametrize("background, motion", [("noise", "object"), ("stripes", "pan"),
                                                ("checker", "static"), ("blobs", "jitter")])
def test_subtitles_are_flagged(background, motion):
    shot = ShotSpec(30, background, (120, 80, 40), "circle", motion=motion, text="Nobody saw it coming.")
    row = _score(shot_row(shot, width=480, height=270))
    assert 0.01 < row["text_area"] < 0.2
    assert CFG.check(row).startswith("text_overlay: text_area=")


@pytest.mark.parametrize("background, motion", [("noise", "object"), ("stripes", "pan"), ("checker", "static"),
                                                ("blobs", "jitter"), ("gradient", "object")])
def test_no_text_is_not_flagged(background, motion):
    row = _score(shot_row(ShotSpec(30, background, (120, 80, 40), "circle", motion=motion), width=480, height=270))
    assert row["text_area"] < CFG.max_text_area / 4 and CFG.check(row) is None


def test_survives_the_codec(tmp_path):
    shot = ShotSpec(40, "noise", (60, 90, 30), "square", motion="object", text="The tide comes in at dawn.")
    row = _score(encoded_row(shot, tmp_path, width=480, height=270))
    assert CFG.check(row) is not None


def test_changing_subtitle_lines_still_count():
    import cv2
    frames = np.full((8, 240, 426, 3), (30, 60, 90), np.uint8)
    lines = ["first line of words", "another sentence now", "third subtitle text"]
    for i, f in enumerate(frames):
        cv2.circle(f, (40 + 40 * i, 100), 30, (250, 250, 250), -1)
        cv2.putText(f, lines[i % 3], (60, 215), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    assert text_area(frames) > 0.02


def test_config_validation():
    with pytest.raises(ValueError, match="persist_frac"):
        TextOverlayConfig(persist_frac=0.0)
