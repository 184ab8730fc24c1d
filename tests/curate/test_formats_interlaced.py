"""Interlaced sources (broadcast .ts, camcorders): the transcode deinterlaces them (bwdif, one frame per
frame); progressive sources take the path they took before, byte for byte."""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import formats_check as fc  # noqa: E402
import formats_inputs as fi  # noqa: E402

from reelforge.curate.deinterlace import Deinterlacer  # noqa: E402
from reelforge.curate.stages import transcode as tr  # noqa: E402
from reelforge.curate.stages.probe import probe_file  # noqa: E402

RATE = Fraction(25)
W, H, N = 128, 96, 20
STEP = 3  # px the edge moves per field


def fields(n: int = N) -> list[np.ndarray]:
    """A bright area whose right edge moves STEP px per field, shot bottom field first as an interlaced
    camera does: the bottom field (odd lines) at 2i, the top (even lines) at 2i + 1. Woven, lines
    alternate by STEP px. (Bottom first because FFmpeg's libx264 takes the field order from each
    frame's top-field-first flag, which PyAV cannot set: its streams say bottom first.)"""
    out = []
    for i in range(n):
        img = np.full((H, W, 3), 30, np.uint8)
        for y in range(H):
            img[y, :10 + STEP * (2 * i + 1 - y % 2)] = 220
        out.append(img)
    return out


def combing(frames) -> float:
    """Line-to-line difference energy: how far each line is from the mean of its neighbours (luma,
    levels). Woven fields of a moving edge make every other line jump; a progressive picture does not."""
    e = []
    for f in frames:
        y = f.to_ndarray(format="gray").astype(np.float64)
        e.append(np.abs(y[1:-1] - 0.5 * (y[:-2] + y[2:])).mean())
    return float(np.mean(e))


def edges(frame) -> np.ndarray:
    """Per line, the x where the bright area ends."""
    y = frame.to_ndarray(format="gray")
    return (y > 125).sum(axis=1)


def transcode(path: Path, a: int, b: int, old: bool = False, monkeypatch=None) -> dict:
    """The transcode stage's output for source frames [a, b); ``old``: the path before deinterlacing
    (every frame straight to the encoder, as decoded)."""
    if old:
        monkeypatch.setattr(tr._ClipEncoder, "add", tr._ClipEncoder._add)
    try:
        p = probe_file(str(path))
        ts = fc.source_times(path)
        row = {"video_path": str(path), "start_frame": a, "end_frame": b, "start_pts": ts[a],
               "end_pts": ts[b - 1], "rotation": p["rotation"], "sar": p["sar"], "src_fps": p["fps"],
               "status": "ok", "reason": "", "start_s": ts[a]}
        out = tr.Transcode(tr.TranscodeConfig())({k: [v] for k, v in row.items()})
    finally:
        if old:
            monkeypatch.undo()
    out = {k: v[0] for k, v in out.items()}
    assert out["status"] == "ok", out["reason"]
    return out


@pytest.mark.parametrize("container", ["ts", "mp4"])
def test_interlaced_source_is_deinterlaced(tmp_path, monkeypatch, container):
    src = fi.encode(tmp_path / f"interlaced.{container}", fields(), RATE, "libx264", "yuv420p", tags=fi.BT601,
                    rng=fi.LIMITED, options={"preset": "veryfast", "crf": "16", "g": "10",
                                             "x264-params": "interlaced=1:bff=1"})
    a, b = 3, 17  # mid-stream: the span starts after a keyframe, the filter's first frame has no past
    old = transcode(src, a, b, old=True, monkeypatch=monkeypatch)
    new = transcode(src, a, b)
    old_frames, _ = fc.clip_frames(old["mp4"])
    new_frames, info = fc.clip_frames(new["mp4"])
    # the old clip: fields woven, every moving edge combed (~4 levels here); the new one: a few tenths
    assert combing(old_frames) > 3.0
    assert combing(new_frames) < 0.1 * combing(old_frames), (combing(old_frames), combing(new_frames))
    # one frame out per frame in, at the same times
    assert new["num_frames"] == old["num_frames"] == len(new_frames) == b - a
    assert [f.time for f in new_frames] == pytest.approx([f.time for f in old_frames])
    assert info["rate"] == pytest.approx(25.0)
    assert new["frame_times"] == old["frame_times"]
    # each output frame is its first field's moment (bottom, as the frames are flagged): every line's edge
    # is where the bottom field of source frame a + i had it, not halfway and not the top field's
    for i, f in enumerate(new_frames):
        first = 10 + STEP * 2 * (a + i)
        x = edges(f)[4:-4]
        assert abs(np.median(x) - first) <= 1.5, (i, np.median(x), first)
        assert np.ptp(x) <= 4, (i, x)
    # the scorers' frames come from the deinterlaced picture too
    small = new["frames"][..., 1].astype(np.float64)
    assert np.abs(small[:, 1:-1] - 0.5 * (small[:, :-2] + small[:, 2:])).mean() < 1.0


def test_progressive_source_is_unchanged(tmp_path, monkeypatch):
    src = fi.encode(tmp_path / "progressive.ts", fields(12), RATE, "libx264", "yuv420p", tags=fi.BT601,
                    rng=fi.LIMITED, options={"preset": "veryfast", "crf": "16", "g": "10"})
    built = []
    real = Deinterlacer._build
    monkeypatch.setattr(Deinterlacer, "_build", lambda self, f: built.append(f) or real(self, f))
    new = transcode(src, 2, 11)
    assert not built  # no filter graph for a progressive source
    old = transcode(src, 2, 11, old=True, monkeypatch=monkeypatch)
    assert new["mp4"] == old["mp4"]
    assert np.array_equal(new["frames"], old["frames"])
    assert new["frame_signature"] == old["frame_signature"]


def test_filter_restarts_when_the_frame_size_changes():
    """A broadcast that switches programmes changes size mid-stream: the filter is drained and rebuilt,
    every frame still comes out once, in order, at its time."""
    import av

    def frame(w, h, pts):
        f = av.VideoFrame.from_ndarray(np.zeros((h, w, 3), np.uint8), format="rgb24").reformat(format="yuv420p")
        f.pts, f.time_base = pts, Fraction(1, 25)
        return f

    d = Deinterlacer(1)
    sizes = [(64, 48)] * 3 + [(96, 64)] * 3
    out = []
    for i, (w, h) in enumerate(sizes):
        out += d.push(frame(w, h, i))
    out += d.flush()
    assert [(f.width, f.height) for f in out] == sizes
    assert [f.time for f in out] == pytest.approx([i / 25 for i in range(len(sizes))])
