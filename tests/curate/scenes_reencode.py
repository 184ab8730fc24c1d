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
    """A source video's frames at one size (yuv420p) and its frame rate."""

    def __init__(self, path: Path, size: tuple[int, int]):
        self.path, self.size = path, size
        self._cached: list[av.VideoFrame] | None = None
        with av.open(str(path)) as c:
            self.rate = c.streams.video[0].average_rate or Fraction(24)
        if size[0] * size[1] <= _CACHE_PIXELS:
            self._cached = list(self._decode())

    def _decode(self):
        with av.open(str(self.path)) as c:
            for f in c.decode(c.streams.video[0]):
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
