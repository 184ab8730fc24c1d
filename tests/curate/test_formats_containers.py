"""Containers from tools we did not choose: MPEG-TS (no index: its seeks land late), cover art (a video
stream that is one picture), interlaced H.264."""
from __future__ import annotations

import io
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import formats_check as fc  # noqa: E402
import formats_inputs as fi  # noqa: E402
from test_formats_colour import bars  # noqa: E402

from reelforge.curate.stages.probe import Probe, probe_file  # noqa: E402
from reelforge.curate.stages.transcode import Transcode, TranscodeConfig  # noqa: E402

RATE = Fraction(24)


def moving(n: int = 48, w: int = 96, h: int = 64) -> list[np.ndarray]:
    """Bars that move 2 px a frame: every frame differs, so a clip that starts late shows it."""
    base = bars(w + 2 * n, h, 1)[0]
    return [np.ascontiguousarray(base[:, 2 * i:2 * i + w]) for i in range(n)]


def _span(path: Path, a: int, b: int) -> dict:
    """The transcode stage's output for source frames [a, b) of ``path``."""
    p = probe_file(str(path))
    with av.open(str(path)) as c:
        ts = [f.time for f in c.decode(video=0)]
    row = {"video_path": str(path), "start_frame": a, "end_frame": b, "start_pts": ts[a], "end_pts": ts[b - 1],
           "rotation": p["rotation"], "sar": p["sar"], "src_fps": p["fps"], "status": "ok", "reason": "",
           "start_s": ts[a]}
    out = Transcode(TranscodeConfig())({k: [v] for k, v in row.items()})
    return row | {k: v[0] for k, v in out.items()}


@pytest.mark.parametrize("opts,name", [
    ({"preset": "veryfast", "crf": "18", "bf": "3", "g": "12"}, "bframes_gop12"),
    ({"preset": "veryfast", "crf": "18", "g": "12", "x264-params": "interlaced=1:tff=1"}, "interlaced"),
])
def test_ts_spans_start_where_planned(tmp_path, opts, name):
    """A .ts seek lands on the keyframe after its target: the span from the first frame lost a GOP (37 of
    60 frames in a 1 s GOP; the rest of the clip shifted), the interlaced one decoded nothing."""
    src = fi.encode(tmp_path / f"{name}.ts", moving(), RATE, "libx264", "yuv420p", options=opts, tags=fi.BT709,
                    rng=fi.LIMITED)
    ref = fc.display_frames(src)
    for a, b in ((0, 48), (17, 40)):
        out = _span(src, a, b)
        assert out["status"] == "ok", out["reason"]
        assert out["num_frames"] == b - a
        j = fc.judge_clip(out, out["mp4"], ref, mean_tol=3.0, grid_tol=3.5)  # frame i is source frame a + i
        assert not j["problems"], (a, b, j)


def _with_cover(path: Path, video: bool) -> Path:
    """An mp4/m4a with cover art (an ``attached_pic`` MJPEG stream) and AAC, with or without a video."""
    import PIL.Image

    frames = moving(24)
    buf = io.BytesIO()
    PIL.Image.fromarray(frames[0]).save(buf, "JPEG")
    with av.open(str(path), "w", format="mp4") as c:
        cover = c.add_stream("mjpeg", rate=1)
        cover.width, cover.height, cover.pix_fmt = 96, 64, "yuvj420p"
        cover.disposition = av.stream.Disposition.attached_pic
        st = None
        if video:
            st = c.add_stream("libx264", rate=RATE)
            st.width, st.height, st.pix_fmt, st.options = 96, 64, "yuv420p", fi.X264
        a = c.add_stream("aac", rate=48000)
        a.layout = "mono"
        pkt = av.Packet(buf.getvalue())
        pkt.stream, pkt.pts, pkt.dts, pkt.time_base = cover, 0, 0, Fraction(1)
        c.mux(pkt)
        fi._audio(c, a, 1.0)
        for n, rgb in enumerate(frames if video else []):
            f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            f.pts, f.time_base = n, 1 / RATE
            for p in st.encode(f):
                c.mux(p)
        if st is not None:
            for p in st.encode():
                c.mux(p)
    return path


def test_audio_with_cover_art_is_not_a_video(tmp_path):
    """A song or podcast (.m4a) with cover art: the cover is a video stream of one picture. It was probed
    as the video (mjpeg, 90000 fps, 90000 'frames') and the file kept as ok."""
    path = _with_cover(tmp_path / "song.m4a", video=False)
    out = Probe().process_row({"path": str(path)})
    assert out["status"] == "failed" and "cover" in out["reason"] and "no video stream" in out["reason"], out


def test_cover_art_beside_a_video_is_skipped(tmp_path):
    path = _with_cover(tmp_path / "clip.mp4", video=True)
    p = probe_file(str(path))
    assert (p["codec"], p["frame_count"], p["fps"]) == ("h264", 24, 24.0)


@pytest.mark.parametrize("exact", [False, True])
def test_the_shot_reader_never_takes_cover_art_for_the_video(tmp_path, exact):
    from reelforge.curate.scenes import SceneConfig, SceneDetectionError, detect_scenes
    path = _with_cover(tmp_path / "clip.mp4", video=True)
    assert detect_scenes(str(path), SceneConfig(exact=exact)).frames == 24
    song = _with_cover(tmp_path / "song.m4a", video=False)  # it read the cover as a one-frame video
    with pytest.raises(SceneDetectionError, match=r"no video stream \(only cover art\)"):
        detect_scenes(str(song), SceneConfig(exact=exact))


def test_mp4_cut_before_its_index_says_so(tmp_path):
    """Most writers put the mp4 index (moov) last: a download or recording cut short has none, and FFmpeg
    says only "Invalid data found when processing input"."""
    full = fi.encode(tmp_path / "full.mp4", moving(24), RATE, "libx264", "yuv420p", options=fi.X264)
    data = full.read_bytes()
    assert data.find(b"moov") > data.find(b"mdat")  # the index is at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = Probe().process_row({"path": str(cut)})
    assert out["status"] == "failed" and "no moov box" in out["reason"], out
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 200)
    assert "not a readable media file" in Probe().process_row({"path": str(text)})["reason"]


def test_rotated_phone_video_is_upright_and_sampled_like_any_other(tmp_path):
    """Phone footage stores landscape pixels and a display rotation. Its clip is upright (portrait) and
    gives the scorers K sampled frames: the rotation path used to hand them every frame of the clip."""
    frames = moving(24, 96, 64)
    stored = [np.ascontiguousarray(np.rot90(f, k=1)) for f in frames]  # turned back: a player turns it on
    src = fi.encode(tmp_path / "phone.mp4", stored, RATE, "libx264", "yuv420p", options=fi.X264, rotation=90,
                    tags=fi.BT709, rng=fi.LIMITED)
    assert probe_file(str(src))["rotation"] in (90, 270)
    out = _span(src, 0, 24)
    assert out["status"] == "ok", out["reason"]
    shown = fc.display_frames(src)
    assert shown[0].shape[:2] == (out["height"], out["width"])
    j = fc.judge_clip(out, out["mp4"], shown, mean_tol=3.0, grid_tol=3.5)
    assert not j["problems"], j
    assert len(out["frames"]) == len(out["frame_times"]) == TranscodeConfig().sample_frames


def test_tiny_source_scores_without_warnings(shared_media, tmp_path):
    """An 8x8 source (the `basic` filter removes it, but it is scored first): motion compared an empty
    border-less middle ("Mean of empty slice" in the build's log for every such clip)."""
    import warnings

    from reelforge.curate.stages.motion import MotionStage

    frames, rate = fi.source_rgb(shared_media, size=(8, 8))
    src = fi.encode(tmp_path / "tiny.mp4", frames, rate, "libx264", "yuv420p", options=fi.X264)
    out = _span(src, 0, len(frames))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = MotionStage().process_row(out)
    assert all(np.isfinite(v) for v in scores.values())
