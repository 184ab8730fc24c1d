"""Fast = exact on codecs, containers and timings we did not choose: VP9/VP8 in webm
(hidden alt-ref frames), AV1 in mp4/mkv/webm, H.264 and HEVC in MPEG-TS (Annex B), H.264 as a raw
elementary stream (no pts), MPEG-1, MPEG-2 and MPEG-4 Part 2 (open GOPs), ProRes/MJPEG/FFV1 and
all-intra H.264, x264/x265 open GOPs, 10-bit, variable frame rate, a stream starting at 10 s, an
MPEG-TS clock passing 2**33, an mp4 whose edit list trims into the first GOP.

Each case is re-encoded from real footage with PyAV (``scenes_reencode.RECIPES``); the fast reader
must give the frames, timestamps and cuts (within a frame) a full decode gives, take the path
``EXACT`` says (codecs it cannot read cheaply are read whole, decided from the stream before anything
is decoded), and find GROUND_TRUTH.json's cuts (recall on consensus, precision against union, 2
frames). The default run encodes 15 s of sintel at 320x180; ``-m slow`` runs every recipe on three
sources at three sizes.
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
from types import SimpleNamespace

import av
import numpy as np
import pytest

from reelforge.curate.scenes import SceneConfig, detect_scenes
from reelforge.curate.scenes import reader as scene_reader
from reelforge.curate.scenes.content import detect_content
from reelforge.curate.scenes.features import FastPathUnsupported
from reelforge.curate.scenes.packets import CHUNK_MIN_PACKETS, demux_chunks

from scenes_reencode import RECIPES, SourceFrames, Variant, encode_recipe  # tests/curate/, on sys.path
from test_scenes_real_cuts import SHARED_CUTS_OUTSIDE_UNION

# recipes the reader reads whole, decided from the stream (reader._FAST_CODECS says why for codecs):
# VP8/VP9 skip nothing, libdav1d fixes skip_frame when it opens, intra-only codecs, FFV1 and all-intra
# H.264 have nothing cheaper to skip, a raw elementary stream has no pts
EXACT = {"vp9", "vp9-altref", "vp8-altref", "av1", "av1-mkv", "av1-webm", "prores", "mjpeg", "ffv1",
         "h264-intra", "h264-raw"}
# cuts the detector itself misses (the full decode too: fast = exact holds), not judged against the
# ground truth: all-intra x264 at 160x90 flickers ~1.5 a frame, and sintel's quiet cuts (16-17) fall
# just under the quiet-cut rule's 3 x cut_ratio x level (BENCHMARKS.md, "Shot detection on codecs ...")
DETECTOR_MISSES = {("sintel_trailer_30s.mp4", (160, 90), "h264-intra"): [286],
                   ("sintel_trailer_10s.mp4", (160, 90), "h264-intra"): [214]}


def _close(fast: list[int], exact: list[int], tol: int = 1) -> bool:
    return len(fast) == len(exact) and all(abs(a - b) <= tol for a, b in zip(fast, exact))


class CodecMatrix:
    """Encodes each (source, size, frames, recipe) once into a session folder."""

    def __init__(self, media, out):
        self.media, self.out = media, out
        self._source = None

    def path(self, source: str, name: str, size=(320, 180), frames: int | None = None) -> str:
        r = RECIPES[name]
        if why := r.missing():
            pytest.skip(why)
        p = self.out / f"{source.rsplit('.', 1)[0]}-{size[0]}x{size[1]}-{frames}-{name}.{r.ext}"
        if not p.exists():
            key = (source, size, frames)
            if self._source is None or self._source[0] != key:  # one source's frames at a time
                self._source = (key, SourceFrames(self.media / source, size, frames))
            encode_recipe(self._source[1], r, p)
        return str(p)

    def check(self, source: str, name: str, size=(320, 180), frames: int | None = None,
              truth: dict | None = None) -> float:
        """Fast = exact (+ the ground truth); returns the fast reader's decode fraction."""
        p = self.path(source, name, size, frames)
        cfg = SceneConfig()
        feat = scene_reader.read_features(p, cfg)
        cuts, _ = detect_content(feat, cfg)
        exact = detect_scenes(p, SceneConfig(exact=True))
        want = "exact" if name in EXACT else "fast"
        assert feat.mode == want, f"{name}: read {feat.mode}, expected {want}"
        if want == "exact":  # given up before decoding anything, not after a wasted fast pass
            fr = scene_reader.FastReader(p, cfg)
            with pytest.raises(FastPathUnsupported):
                fr.read()
            assert next(fr._frames_out) == 0, f"{name}: the fast path decoded frames before giving up"
        assert len(feat.pts) == exact.frames, p
        assert np.array_equal(feat.pts, exact.pts), f"{name}: timestamps differ from a full decode"
        assert np.all(np.diff(feat.pts) > 0), f"{name}: timestamps not increasing"
        assert _close(cuts, exact.cuts), f"{source} {name} {size}: fast {cuts} vs exact {exact.cuts}"
        if truth and source in truth:
            gt = dict(truth[source])
            gt["consensus"] = [c for c in gt["consensus"] if c not in DETECTOR_MISSES.get((source, size, name), [])]
            _score(cuts, gt, RECIPES[name].first, exact.frames,
                   SHARED_CUTS_OUTSIDE_UNION.get(source, []), f"{source} {name} {size}")
        return feat.decoded / exact.frames


def _score(cuts: list[int], gt: dict, first: int, n: int, extra: list[int], what: str, tol: int = 2) -> None:
    """Recall on consensus, precision against union (+ verified cuts outside it), in this file's
    frames (GROUND_TRUTH frame f is f - first); cuts within ``tol`` of the ends are not judged."""
    inside = [f - first for f in gt["consensus"] if tol < f - first < n - tol]
    missed = [c for c in inside if not any(abs(c - x) <= tol for x in cuts)]
    assert not missed, f"{what}: missed consensus cuts {missed} (found {cuts})"
    allowed = [f - first for f in gt["union"] + extra]
    false = [c for c in cuts if tol < c < n - tol and not any(abs(c - a) <= tol for a in allowed)]
    assert not false, f"{what}: cuts outside the reference union {false}"


@pytest.fixture(scope="session")
def codecs(shared_media, tmp_path_factory):
    return CodecMatrix(shared_media, tmp_path_factory.mktemp("scenes_codecs"))


# the default run: 15 s of sintel_30s (cuts 286 and 348 of consensus, 356 verified) at 320x180
DEFAULT = ["vp9-altref", "av1", "h264-ts", "mpeg2-ts", "mpeg4-avi", "h264-opengop", "hevc-opengop-mkv",
           "h264-10bit", "h264-vfr", "h264-start10-ts", "h264-trim", "prores", "h264-intra", "h264-raw"]
_SRC, _FRAMES = "sintel_trailer_30s.mp4", 360


@pytest.mark.parametrize("name", DEFAULT)
def test_fast_equals_exact_on_codec(codecs, ground_truth, name):
    codecs.check(_SRC, name, frames=_FRAMES, truth=ground_truth)


def test_x265_with_bframes_is_read_fast(shared_media, tmp_path):
    """x265 codes P-frames as B slices, which FFmpeg skips under BIDIR: the coarse pass lost its P
    chain and the reader fell back to a full decode after a wasted fast pass."""
    v = Variant("libx265", gop=50, bframes=3, size=(160, 90))
    if v.codec not in av.codecs_available:
        pytest.skip("libx265 is not in this PyAV build")
    p = str(SourceFrames(shared_media / _SRC, v.size, _FRAMES).encode(v, tmp_path / "x265.mp4"))
    feat = scene_reader.read_features(p, SceneConfig())
    assert feat.mode == "fast" and feat.decoded < 0.8 * len(feat.pts), (feat.mode, feat.decoded)
    exact = detect_scenes(p, SceneConfig(exact=True))
    assert _close(detect_content(feat, SceneConfig())[0], exact.cuts)


def test_x265_long_gop_keeps_its_loop_filter(shared_media, tmp_path):
    """Skipping HEVC's in-loop filters (deblocking, SAO) drifts along the P chain: 120 frames into
    a 250-frame GOP the thumbnails were 2.5 levels off, and sintel's borderline cut at 356 (a jump of
    34 in fast action) was lost once the x265 fast path was on."""
    v = Variant("libx265", gop=250, bframes=3, scenecut=False, size=(160, 90))
    if v.codec not in av.codecs_available:
        pytest.skip("libx265 is not in this PyAV build")
    p = str(SourceFrames(shared_media / _SRC, v.size, 480).encode(v, tmp_path / "x265.mp4"))
    feat = scene_reader.read_features(p, SceneConfig())
    exact = detect_scenes(p, SceneConfig(exact=True))
    assert feat.mode == "fast" and 356 in exact.cuts
    assert _close(detect_content(feat, SceneConfig())[0], exact.cuts)


def test_cli_on_every_codec_and_damaged_copies(codecs, tmp_path):
    """``reelforge scenes`` as users run it: one line per file, ok or failed with a reason, no
    traceback; halves of files (a cut-off download) and a non-video with a video's name included."""
    files = [codecs.path(_SRC, n, frames=_FRAMES) for n in DEFAULT if not RECIPES[n].missing()]
    damaged = []
    for f in files[:4]:
        data = open(f, "rb").read()
        d = tmp_path / ("half-" + f.rsplit("/", 1)[1])
        d.write_bytes(data[: len(data) // 2])
        damaged.append(str(d))
    junk = tmp_path / "junk.webm"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, np.uint8).tobytes())
    proc = subprocess.run([sys.executable, "-m", "reelforge.cli", "scenes", "--json", *files, *damaged, str(junk)],
                          capture_output=True, text=True, timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    rows = {r["path"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert set(rows) == set(files + damaged + [str(junk)])
    for f in files:
        assert rows[f]["status"] == "ok", rows[f]
        assert any(abs(c - 286 + (13 if "trim" in f else 0)) <= 1 for c in rows[f]["scene_starts"]), rows[f]
    assert rows[str(junk)]["status"] == "failed" and rows[str(junk)]["reason"]
    for d in damaged:  # what was written before the cut-off reads; the rest is not invented
        assert rows[d]["status"] == "failed" and rows[d]["reason"] or 0 < rows[d]["frames"] <= _FRAMES, rows[d]
    assert proc.returncode == 1  # the junk file failed


# --- the demuxer's chunks on hand-made packet sequences (what the encoders above write)

def _pk(pts: int, key: bool = False, discard: bool = False):
    return SimpleNamespace(pts=pts, is_keyframe=key, is_discard=discard, size=100)


def _chunks(packets):
    container = SimpleNamespace(demux=lambda stream: iter(packets))
    all_pts, hidden = [], set()
    return list(demux_chunks(container, None, all_pts, hidden)), all_pts, hidden


def test_open_gop_leading_pictures_go_with_the_chunk_before():
    """Open GOP: K2 at pts 100 is followed in decode order by two pictures shown before it; a decoder
    started at K2 drops them, so they go with the first chunk after a copy of K2."""
    gop1 = [_pk(0, key=True)] + [_pk(i) for i in range(1, CHUNK_MIN_PACKETS + 2)]
    k2 = _pk(100, key=True)
    lead = [_pk(98), _pk(99)]
    rest = [_pk(103), _pk(101), _pk(102)]
    chunks, all_pts, _ = _chunks(gop1 + [k2] + lead + rest)
    assert chunks == [gop1 + [k2] + lead, [k2] + rest]
    assert sorted(all_pts) == sorted(p.pts for p in gop1 + [k2] + lead + rest)  # each frame once


def test_closed_gop_chunks_are_not_copied():
    gop1 = [_pk(0, key=True)] + [_pk(i) for i in range(1, CHUNK_MIN_PACKETS + 2)]
    gop2 = [_pk(100, key=True), _pk(103), _pk(101), _pk(102)]
    assert _chunks(gop1 + gop2)[0] == [gop1, gop2]


def test_discarded_packets_are_fed_but_not_frames():
    """An edit list that starts inside the first GOP: its packets before the edit are discarded
    (negative pts), needed as references but never shown."""
    packets = [_pk(-3, key=True, discard=True), _pk(-1, discard=True), _pk(-2, discard=True), _pk(0), _pk(1)]
    chunks, all_pts, hidden = _chunks(packets)
    assert chunks == [packets] and all_pts == [0, 1] and hidden == {-3, -2, -1}


def test_all_intra_stream_is_left_to_the_full_decode():
    with pytest.raises(FastPathUnsupported):
        _chunks([_pk(i, key=True) for i in range(CHUNK_MIN_PACKETS + 1)])


# --- the whole matrix

SOURCES = ["sintel_trailer_30s.mp4", "psd_testvideo.mp4", "sintel_trailer_10s.mp4"]
SIZES = [(160, 90), (320, 180), (640, 360)]
FULL = list(itertools.product(SOURCES, SIZES, RECIPES))


@pytest.mark.slow
@pytest.mark.parametrize("source,size,name", FULL, ids=[f"{s.split('.')[0]}-{w}x{h}-{n}" for s, (w, h), n in FULL])
def test_fast_equals_exact_on_codec_full_matrix(codecs, ground_truth, source, size, name):
    codecs.check(source, name, size, None, ground_truth)


def _table(media, out, sources: list[str], size: tuple[int, int], names: list[str]) -> None:
    """Print the BENCHMARKS.md table: per source and recipe, the reader taken, the fast reader's
    decode fraction, CPU seconds of the fast and the exact reader side by side (getrusage of this
    process, all threads), fast = exact, and recall / precision against GROUND_TRUTH.json."""
    import os
    import resource

    truth = json.loads((media / "GROUND_TRUTH.json").read_text())
    m = CodecMatrix(media, out)

    def cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    print(f"load average {os.getloadavg()}; {size[0]}x{size[1]}")
    print("| source | recipe | reader | frames | decoded | CPU fast | CPU exact | fast = exact | recall | precision |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for source, name in itertools.product(sources, names):
        try:
            p = m.path(source, name, size)
        except pytest.skip.Exception as exc:
            print(f"| {source} | {name} | skipped: {exc} |")
            continue
        cfg = SceneConfig()
        c0 = cpu()
        feat = scene_reader.read_features(p, cfg)
        cuts, _ = detect_content(feat, cfg)
        c1 = cpu()
        exact = detect_scenes(p, SceneConfig(exact=True))
        c2 = cpu()
        same = _close(cuts, exact.cuts) and np.array_equal(feat.pts, exact.pts)
        rec = prec = "-"
        if gt := truth.get(source):
            first, n, tol = RECIPES[name].first, exact.frames, 2
            cons = [f - first for f in gt["consensus"] if tol < f - first < n - tol]
            allowed = [f - first for f in gt["union"] + SHARED_CUTS_OUTSIDE_UNION.get(source, [])]
            judged = [c for c in cuts if tol < c < n - tol]
            rec = f"{sum(any(abs(c - x) <= tol for x in cuts) for c in cons)}/{len(cons)}"
            prec = f"{sum(any(abs(c - a) <= tol for a in allowed) for c in judged)}/{len(judged)}"
        print(f"| {source.split('.')[0]} | {name} | {feat.mode} | {exact.frames} | {feat.decoded / exact.frames:.2f} "
              f"| {c1 - c0:.2f} s | {c2 - c1:.2f} s | {'yes' if same else 'NO'} | {rec} | {prec} |", flush=True)


if __name__ == "__main__":  # .venv/bin/python tests/curate/test_scenes_codecs.py [WxH [source|recipe ...]]
    import os
    import tempfile
    from pathlib import Path

    SHARED = Path(os.environ.get("REELFORGE_SHARED", Path(__file__).resolve().parents[3] / "shared"))
    wh = tuple(int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "640x360").split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        names = [a for a in sys.argv[2:] if a in RECIPES] or list(RECIPES)
        sources = [a for a in sys.argv[2:] if a not in RECIPES] or ["sintel_trailer_30s.mp4", "psd_testvideo.mp4"]
        _table(SHARED / "media", Path(tmp), sources, wh, names)
