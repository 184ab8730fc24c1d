"""A truncated download — the first 50 % or 90 % of an mp4 whose index (moov) is at the front — keeps the
shots and clips before the cut, with a reason saying where decoding stopped."""
from __future__ import annotations

import re

import av
import pytest

from reelforge.curate.clip_policy import ClipPolicyConfig
from reelforge.curate.media import complete_prefix, find_cut
from reelforge.curate.pipeline import plan_clip_rows
from reelforge.curate.scenes import SceneConfig
from reelforge.curate.stages.probe import Probe
from reelforge.curate.stages.scene_split import SceneSplit
from reelforge.curate.stages.transcode import Transcode, TranscodeConfig, decode_span
from reelforge.samples import ShotSpec, VideoSpec, render_video


def faststart(src, dst):
    """Re-mux (no re-encode) with the index in front, as downloads made for streaming have it."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        vin = inp.streams.video[0]
        vout = out.add_stream_from_template(vin)
        for pkt in inp.demux(vin):
            if pkt.dts is None:
                continue
            pkt.stream = vout
            out.mux(pkt)
    return dst


def cut(src, dst, frac):
    data = src.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index comes first
    dst.write_bytes(data[: int(len(data) * frac)])
    return dst


def _frame_times(path):
    with av.open(str(path)) as c:
        return [f.time for f in c.decode(video=0)]


def _video_row(path):
    batch = {"path": [str(path)], "status": ["ok"], "reason": [""]}
    batch = SceneSplit(SceneConfig(), ClipPolicyConfig(min_seconds=0.3))(Probe()(batch))
    return {k: v[0] for k, v in batch.items()}


def _clips(video):
    rows = [r for r in plan_clip_rows(video) if r["status"] == "ok"]
    out = Transcode(TranscodeConfig(max_side=128))({k: [r[k] for r in rows] for k in rows[0]})
    return [{k: out[k][i] for k in out} for i in range(len(rows))]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("trunc")
    spec = VideoSpec("two", [ShotSpec(60, color=(200, 60, 40)), ShotSpec(60, color=(30, 90, 220), motion="pan")],
                     width=160, height=120, fps=30.0)
    return faststart(render_video(spec, d), d / "two_fs.mp4")


@pytest.mark.parametrize("frac", [0.5, 0.9])
def test_truncated_sample_keeps_its_decodable_part(sample, tmp_path, frac):
    part = cut(sample, tmp_path / "part.mp4", frac)
    video = _video_row(part)
    assert video["status"] == "ok", video["reason"]
    n, times = video["frames"], _frame_times(sample)
    assert 0 < n < 120
    m = re.match(rf"truncated: decoded {n} of 120 frames, stopped at (\d+\.\d) s \(", video["reason"])
    # the last frame shown (B-frames: a packet or two past the last one decoded in order) is where it stopped
    assert m and times[n - 1] - 0.05 <= float(m.group(1)) <= times[n + 2] + 0.05, video["reason"]
    # the cut falls inside a packet, or (as the demuxer sees a cut between packets) after the last one
    assert (f"packet {n} at byte" in video["reason"]
            or f"the index promises 120 packets, the file holds {n})" in video["reason"])
    clips = _clips(video)
    assert clips and all(c["status"] == "ok" and c["num_frames"] > 0 for c in clips)
    # every planned frame came out: the clips lie in the decodable part and keep their source frames
    assert sum(c["num_frames"] for c in clips) == sum(c["end_frame"] - c["start_frame"] for c in clips)
    assert max(c["end_frame"] for c in clips) <= n


def test_a_span_that_runs_into_the_cut_says_where_decoding_stopped(sample, tmp_path):
    part = cut(sample, tmp_path / "part.mp4", 0.5)
    n = find_cut(str(part)).packets
    times = _frame_times(sample)
    frames = []
    with pytest.raises(ValueError, match=r"truncated: decoding stopped after the frame at .* of the span"):
        for t, _ in decode_span(str(part), times[0], times[-1]):
            frames.append(t)
    assert 0 < len(frames) <= n


def test_whole_and_unreadable_files_have_no_prefix(sample, tmp_path):
    with complete_prefix(str(sample)) as prefix:
        assert prefix is None and find_cut(str(sample)) is None  # nothing cut off: a failure is something else
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 5000)
    with complete_prefix(str(junk)) as prefix:
        assert prefix is None


def test_index_at_the_end_cut_off_still_fails_with_a_reason(sample, tmp_path):
    tail_index = render_video(VideoSpec("tail", [ShotSpec(30)], width=160, height=120), tmp_path)
    data = tail_index.read_bytes()
    assert data.find(b"mdat") < data.find(b"moov")
    part = tmp_path / "no_index.mp4"
    part.write_bytes(data[: len(data) // 2])
    video = _video_row(part)
    assert video["status"] == "failed" and video["reason"].startswith("probe: mp4 without its index (no moov box)")


@pytest.mark.parametrize("frac,frames,stop", [(0.5, 90, 3.7), (0.9, 214, 8.9)])
def test_truncated_sintel_keeps_its_decodable_part(shared_media, tmp_path, frac, frames, stop):
    full = faststart(shared_media / "sintel_trailer_10s.mp4", tmp_path / "sintel_fs.mp4")
    video = _video_row(cut(full, tmp_path / "part.mp4", frac))
    assert video["status"] == "ok" and video["frames"] == frames
    assert video["reason"].startswith(f"truncated: decoded {frames} of 240 frames, stopped at {stop} s (packet")
    clips = _clips(video)
    assert clips and all(c["status"] == "ok" for c in clips)
