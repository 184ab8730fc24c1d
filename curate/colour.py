"""What a source frame's YUV means, and the colour each clip is written in, tagged.

A decoder hands back YUV numbers; their colours depend on the matrix (BT.601, BT.709, BT.2020), the range
(limited 16-235 or full 0-255) and, for HDR, the transfer (PQ, HLG) and primaries. x264 writes no colour
tags unless told, and a reader of an untagged clip guesses (FFmpeg, decord: BT.601 limited; mpv, VLC: by
the size): passing the source's YUV through untagged turned full-range phone and MJPEG footage
washed-out/crushed by ~8 % and shifted BT.709 footage's hues (BENCHMARKS.md, "Footage from encoders we did
not choose"). So each clip is written in limited range and tagged with its matrix, range, primaries and
transfer, and PyAV, decord and players read the source's colours from it.

The matrix is kept when it is BT.601 or BT.709 (nearly every SDR source): scaling without a matrix change
costs what it did before (a 601 -> 709 conversion costs 3-6x the scale, BENCHMARKS.md). Other matrices
(BT.2020, SMPTE 240M, FCC) are converted to BT.709. Full range becomes limited (cheap). HDR (PQ or HLG
transfer) is tone-mapped to SDR BT.709 by swscale's colour management: an 8-bit clip cannot carry HDR,
and PQ numbers shown as SDR are dim and grey. Primaries and transfer of SDR sources are not converted
(they are tagged as the source has them). Untagged sources are read as players read them (mpv, VLC):
BT.709 from 1280 wide or 577 high up, BT.601 below; limited range unless the pixel format is a
full-range one (``yuvj*``); the clip's tags then say what was guessed.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import ColorPrimaries, ColorRange, ColorTrc, Interpolation, VideoReformatter

# the swscale matrix of each AVColorSpace number (unlisted ones: guessed from the size)
_SWS_MATRIX = {1: "itu709", 5: "itu601", 6: "itu601", 7: "smpte240m", 4: "fcc", 9: "bt2020", 10: "bt2020"}
_KEPT = {"itu709": 1, "itu601": 6}    # matrices a clip keeps, and the AVColorSpace tag it then carries
_HDR_TRC = {16: "pq", 18: "hlg"}      # SMPTE 2084, ARIB STD-B67
# a matrix conversion without both rounding flags is biased ~2 levels dark in swscale (ACCURATE_RND alone
# ~1); only paid where a matrix changes. With tone mapping FULL_CHR_H_INT turns the picture blue (+65
# levels of blue on the PQ test input): HDR takes ACCURATE_RND alone.
_ACCURATE = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
_ACCURATE_HDR = Interpolation.BILINEAR | Interpolation.ACCURATE_RND


@dataclass(frozen=True)
class SourceColour:
    """How to read one source's frames (from its first frame's tags) and what its clips are written as."""

    matrix: str        # swscale's name: "itu709" | "itu601" | "bt2020" | ...
    full_range: bool
    spc: int           # its AVColorSpace tag (2: untagged)
    primaries: int     # AVColorPrimaries
    trc: int           # AVColorTransferCharacteristic
    guessed: bool      # the matrix was not tagged: chosen by the frame size
    yuv: bool = True   # False: gray or RGB, which have no matrix (swscale reads gray as full range)

    @property
    def hdr(self) -> bool:
        return self.trc in _HDR_TRC

    @property
    def out_matrix(self) -> str:
        return self.matrix if self.matrix in _KEPT and not self.hdr else "itu709"

    def out_tags(self) -> dict[str, int]:
        """The clip's colour tags (H.264 VUI; the mp4 ``colr`` box)."""
        spc = self.spc if (self.out_matrix == self.matrix and self.spc in (1, 5, 6)) else _KEPT[self.out_matrix]
        sdr_tagged = not self.hdr and self.yuv
        return {"colorspace": spc, "color_range": int(ColorRange.MPEG),
                "color_primaries": self.primaries if sdr_tagged else 1, "color_trc": self.trc if sdr_tagged else 1}

    def describe(self) -> str:
        """The probe's ``color`` column: ``bt709/tv``, ``bt601/pc (guessed)``, ``bt2020/tv pq``, ``gray``."""
        if not self.yuv:
            return "rgb/gray"
        m = {"itu709": "bt709", "itu601": "bt601"}.get(self.matrix, self.matrix)
        s = f"{m}/{'pc' if self.full_range else 'tv'}"
        if self.hdr:
            s += " " + _HDR_TRC[self.trc]
        return s + (" (guessed)" if self.guessed else "")


def source_colour(frame: av.VideoFrame) -> SourceColour:
    """The colour of a decoded source frame, from its tags; an untagged matrix and range as players guess."""
    fmt = frame.format.name
    spc, rng = int(frame.colorspace), int(frame.color_range)
    guessed = spc not in _SWS_MATRIX
    if guessed:
        matrix = "itu709" if frame.width >= 1280 or frame.height > 576 else "itu601"
    else:
        matrix = _SWS_MATRIX[spc]
    full = rng == int(ColorRange.JPEG) or (rng != int(ColorRange.MPEG) and fmt.startswith("yuvj"))
    yuv = not fmt.startswith(("gray", "ya", "rgb", "bgr", "gbr", "argb", "abgr", "pal", "monow", "monob"))
    return SourceColour(matrix, full, spc, int(frame.color_primaries), int(frame.color_trc), guessed and yuv, yuv)


class ColourConverter:
    """Source frames to a clip's colour. Each target keeps its own swscale context, so the context (and,
    for HDR, its tone-mapping tables: ~2 s of CPU to build) is made once per clip, not once per frame."""

    def __init__(self, colour: SourceColour):
        self.colour = colour
        self._yuv, self._rgb, self._enc = VideoReformatter(), VideoReformatter(), VideoReformatter()
        c = colour
        self._src: dict = {}
        if c.yuv:
            self._src = {"src_colorspace": c.matrix,
                         "src_color_range": ColorRange.JPEG if c.full_range else ColorRange.MPEG}
        if c.hdr:  # asking for a transfer and primaries makes swscale tone-map and gamut-map
            self._src |= {"dst_color_trc": ColorTrc.BT709, "dst_color_primaries": ColorPrimaries.BT709}
        self._interp = _ACCURATE_HDR if c.hdr else _ACCURATE if c.yuv and c.out_matrix != c.matrix else None
        self._tags = c.out_tags()

    def to_output(self, frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
        """``frame`` scaled to (width, height) as the encoder's yuv420p in the clip's colour."""
        out = self._yuv.reformat(frame, width=width, height=height, format="yuv420p",
                                 dst_colorspace=self.colour.out_matrix, dst_color_range=ColorRange.MPEG,
                                 interpolation=self._interp, **self._src)
        return self._tag(out)

    def to_rgb(self, frame: av.VideoFrame) -> np.ndarray:
        """(H, W, 3) uint8 RGB of ``frame`` at its size, for pixel work (rotation, stretch, crop)."""
        return self._rgb.reformat(frame, format="rgb24", interpolation=self._interp, **self._src).to_ndarray()

    def rgb_to_output(self, rgb: np.ndarray) -> av.VideoFrame:
        """An RGB picture (``to_rgb``'s, reworked) as the encoder's yuv420p in the clip's colour."""
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        out = self._enc.reformat(f, format="yuv420p", dst_colorspace=self.colour.out_matrix,
                                 dst_color_range=ColorRange.MPEG, interpolation=_ACCURATE)
        return self._tag(out)

    def _tag(self, frame: av.VideoFrame) -> av.VideoFrame:
        # the encoder writes the stream's tags; the frame's let ``to_ndarray`` read the sampled frames right
        for k, v in self._tags.items():
            setattr(frame, k, v)
        return frame

    def tag_stream(self, stream) -> None:
        """Write the clip's colour into its output video stream (H.264 VUI, the mp4 ``colr`` box)."""
        for k, v in self._tags.items():
            setattr(stream.codec_context, k, v)
