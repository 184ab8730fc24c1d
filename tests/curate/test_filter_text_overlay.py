"""Text overlays with the real PP-OCRv4 detector and recogniser: subtitles and title cards flagged, plain
and textured content not, boxes kept only when read, batching equal to one-by-one, DB post-processing,
CTC decoding, model-file errors."""
import cv2
import numpy as np
import pytest
from filter_rows import encoded_row, shot_row

from reelforge.curate import text_detector as detector_file
from reelforge.curate.onnx_models import ModelFileError, packaged_file
from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage
from reelforge.curate.text_detector import TextDetector, boxes_from_map, centre_window, det_size
from reelforge.curate.text_recognizer import TextRecognizer, crop_box, ctc_greedy
from reelforge.samples import ShotSpec

CFG = TextOverlayConfig()


@pytest.fixture(scope="module")
def stage():
    return TextOverlayStage(TextOverlayConfig(frames_per_clip=2))  # 2 frames a clip keep the tests fast


def _score(stage, rows):
    out = stage({k: [r.get(k) for r in rows] for k in rows[0]})
    return [{k: out[k][i] for k in out} for i in range(len(rows))]


def _title_row(lines, scale=1.0):
    """A title card: big centred lines over a gradient (no object)."""
    row = shot_row(ShotSpec(16, "gradient", (40, 60, 90), None, motion="static"), width=480, height=270)
    for f in row["frames"]:
        h, w = f.shape[:2]
        y = h // 2 - (len(lines) - 1) * int(30 * scale) // 2
        for line in lines:
            size, thick = scale * h / 200, max(2, int(scale * h / 120))
            tw, th = cv2.getTextSize(line, cv2.FONT_HERSHEY_DUPLEX, size, thick)[0]
            cv2.putText(f, line, ((w - tw) // 2, y + th // 2), cv2.FONT_HERSHEY_DUPLEX, size, (250, 250, 250),
                        thick, cv2.LINE_AA)
            y += int(30 * scale * h / 200) + th
    return row


def test_subtitles_and_title_cards_are_flagged(stage):
    rows = [shot_row(ShotSpec(30, bg, (120, 80, 40), "circle", motion=motion, text="Nobody saw it coming."),
                     width=480, height=270, clip_id=bg)
            for bg, motion in (("noise", "object"), ("stripes", "pan"))]
    rows += [shot_row(ShotSpec(30, "blobs", (120, 80, 40), "circle", motion="jitter", text="Hello"), width=480,
                      height=270, clip_id="one_word")]
    rows += [_title_row(["CHAPTER ONE", "The Long Road"]), _title_row(["END"], scale=3.0)]
    for row in _score(stage, rows):
        assert 0.01 < row["text_area"] < 0.5 and row["text_boxes"] >= 1, row["clip_id"]
        assert CFG.check(row).startswith("text_overlay: text_area=")


def test_no_text_is_not_flagged(stage):
    rows = [shot_row(ShotSpec(30, bg, (120, 80, 40), "circle", motion=motion), width=480, height=270, clip_id=bg)
            for bg, motion in (("noise", "object"), ("stripes", "pan"), ("checker", "static"), ("blobs", "jitter"))]
    for row in _score(stage, rows):
        assert row["text_area"] == 0.0 and row["text_boxes"] == 0 and CFG.check(row) is None, row["clip_id"]


def test_survives_the_codec(stage, tmp_path):
    shot = ShotSpec(40, "noise", (60, 90, 30), "square", motion="object", text="The tide comes in at dawn.")
    row = _score(stage, [encoded_row(shot, tmp_path, width=480, height=270)])[0]
    assert CFG.check(row) is not None


def test_batch_equals_one_by_one_and_bad_rows(stage):
    """Clips of different sizes share a batch; a failed row is skipped; a row without frames fails alone."""
    a = shot_row(ShotSpec(8, "noise", (60, 90, 30), None, motion="static", text="Where were you?"),
                 width=480, height=270, clip_id="a")
    b = shot_row(ShotSpec(8, "gradient", (160, 90, 30), None, motion="static", text="Hello there"),
                 width=320, height=240, clip_id="b")
    skipped, broken = dict(a, clip_id="s", status="failed"), dict(b, clip_id="x", frames=None)
    batch = _score(stage, [a, b, skipped, broken])
    alone = [_score(stage, [r])[0] for r in (a, b)]
    for got, want in zip(batch, alone):
        assert got["text_area"] == pytest.approx(want["text_area"], abs=1e-6) and got["text_area"] > 0
        assert got["text_boxes"] == want["text_boxes"] and got["status"] == "ok"
    assert batch[2]["status"] == "failed" and batch[2]["text_area"] is None
    assert batch[3]["status"] == "failed" and batch[3]["reason"].startswith("text_overlay: ")
    assert "frames is None" in batch[3]["reason"]


def test_db_postprocessing_grows_lines_and_drops_blobs():
    prob = np.zeros((64, 128), np.float32)
    prob[20:28, 10:90] = 0.9      # a shrunk text line, 80 x 8
    prob[40:60, 100:120] = 0.9    # a 20 x 20 blob: not a line
    boxes, scores = boxes_from_map(prob, thresh=0.3, box_thresh=0.5, unclip_ratio=1.5, max_candidates=100,
                                   min_aspect=1.5)
    assert len(boxes) == 1 and scores[0] > 0.7
    x0, y0 = boxes[0].min(0)
    x1, y1 = boxes[0].max(0)
    # the 2x2 dilation adds a pixel; the contour runs through pixel centres: an 80 x 8 rectangle, grown by
    # DB's unclip distance (area * ratio / perimeter) on every side
    d = 80 * 8 * 1.5 / (2 * (80 + 8))
    assert (x1 - x0) == pytest.approx(80 + 2 * d, abs=0.5) and (y1 - y0) == pytest.approx(8 + 2 * d, abs=0.5)
    assert det_size(270, 480, 256) == (256, 448)


def test_subtitle_over_a_checkerboard_is_caught_by_reading(stage):
    """The DB-net scores this subtitle 0.59 (under PaddleOCR's 0.6): at 0.6 without reading it is lost,
    with reading it is kept (read at 0.99)."""
    row = shot_row(ShotSpec(48, "checker", (70, 90, 120), "circle", motion="static",
                            text="Where were you last night?"), width=480, height=270, fps=24.0, seed=1)
    unread = TextOverlayStage(TextOverlayConfig(frames_per_clip=2, box_thresh=0.6, sure_box_thresh=0.6))
    assert unread.detector.reader is None and CFG.check(_score(unread, [row])[0]) is None
    assert CFG.check(_score(stage, [row])[0]) is not None


class _Reader:
    """Stands in for the recogniser: a fixed verdict, counting the crops it is shown."""

    def __init__(self, text, conf):
        self.result, self.crops = (text, conf), 0

    def read(self, crops):
        self.crops += len(crops)
        return [self.result] * len(crops)


def test_unread_boxes_are_dropped_and_a_clip_reads_each_place_once(stage):
    det = stage.detector
    row = shot_row(ShotSpec(8, "gradient", (60, 90, 30), None, motion="static", text="Hello there"),
                   width=480, height=270, k=4)
    frames = row["frames"]                                   # 4 frames, the subtitle at the same place
    real = det.reader
    try:
        det.reader = _Reader("", 0.0)                        # nothing read: every box goes
        assert all(f.area == 0.0 and len(f.boxes) == 0 for f in det.detect(frames, clips=[0] * 4))
        assert det.reader.crops == 1                         # one place, read once for the clip
        det.reader = _Reader("Hi", 0.3)                      # read, but under min_read_score 0.5
        assert all(f.area == 0.0 for f in det.detect(frames, clips=[0, 0, 1, 1]))
        assert det.reader.crops == 2                         # once per clip
        det.reader = _Reader("Hello there", 0.9)
        assert all(f.area > 0.005 for f in det.detect(frames))
        assert det.reader.crops == 4                         # no clips given: each frame its own
    finally:
        det.reader = real


def test_recogniser_reads_a_line_and_not_texture():
    reader = TextRecognizer()
    line = np.full((40, 360, 3), 30, np.uint8)
    cv2.putText(line, "Nobody saw it", (8, 30), cv2.FONT_HERSHEY_DUPLEX, 1.0, (240, 240, 240), 2, cv2.LINE_AA)
    rng = np.random.default_rng(0)
    noise = cv2.resize(rng.integers(0, 255, (10, 90, 3), dtype=np.uint8), (360, 40), interpolation=cv2.INTER_NEAREST)
    (text, conf), (_, noise_conf) = reader.read([line, noise])
    assert text.replace(" ", "") == "Nobodysawit" and conf > 0.7
    assert noise_conf < 0.5
    # a rotated box crops upright; a tall crop turns a quarter; a long line is read around its middle
    box = np.array([[10, 5], [290, 5], [290, 35], [10, 35]], np.float32)[[2, 0, 3, 1]]
    assert crop_box(line, box).shape[:2] == (30, 280)
    assert crop_box(line[:, :40], np.array([[0, 0], [20, 0], [20, 40], [0, 40]], np.float32)).shape[:2] == (20, 40)
    assert centre_window(np.zeros((10, 300, 3), np.uint8), 10.0).shape[:2] == (10, 100)


def test_ctc_greedy_merges_repeats_and_drops_blanks():
    ids = np.array([[1, 1, 0, 1, 2, 2, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]])
    probs = np.full((2, 8, 3), 0.1, np.float32)
    for n in range(2):
        probs[n, np.arange(8), ids[n]] = 0.8
    probs[0, 4, 2] = 0.6
    (got, conf), (empty, zero) = ctc_greedy(probs)
    assert got == [1, 1, 2] and conf == pytest.approx((0.8 + 0.8 + 0.6) / 3)
    assert empty == [] and zero == 0.0


def test_missing_or_broken_model_file_names_it(tmp_path):
    with pytest.raises(ModelFileError, match=r"text detector .*nothere\.onnx does not exist"):
        TextDetector(str(tmp_path / "nothere.onnx"))
    bad = tmp_path / "det.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match=r"cannot load model file .*det\.onnx"):
        TextDetector(str(bad))
    with pytest.raises(ModelFileError, match=r"text recogniser .*norec\.onnx does not exist"):
        TextDetector(rec_model_path=str(tmp_path / "norec.onnx"))
    with pytest.raises(ModelFileError, match=r"text recogniser .*no 'character' dictionary"):
        TextRecognizer(str(packaged_file(detector_file.PACKAGE, detector_file.MODEL_FILE, "det")))  # det, not rec


def test_a_build_with_a_missing_model_file_fails_each_clip_naming_it(tmp_path):
    """What the build's workers do when the stage cannot start: every row failed, the reason naming the file."""
    from reelforge.curate.runner import StageChain, StageSpec

    cfg = TextOverlayConfig(rec_model_path=str(tmp_path / "rec.onnx"))
    row = shot_row(ShotSpec(4, "noise", (60, 90, 30), None, motion="static"), k=2)
    out = StageChain([StageSpec(TextOverlayStage, (cfg,))], "record").run({k: [v, v] for k, v in row.items()})
    assert out["status"] == ["failed", "failed"]
    assert all(r.startswith("text_overlay: cannot start: ModelFileError: text recogniser") and
               f"{tmp_path / 'rec.onnx'} does not exist" in r for r in out["reason"]), out["reason"]


def test_config_check_and_validation():
    assert CFG.check({"text_area": 0.005, "text_boxes": 9, "text_box_max": 0.5}) is None
    cfg = TextOverlayConfig(max_text_boxes=3, max_text_box=0.2)
    assert cfg.check({"text_area": 0.005, "text_boxes": 4}) == "text_overlay: text_boxes=4 > max 3"
    assert cfg.check({"text_area": 0.005, "text_box_max": 0.3}) == "text_overlay: text_box_max=0.3 > max 0.2"
    assert CFG.check({"text_area": None}) is None
    with pytest.raises(ValueError, match="short_side"):
        TextOverlayConfig(short_side=250)
    with pytest.raises(ValueError, match="max_text_area"):
        TextOverlayConfig(max_text_area=2.0)
    with pytest.raises(ValueError, match="sure_box_thresh"):
        TextOverlayConfig(sure_box_thresh=1.5)
    with pytest.raises(ValueError, match="max_read_ratio"):
        TextOverlayConfig(max_read_ratio=0.5)
