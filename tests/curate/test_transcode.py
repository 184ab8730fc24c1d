"""Transcode on plain dicts: exact frame counts, upright rotation, square pixels, fps cap, letterbox crop."""
from __future__ import annotations

import io

import av
import decord
import numpy as np
import pytest

from reelforge.curate.stages.probe import probe_file
from reelforge.curate.stages.transcode import Transcode, TranscodeConfig, output_size
from reelforge.samples import ShotSpec, VideoSpec, render_video


def _pts(path) -> list[float]:
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(c.streams.video[0])]


def _row(path, start, end):
    p = probe_file(str(path))
    ts = _pts(path)
    return {"video_path": str(path), "start_frame": start, "end_frame": end, "start_pts": ts[start],
            "end_pts": ts[end - 1], "rotation": p["rotation"], "sar": p["sar"], "src_fps": p["fps"],
            "status": "ok", "reason": ""}


def _run(row, **cfg):
    out = Transcode(TranscodeConfig(**cfg))({k: [v] for k, v in row.items()})
    return {k: v[0] for k, v in out.items()}


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    spec = VideoSpec("tc", [ShotSpec(30, color=(200, 60, 40)), ShotSpec(30, color=(30, 90, 220), motion="pan")],
                     width=320, height=240, fps=30.0, letterbox=30)
    return render_video(spec, tmp_path_factory.mktemp("tc"))


def test_exact_span_plays_and_matches_metadata(video):
    out = _run(_row(video, 5, 25))
    assert out["status"] == "ok" and out["num_frames"] == 20
    vr = decord.VideoReader(io.BytesIO(out["mp4"]))
    assert len(vr) == 20 and vr[0].shape == (out["height"], out["width"], 3)
    with av.open(io.BytesIO(out["mp4"])) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert out["frames"].shape[0] == 8 and out["frames"].dtype == np.uint8
    assert out["frame_times"][0] == 0.0 and out["duration_s"] == pytest.approx(20 / 30)
    # the first decoded frame is the span's first frame: the red shot, not a neighbour
    assert vr[0].asnumpy()[100:140, 100:200, 0].mean() > vr[0].asnumpy()[100:140, 100:200, 2].mean()


def test_fps_cap_and_max_side(video):
    out = _run(_row(video, 0, 30), max_fps=15, max_side=160)
    assert out["fps"] == pytest.approx(15) and out["num_frames"] == 15
    assert max(out["width"], out["height"]) <= 160 and out["width"] % 2 == 0 and out["height"] % 2 == 0


def test_letterbox_crop(video):
    out = _run(_row(video, 0, 30), crop_borders=True)
    assert out["crop_box"] is not None
    x0, y0, x1, y1 = out["crop_box"]
    assert abs(y0 - 30) <= 2 and abs((240 - y1) - 30) <= 2
    assert out["height"] < 240


def test_output_size_even_and_never_upscaled():
    assert output_size(853, 480, 1024) == (852, 480)
    assert output_size(1920, 1080, 640) == (640, 360)
    assert output_size(3, 3, 100) == (2, 2)


def test_rotation_non_square_pixels_and_start_offset(shared_media):
    rot = _run(_row(shared_media / "decord_video_90.mov", 0, 3))
    assert (rot["width"], rot["height"]) == (320, 568)  # stored 568x320, shown upright
    sar = _run(_row(shared_media / "psd_issue-195-aspect-ratio.mp4", 0, 10))
    assert sar["width"] / sar["height"] == pytest.approx(1024 / 576, rel=0.01)
    late = _run(_row(shared_media / "psd_delayed_start.mp4", 3, 13))
    assert late["num_frames"] == 10


def test_undecodable_source_is_a_failed_row(video, tmp_path):
    row = _row(video, 0, 10)
    bad = tmp_path / "gone.mp4"
    bad.write_text("not a video\n" * 100)
    row["video_path"] = str(bad)
    out = _run(row)
    assert out["status"] == "failed" and out["reason"].startswith("transcode:")


def test_odd_frame_size_source(tmp_path):
    """321x241 (FFV1 allows odd sizes): the clip comes out even-sized yuv420p H.264 with every frame."""
    path = tmp_path / "odd.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 321, 241, "yuv420p"
        for i in range(20):
            img = np.full((241, 321, 3), (i * 10) % 255, np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = _run(_row(path, 0, 20))
    assert out["status"] == "ok" and out["num_frames"] == 20
    assert (out["width"], out["height"]) == (320, 240)
    assert len(decord.VideoReader(io.BytesIO(out["mp4"]))) == 20


def _batch(rows, **cfg):
    out = Transcode(TranscodeConfig(**cfg))({k: [r[k] for r in rows] for k in rows[0]})
    return [{k: v[i] for k, v in out.items()} for i in range(len(rows))]


def test_clips_of_one_source_share_a_decode_and_match_one_at_a_time(shared_media):
    """Spans of sintel in one batch (neighbours decoded on, one far span sought, listed out of order)
    give the same clips as each span alone: frame counts, sampled frames, and a frame signature
    taken from the encoded frames that matches the one decoded from the clip's mp4."""
    from reelforge.curate.stages.signature import signature_of_video, unpack_signature

    path = shared_media / "sintel_trailer_10s.mp4"
    rows = [_row(path, 0, 30), _row(path, 200, 230), _row(path, 32, 70), _row(path, 72, 73)]
    together = _batch(rows)
    alone = [_run(r) for r in rows]
    for t, a, r in zip(together, alone, rows):
        assert t["status"] == a["status"] == "ok"
        assert t["num_frames"] == a["num_frames"] == r["end_frame"] - r["start_frame"]
        assert np.array_equal(t["frames"], a["frames"]) and t["frame_times"] == a["frame_times"]
        ours, decoded = unpack_signature(t["frame_signature"]), unpack_signature(signature_of_video(t["mp4"]))
        assert np.array_equal(ours["tick"], decoded["tick"])
        bits = [int(np.unpackbits((x ^ y).view(np.uint8)).sum()) for x, y in zip(ours["hash"], decoded["hash"])]
        assert max(bits, default=0) <= 12  # the near-duplicate search allows 40 of 256
    # the first frame of each clip is its own: the 200-230 clip does not start where 32-70 ended
    first = [decord.VideoReader(io.BytesIO(t["mp4"]))[0].asnumpy().astype(int) for t in together]
    assert np.abs(first[1] - first[2]).mean() > 10


def test_a_bad_row_in_a_batch_fails_alone(video, tmp_path):
    bad = tmp_path / "gone.mp4"
    bad.write_text("not a video\n" * 100)
    rows = [_row(video, 0, 10), dict(_row(video, 12, 20), video_path=str(bad)), _row(video, 30, 50)]
    out = _batch(rows)
    assert [o["status"] for o in out] == ["ok", "failed", "ok"]
    assert [o["num_frames"] for o in out] == [10, 0, 20]
