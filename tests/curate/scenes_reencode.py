"""Re-encoding real media across encoder settings, for the fast-vs-exact shot reader matrix.

Sources are decoded once per size (``SourceFrames``) and encoded from memory, so a variant costs one
encode of a small picture, not a decode of the 480p/720p original."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.frame import PictureType


@dataclass(frozen=True)
class Variant:
    codec: str = "libx264"  # "libx264" | "libx265"
    gop: int = 250  # keyint: the longest GOP
    bframes: int = 3
    scenecut: bool = True  # keyframes at scene cuts (x264/x265 default); False: only every `gop`
    size: tuple[int, int] = (160, 90)
    crf: int = 23
    preset: str = "veryfast"

    @property
    def name(self) -> str:
        sc = "sc" if self.scenecut else "nosc"
        return f"{self.codec}-g{self.gop}-b{self.bframes}-{sc}-{self.size[0]}x{self.size[1]}"

    def options(self) -> dict[str, str]:
        if self.codec == "libx264":
            opts = {"crf": str(self.crf), "preset": self.preset, "g": str(self.gop), "bf": str(self.bframes)}
            if not self.scenecut:
                opts["sc_threshold"] = "0"
            return opts
        params = [f"keyint={self.gop}", f"bframes={self.bframes}", "log-level=error"]
        if not self.scenecut:
            params.append("scenecut=0")
        return {"crf": str(self.crf), "preset": self.preset, "x265-params": ":".join(params)}


# frames of sizes up to this many pixels are kept in memory between encodes (720 frames of 640x360:
# 250 MB); bigger ones are decoded again for each encode (720 frames of 1080p would be 2.2 GB)
_CACHE_PIXELS = 640 * 360


class SourceFrames:
    """A source video's frames at one size (yuv420p) and its frame rate: the first ``limit`` (all: None)."""

    def __init__(self, path: Path, size: tuple[int, int], limit: int | None = None):
        self.path, self.size, self.limit = path, size, limit
        self._cached: list[av.VideoFrame] | None = None
        with av.open(str(path)) as c:
            self.rate = c.streams.video[0].average_rate or Fraction(24)
        if size[0] * size[1] <= _CACHE_PIXELS:
            self._cached = list(self._decode())

    def _decode(self):
        with av.open(str(self.path)) as c:
            for n, f in enumerate(c.decode(c.streams.video[0])):
                if self.limit is not None and n >= self.limit:
                    return
                yield f.reformat(width=self.size[0], height=self.size[1], format="yuv420p")

    @property
    def frames(self):
        return self._cached if self._cached is not None else self._decode()

    def encode(self, v: Variant, out: Path) -> Path:
        assert v.size == self.size, (v.size, self.size)
        with av.open(str(out), "w") as c:
            st = c.add_stream(v.codec, rate=self.rate)
            st.width, st.height, st.pix_fmt = v.size[0], v.size[1], "yuv420p"
            st.time_base = 1 / self.rate
            st.options = v.options()
            for n, f in enumerate(self.frames):
                f.pts, f.time_base = n, 1 / self.rate  # constant frame rate, frame n at n / rate
                # the decoder's picture types travel with the frames, and libx264/libx265 obey them
                # (no B-frames, keyframes where the source had them): let the encoder decide
                f.pict_type = PictureType.NONE
                for p in st.encode(f):
                    c.mux(p)
            for p in st.encode():
                c.mux(p)
        return out


# --- codecs, containers and timings the matrix above does not choose: what users bring.
# Each recipe is one encoder + container (+ pixel format, + timing) from SourceFrames; an encoder this
# PyAV build lacks is a skip (``Recipe.missing``), not a failure.

# irregular frame durations (ms) of the "vfr" timing: a phone's camera drops and stretches frames
_VFR_STEPS_MS = (33, 42, 42, 50, 58, 42, 25, 42, 67, 42, 33)


@dataclass(frozen=True)
class Recipe:
    name: str  # also the file name's stem
    codec: str  # a PyAV encoder
    ext: str  # the container, by extension
    pix_fmt: str = "yuv420p"
    options: tuple[tuple[str, str], ...] = ()
    # "cfr": frame n at n / rate; "vfr": irregular steps (_VFR_STEPS_MS) on a 1/90000 (mp4, ts) or
    # 1/1000 (mkv) clock; "start10": the first frame at 10 s; "trim": an mp4 whose edit list starts 13
    # frames into the first GOP (a stream-copy trim), those frames demuxed but flagged discard; "wrap":
    # an MPEG-TS clock that passes 2**33 (26.5 h) 5 s in, as a long broadcast capture's does
    timing: str = "cfr"

    # source frames a reader never shows (the trim's): GROUND_TRUTH frame f is frame f - first here
    @property
    def first(self) -> int:
        return 13 if self.timing == "trim" else 0

    def missing(self) -> str | None:
        """Why this recipe cannot be made here (None: it can)."""
        if self.codec not in av.codecs_available:
            return f"encoder {self.codec} is not in this PyAV build"
        return None

    def pts(self, n: int, rate: Fraction) -> tuple[int, Fraction]:
        """(pts, time base) of source frame n."""
        if self.timing == "vfr":
            tb = Fraction(1, 1000) if self.ext == "mkv" else Fraction(1, 90000)
            ms = sum(_VFR_STEPS_MS[i % len(_VFR_STEPS_MS)] for i in range(n))
            return int(ms * Fraction(1, 1000) / tb), tb
        if self.timing == "wrap":
            tb = Fraction(1, 90000)
            return 2**33 - 5 * 90000 + int(n / rate / tb), tb
        offset = {"start10": int(10 * rate), "trim": -self.first}.get(self.timing, 0)
        return n + offset, 1 / rate


def encode_recipe(src: SourceFrames, r: Recipe, out: Path, frames: int | None = None) -> Path:
    """Encode the first ``frames`` (all: None) of ``src`` with recipe ``r`` into ``out``."""
    tb = r.pts(0, src.rate)[1]
    with av.open(str(out), "w") as c:
        st = c.add_stream(r.codec, rate=src.rate)
        st.width, st.height, st.pix_fmt = src.size[0], src.size[1], r.pix_fmt
        # the encoder's clock too: PyAV rescales frame pts to it, and at 1/rate irregular times collide
        st.time_base = st.codec_context.time_base = tb
        st.options = dict(r.options)
        for n, f in enumerate(src.frames):
            if frames is not None and n >= frames:
                break
            g = f if r.pix_fmt == "yuv420p" else f.reformat(format=r.pix_fmt)
            g.pts, g.time_base = r.pts(n, src.rate)
            g.pict_type = PictureType.NONE  # let the encoder choose (see SourceFrames.encode)
            for p in st.encode(g):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return out


_X264 = (("crf", "23"), ("preset", "veryfast"), ("g", "50"), ("bf", "3"))
_SVT = (("crf", "40"), ("preset", "12"))
RECIPES = {r.name: r for r in [
    Recipe("vp9", "libvpx-vp9", "webm", options=(("crf", "32"), ("b:v", "0"), ("speed", "8"), ("row-mt", "1"))),
    # hidden alt-ref frames, packed with the next shown frame into superframes
    Recipe("vp9-altref", "libvpx-vp9", "webm", options=(
        ("crf", "32"), ("b:v", "0"), ("speed", "8"), ("auto-alt-ref", "1"), ("lag-in-frames", "25"))),
    Recipe("vp8-altref", "libvpx", "webm", options=(
        ("crf", "10"), ("b:v", "1M"), ("auto-alt-ref", "1"), ("lag-in-frames", "16"), ("deadline", "realtime"))),
    Recipe("av1", "libsvtav1", "mp4", options=_SVT),
    Recipe("av1-mkv", "libsvtav1", "mkv", options=_SVT),
    Recipe("av1-webm", "libsvtav1", "webm", options=_SVT),
    # Annex B: no NAL length prefix, so which packets are references is unknown
    Recipe("h264-ts", "libx264", "ts", options=_X264),
    Recipe("mpeg2-ts", "mpeg2video", "ts", options=(("g", "15"), ("bf", "2"), ("b", "1M"))),  # open GOPs
    Recipe("mpeg2-mpg", "mpeg2video", "mpg", options=(("g", "15"), ("bf", "2"), ("b", "1M"))),
    Recipe("mpeg1-mpg", "mpeg1video", "mpg", options=(("g", "15"), ("bf", "2"), ("b", "1M"))),
    Recipe("mpeg4-avi", "mpeg4", "avi", options=(("g", "50"), ("bf", "2"), ("b", "800k"))),
    Recipe("mpeg4-mp4", "mpeg4", "mp4", options=(("g", "50"), ("bf", "2"), ("b", "800k"))),
    Recipe("prores", "prores", "mov", pix_fmt="yuv422p10le"),  # all-intra
    Recipe("mjpeg", "mjpeg", "avi", pix_fmt="yuvj420p"),
    Recipe("ffv1", "ffv1", "mkv"),
    Recipe("h264-opengop", "libx264", "mp4", options=_X264 + (("x264-params", "open_gop=1"),)),
    Recipe("h264-10bit", "libx264", "mp4", pix_fmt="yuv420p10le", options=_X264),
    Recipe("h264-intra", "libx264", "mp4", options=(("crf", "23"), ("preset", "veryfast"), ("g", "1"))),
    Recipe("h264-vfr", "libx264", "mp4", options=_X264, timing="vfr"),
    Recipe("h264-vfr-mkv", "libx264", "mkv", options=_X264, timing="vfr"),
    Recipe("h264-start10", "libx264", "mkv", options=_X264, timing="start10"),
    Recipe("h264-start10-ts", "libx264", "ts", options=_X264, timing="start10"),
    Recipe("h264-trim", "libx264", "mp4", options=_X264, timing="trim"),
    Recipe("h264-wrap-ts", "libx264", "ts", options=_X264, timing="wrap"),
    Recipe("h264-raw", "libx264", "h264", options=_X264),  # an elementary stream: packets without pts
    Recipe("hevc-ts", "libx265", "ts", options=(  # Annex B HEVC, as broadcast and some cameras write it
        ("crf", "28"), ("preset", "veryfast"), ("x265-params", "keyint=50:log-level=error"))),
    Recipe("hevc-opengop-mkv", "libx265", "mkv", options=(
        ("crf", "28"), ("preset", "veryfast"), ("x265-params", "keyint=50:open-gop=1:log-level=error"))),
]}
