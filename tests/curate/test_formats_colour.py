"""Clips keep their source's colours whatever the source's matrix, range, bit depth or transfer.

Saturated bars show a wrong matrix or range as tens of levels (on real footage it is 3-5: the slow build
test, ``test_formats_build.py``). Each source goes through the transcode stage and its clip is read with
our own numpy YUV -> RGB by the clip's tags (``formats_check.to_rgb``), and the source likewise by its tags:
before the clips were tagged, a BT.709 source came out read as BT.601, a full-range one stretched, and a
PQ one dim and grey.
"""
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

from reelforge.curate.stages.probe import probe_file  # noqa: E402
from reelforge.curate.stages.transcode import Transcode, TranscodeConfig  # noqa: E402

RATE = Fraction(24)


def bars(w: int = 96, h: int = 64, n: int = 6) -> list[np.ndarray]:
    """75 % colour bars over a grey ramp, moving a pixel a frame (RGB uint8)."""
    cols = np.array([(191, 191, 191), (191, 191, 0), (0, 191, 191), (0, 191, 0), (191, 0, 191), (191, 0, 0),
                     (0, 0, 191), (20, 20, 20)], np.uint8)
    frames = []
    for t in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        idx = ((np.arange(w) + t) * len(cols) // w) % len(cols)
        img[: h * 2 // 3] = cols[idx][None]
        img[h * 2 // 3:] = np.linspace(16, 235, w).astype(np.uint8)[None, :, None]
        frames.append(img)
    return frames


def transcode_all(path: Path) -> dict:
    """The transcode stage's output for one clip spanning every frame of ``path``."""
    p = probe_file(str(path))
    with av.open(str(path)) as c:
        ts = [f.time for f in c.decode(video=0)]
    row = {"video_path": str(path), "start_frame": 0, "end_frame": len(ts), "start_pts": ts[0], "end_pts": ts[-1],
           "rotation": p["rotation"], "sar": p["sar"], "src_fps": p["fps"], "status": "ok", "reason": "",
           "start_s": ts[0]}
    out = Transcode(TranscodeConfig())({k: [v] for k, v in row.items()})
    return row | {k: v[0] for k, v in out.items()}


CASES = {
    # name: (codec, pix_fmt, encode kwargs, frame size)
    "bt709_tv": ("libx264", "yuv420p", dict(tags=fi.BT709, rng=fi.LIMITED), (96, 64)),
    "bt601_full_yuvj": ("libx264", "yuvj420p", dict(tags=fi.BT601), (96, 64)),
    "bt709_full_tag": ("libx264", "yuv420p", dict(tags=fi.BT709, rng=fi.FULL), (96, 64)),
    "mjpeg_full": ("mjpeg", "yuvj422p", dict(options={"qscale": "2"}), (96, 64)),
    "untagged_sd": ("libx264", "yuv420p", {}, (96, 64)),
    "high10_bt709": ("libx264", "yuv420p10le", dict(tags=fi.BT709, rng=fi.LIMITED), (96, 64)),
    "bt2020_sdr_10bit": ("libx265", "yuv420p10le", dict(tags=dict(colorspace=9, color_primaries=1, color_trc=1),
                                                        rng=fi.LIMITED, options=fi.X265), (96, 64)),
    "gray": ("ffv1", "gray", {}, (96, 64)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_clip_colours_match_the_source(name, tmp_path):
    codec, pix_fmt, kw, (w, h) = CASES[name]
    kw = dict(kw)
    kw.setdefault("options", fi.X264 if codec == "libx264" else None)
    src = fi.encode(tmp_path / f"{name}.mkv", bars(w, h), RATE, codec, pix_fmt, **kw)
    out = transcode_all(src)
    assert out["status"] == "ok", out["reason"]
    # x264 on 96x64 bars loses ~1-2.5 levels of mean; a wrong matrix or range costs 3-9 and 5-9 per cell
    j = fc.judge_clip(out, out["mp4"], fc.display_frames(src), mean_tol=3.0, grid_tol=3.5)
    assert not j["problems"], j
    with av.open(io.BytesIO(out["mp4"])) as c:
        cc = c.streams.video[0].codec_context
        assert cc.color_range == 1 and cc.colorspace in (1, 5, 6), "the clip says how to read it"
    # the sampled frames the scorers see are the same colours
    ref = fc.display_frames(src)
    m, g = fc.colour_error(out["frames"][0].astype(np.float64), ref[0])
    assert m < 2.5 and g < 4.0, (m, g)


def test_untagged_hd_is_read_as_bt709_and_tagged_so(tmp_path):
    """An untagged 1280x720 source is BT.709 to players (mpv, VLC); its clip, downscaled to 576 lines where
    a player would guess BT.601 for an untagged clip, says BT.709 and shows the same colours."""
    src = fi.encode(tmp_path / "hd.mp4", fi.resized(bars(96, 64, 3), 1280, 720), RATE, "libx264", "yuv420p",
                    options=fi.X264)
    assert probe_file(str(src))["color"] == "bt709/tv (guessed)"
    out = transcode_all(src)
    assert (out["width"], out["height"]) == (1024, 576)
    j = fc.judge_clip(out, out["mp4"], fc.display_frames(src), mean_tol=3.0, grid_tol=3.5)
    assert not j["problems"], j
    with av.open(io.BytesIO(out["mp4"])) as c:
        assert c.streams.video[0].codec_context.colorspace == 1


def test_hdr_pq_is_tone_mapped_to_the_sdr_picture(tmp_path):
    """HDR10 made from an SDR picture (SDR white at 203 nits, BT.2408) comes back as that picture; shown
    without tone mapping the PQ numbers are ~30 levels dim and desaturated."""
    sdr = bars(96, 64, 3)
    src = fi.encode(tmp_path / "pq.mp4", sdr, RATE, "libx265", "yuv420p10le", tags=fi.BT2020_PQ, rng=fi.LIMITED,
                    options=fi.X265, codec_tag="hvc1")
    assert probe_file(str(src))["color"] == "bt2020/tv pq"
    out = transcode_all(src)
    assert out["status"] == "ok", out["reason"]
    j = fc.judge_clip(out, out["mp4"], sdr, mean_tol=8.0, grid_tol=12.0)
    assert not j["problems"], j
    with av.open(io.BytesIO(out["mp4"])) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 1, 1)


def test_probe_records_the_colour(tmp_path):
    frames = bars(96, 64, 2)
    got = {}
    for name, pix, kw in (("a", "yuv420p", dict(tags=fi.BT709, rng=fi.LIMITED)), ("b", "yuvj420p", dict(tags=fi.BT601)),
                          ("c", "yuv420p", {})):
        path = fi.encode(tmp_path / f"{name}.mkv", frames, RATE, "libx264", pix, options=fi.X264, **kw)
        got[name] = probe_file(str(path))["color"]
    assert got == {"a": "bt709/tv", "b": "bt601/pc", "c": "bt601/tv (guessed)"}
