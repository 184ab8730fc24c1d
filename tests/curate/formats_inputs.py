"""Inputs from encoders, containers and tools we did not choose, made with PyAV from real footage.

Every case encodes the same known RGB frames (sintel, decoded once and resized) with one codec,
container, pixel format, colour tagging, geometry or timing, and keeps those RGB frames as the truth:
a clip's frame must show the same colours as the truth frame at the same source time, whatever the
encoder did in between (a wrong range or matrix shifts the mean by a few %; 10-bit read as 8-bit is
noise). ``make_case(name, out_dir, src)`` writes one input and returns its ``Made`` record.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.frame import PictureType

SOURCE = "sintel_trailer_30s.mp4"
# a bright, colourful stretch (a wrong matrix shows on saturated colour) with a possible cut at 27.96 s
SOURCE_START_S = 27.0


@dataclass
class Made:
    """One generated input: its path, the RGB frames it was encoded from (display orientation, square
    pixels) with their presentation times, and what a build must make of it."""

    path: Path
    truth: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 as a player shows them
    times: list[float] = field(default_factory=list)       # presentation time of each, s
    expect: str = "ok"                                     # "ok" (clips kept) | "failed" (a video row reason)
    note: str = ""
    hdr: bool = False  # PQ/HLG: ``truth`` is the SDR picture the HDR was made from


def source_rgb(shared_media: Path, seconds: float = 2.5, size=(320, 180)) -> tuple[list[np.ndarray], Fraction]:
    """``seconds`` of sintel from ``SOURCE_START_S`` as RGB at ``size`` (sintel is untagged SD: BT.601)."""
    out = []
    with av.open(str(shared_media / SOURCE)) as c:
        s = c.streams.video[0]
        rate = s.average_rate
        for f in c.decode(s):
            if f.time < SOURCE_START_S - 1e-3:
                continue
            if f.time >= SOURCE_START_S + seconds - 1e-3:
                break
            out.append(f.to_ndarray(format="rgb24", width=size[0], height=size[1], src_colorspace="itu601",
                                    src_color_range="MPEG", interpolation="AREA"))
    return out, rate


# colour tags as FFmpeg numbers them (AVColorSpace / AVColorPrimaries / AVColorTransfer / AVColorRange)
BT709 = dict(colorspace=1, color_primaries=1, color_trc=1)
BT601 = dict(colorspace=6, color_primaries=6, color_trc=6)
BT2020_PQ = dict(colorspace=9, color_primaries=9, color_trc=16)
LIMITED, FULL = 1, 2
SWS_CS = {1: "itu709", 6: "itu601", 5: "itu601", 9: "bt2020"}


def pq_rgb48(rgb: np.ndarray) -> np.ndarray:
    """An SDR BT.709 picture as HDR10 shows it: linear light (BT.1886), SDR white at 203 nits (BT.2408),
    BT.2020 primaries, PQ (SMPTE 2084) code values; (H, W, 3) uint16."""
    lin = (rgb.astype(np.float64) / 255.0) ** 2.4
    to2020 = np.array([[0.6274, 0.3293, 0.0433], [0.0691, 0.9195, 0.0114], [0.0164, 0.0880, 0.8956]])
    y = np.clip(lin @ to2020.T * 203.0 / 10000.0, 0, 1)
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    e = ((c1 + c2 * y**m1) / (1 + c3 * y**m1)) ** m2
    return np.round(e * 65535).astype(np.uint16)


def _yuv(rgb: np.ndarray, pix_fmt: str, tags: dict, rng: int) -> av.VideoFrame:
    """``rgb`` as a ``pix_fmt`` frame in the matrix and range of the tags it will carry (BT.601 limited
    when untagged: what decoders assume); PQ-tagged: the HDR10 version of the picture."""
    if tags.get("color_trc") == 16:
        f = av.VideoFrame.from_ndarray(pq_rgb48(rgb), format="rgb48le")
        return f.reformat(format=pix_fmt, dst_colorspace="bt2020", dst_color_range="MPEG")
    f = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    if pix_fmt in ("rgb24", "bgr0", "gbrp"):
        return f.reformat(format=pix_fmt)
    full = rng == FULL or pix_fmt.startswith("yuvj")
    kw = {}
    if not pix_fmt.startswith("gray"):
        kw["dst_colorspace"] = SWS_CS.get(tags.get("colorspace", 2), "itu601")
    # yuvj formats are full range by definition; swscale wants the range only for the others
    kw["dst_color_range"] = "JPEG" if full else "MPEG"
    return f.reformat(format=pix_fmt, **kw)


def encode(out: Path, frames: list[np.ndarray], rate: Fraction, codec: str, pix_fmt: str, *, fmt: str | None = None,
           tags: dict | None = None, rng: int = 0, options: dict | None = None, container_options: dict | None = None,
           pts: list[int] | None = None, time_base: Fraction | None = None, sar: Fraction | None = None,
           rotation: int = 0, codec_tag: str | None = None, audio: str = "", audio_lead_s: float = 0.0,
           start_pts: int = 0) -> Path:
    """Encode RGB ``frames`` to ``out``. ``pts`` in ``time_base`` (default ``1/rate``) give VFR or a
    shifted start; ``rotation`` is the display matrix angle (counter-clockwise, as FFmpeg stores it);
    ``audio`` adds an AAC/Opus/MP2 track starting ``audio_lead_s`` before the video."""
    tags = tags or {}
    tb = time_base or Fraction(1) / rate
    with av.open(str(out), "w", format=fmt, options=container_options or {}) as c:
        a_st = None
        if audio:
            a_st = c.add_stream(audio, rate=48000)
            a_st.layout = "mono" if audio != "mp2" else "stereo"
        st = c.add_stream(codec, rate=rate)
        st.width, st.height = frames[0].shape[1], frames[0].shape[0]
        st.pix_fmt = pix_fmt
        st.time_base = st.codec_context.time_base = tb  # the encoder keeps frame times in its own base
        if codec_tag:
            st.codec_tag = codec_tag
        for k, v in tags.items():
            setattr(st.codec_context, k, v)
        if rng:
            st.codec_context.color_range = rng
        if sar is not None:
            st.codec_context.sample_aspect_ratio = sar
        if options:
            st.options = options
        if rotation:
            st.set_display_rotation(rotation)
        if a_st is not None:
            _audio(c, a_st, len(frames) / float(rate) + audio_lead_s)
        for n, rgb in enumerate(frames):
            f = _yuv(rgb, pix_fmt, tags, rng)
            for k, v in tags.items():
                setattr(f, k, v)
            if rng:
                f.color_range = rng
            f.pts = (pts[n] if pts is not None else n) + start_pts
            f.time_base = tb
            f.pict_type = PictureType.NONE
            for p in st.encode(f):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return out


def _audio(c, a_st, seconds: float) -> None:
    """A tone, muxed before the video so it comes first in the file (audio before video)."""
    n = int(48000 * seconds)
    t = np.arange(n) / 48000
    tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    fmt = a_st.codec_context.format.name if a_st.codec_context.format else "fltp"
    chunk = a_st.codec_context.frame_size or 1024
    channels = a_st.codec_context.layout.nb_channels
    pos = 0
    while pos < n:
        block = tone[pos:pos + chunk]
        if fmt == "s16":
            data = np.tile((block * 32767).astype(np.int16), (channels, 1)).T.reshape(1, -1)
        else:
            data = np.tile(block, (channels, 1))
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=a_st.layout.name)
        frame.sample_rate, frame.pts = 48000, pos
        pos += len(block)
        for p in a_st.encode(frame):
            c.mux(p)
    for p in a_st.encode():
        c.mux(p)


def resized(frames: list[np.ndarray], w: int, h: int) -> list[np.ndarray]:
    return [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]


def _times(n: int, rate: Fraction, start: float = 0.0) -> list[float]:
    return [start + i / float(rate) for i in range(n)]


def _std(out, frames, rate, codec, pix_fmt, **kw) -> Made:
    path = encode(out, frames, rate, codec, pix_fmt, **kw)
    return Made(path, frames, _times(len(frames), rate))


X264 = {"preset": "ultrafast", "crf": "16"}
X265 = {"preset": "ultrafast", "crf": "18", "x265-params": "log-level=error"}
VPX = {"crf": "12", "b": "0", "deadline": "realtime", "cpu-used": "8"}
SVT = {"preset": "12", "crf": "20"}


def _case_table():
    """name -> (file name, maker(out_path, frames, rate) -> Made). Frames are 320x180 RGB at 24 fps."""
    def std(codec, pix_fmt, **kw):
        return lambda out, fr, rate: _std(out, fr, rate, codec, pix_fmt, **kw)

    def hdr(codec, pix_fmt, **kw):
        def make(out, fr, rate):
            made = _std(out, fr, rate, codec, pix_fmt, **kw)
            made.hdr = True
            return made
        return make

    def sized(w, h, codec="libx264", pix_fmt="yuv420p", n=None, **kw):
        def make(out, fr, rate):
            frames = resized(fr[:n] if n else fr, w, h)
            return _std(out, frames, rate, codec, pix_fmt, **kw)
        return make

    def rotated(angle_ccw, w=320, h=180):
        def make(out, fr, rate):
            stored = resized(fr, w, h)
            # stored pixels are the display picture turned back: a player turning them by the matrix shows fr
            k = (angle_ccw // 90) % 4
            stored_px = [np.ascontiguousarray(np.rot90(f, k=-k)) for f in stored]
            path = encode(out, stored_px, rate, "libx264", "yuv420p", options=X264, rotation=angle_ccw, tags=BT709,
                          rng=LIMITED)
            return Made(path, stored, _times(len(stored), rate))
        return make

    def anamorphic(out, fr, rate):
        # 240x180 stored with SAR 4:3 shows as 320x180
        stored = resized(fr, 240, 180)
        path = encode(out, stored, rate, "libx264", "yuv420p", options=X264, sar=Fraction(4, 3), tags=BT709, rng=LIMITED)
        return Made(path, fr, _times(len(fr), rate))

    def vfr(out, fr, rate):
        # frame durations alternate 1/30 and 1/20 s (a phone's variable rate), in a 1/90000 timebase
        tb = Fraction(1, 90000)
        steps = [3000 if i % 2 == 0 else 4500 for i in range(len(fr))]
        pts = np.concatenate([[0], np.cumsum(steps)[:-1]]).astype(int).tolist()
        path = encode(out, fr, rate, "libx264", "yuv420p", options=X264, pts=pts, time_base=tb, tags=BT709, rng=LIMITED)
        return Made(path, fr, [p * float(tb) for p in pts])

    def rate_of(new_rate):
        def make(out, fr, rate):
            path = encode(out, fr, new_rate, "libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED)
            return Made(path, fr, _times(len(fr), new_rate))
        return make

    def shifted(out, fr, rate):
        # the stream starts at 1.5 s (an edit list / a capture that began late)
        path = encode(out, fr, rate, "libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED,
                      start_pts=int(round(1.5 * float(rate))))
        return Made(path, fr, _times(len(fr), rate, 1.5))

    def audio_first(out, fr, rate):
        path = encode(out, fr, rate, "libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED, audio="aac",
                      start_pts=int(round(0.5 * float(rate))))
        return Made(path, fr, _times(len(fr), rate, 0.5))

    def few(n):
        def make(out, fr, rate):
            path = encode(out, fr[:n], rate, "libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED)
            # too short for a clip (min_seconds): the video is ok with no kept clip
            return Made(path, fr[:n], _times(n, rate), expect="noclip")
        return make

    def audio_only(out, fr, rate):
        with av.open(str(out), "w") as c:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
            _audio(c, a, 2.0)
        return Made(out, expect="failed")

    def empty(out, fr, rate):
        out.write_bytes(b"")
        return Made(out, expect="failed")

    def text(out, fr, rate):
        out.write_text("this is not a video\n" * 200)
        return Made(out, expect="failed")

    def no_frame(out, fr, rate):
        # a valid container whose H.264 packets are garbage: the stream is there, no frame decodes
        good = encode(out.with_suffix(".tmp.mp4"), fr, rate, "libx264", "yuv420p", options=X264)
        rng = np.random.default_rng(0)
        with av.open(str(good)) as src, av.open(str(out), "w", format="mp4") as dst:
            vin = src.streams.video[0]
            vout = dst.add_stream_from_template(vin)
            for pkt in src.demux(vin):
                if pkt.dts is None:
                    continue
                junk = av.Packet(rng.integers(0, 256, pkt.size, dtype=np.uint8).tobytes())
                junk.pts, junk.dts, junk.time_base, junk.stream = pkt.pts, pkt.dts, pkt.time_base, vout
                dst.mux(junk)
        os.unlink(good)
        return Made(out, expect="failed")

    def truncated(out, fr, rate):
        # moov at the end, cut at 60 %: the index is gone, nothing can be read
        full = encode(out.with_suffix(".tmp.mp4"), fr, rate, "libx264", "yuv420p", options=X264)
        data = full.read_bytes()
        out.write_bytes(data[: int(len(data) * 0.6)])
        os.unlink(full)
        return Made(out, expect="failed")

    def fragmented(out, fr, rate):
        path = encode(out, fr, rate, "libx264", "yuv420p", options=X264 | {"g": "12"}, tags=BT709, rng=LIMITED,
                      fmt="mp4", container_options={"movflags": "frag_keyframe+empty_moov"})
        return Made(path, fr, _times(len(fr), rate))

    def gap(out, fr, rate):
        # 30 fps with a 0.8 s hole (a phone dropping frames): times as the file has them
        tb = Fraction(1, 90000)
        pts, t = [], 0
        for i in range(len(fr)):
            pts.append(t)
            t += 3000 + (72000 if i == len(fr) // 2 else 0)
        path = encode(out, fr, Fraction(30), "libx264", "yuv420p", options=X264, pts=pts, time_base=tb, tags=BT709,
                      rng=LIMITED)
        return Made(path, fr, [p * float(tb) for p in pts])

    def cover_only(out, fr, rate):
        # a song with its cover art: the only video stream is one attached picture
        import io

        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(fr[0]).save(buf, "JPEG")
        with av.open(str(out), "w", format="mp4") as c:
            cov = c.add_stream("mjpeg", rate=1)
            cov.width, cov.height, cov.pix_fmt = fr[0].shape[1], fr[0].shape[0], "yuvj420p"
            cov.disposition = av.stream.Disposition.attached_pic
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
            pkt = av.Packet(buf.getvalue())
            pkt.stream, pkt.pts, pkt.dts, pkt.time_base = cov, 0, 0, Fraction(1)
            c.mux(pkt)
            _audio(c, a, 2.0)
        return Made(out, expect="failed")

    GOP = {"preset": "veryfast", "crf": "18", "bf": "3", "g": "24"}  # B-frames and a 1 s GOP, as broadcast
    return {
        # codecs and containers (8-bit, BT.709 limited unless named)
        "h264_mp4_bt709": ("h264_bt709.mp4", std("libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED)),
        "h264_mp4_untagged": ("h264_untagged.mp4", std("libx264", "yuv420p", options=X264)),
        "h264_mp4_bt601": ("h264_bt601.mp4", std("libx264", "yuv420p", options=X264, tags=BT601, rng=LIMITED)),
        "h264_ts": ("h264.ts", std("libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED, fmt="mpegts")),
        "h264_mkv": ("h264.mkv", std("libx264", "yuv420p", options=X264, tags=BT709, rng=LIMITED)),
        "hevc_hvc1": ("hevc_hvc1.mp4", std("libx265", "yuv420p", options=X265, tags=BT709, rng=LIMITED, codec_tag="hvc1")),
        "hevc_hev1": ("hevc_hev1.mp4", std("libx265", "yuv420p", options=X265, tags=BT709, rng=LIMITED, codec_tag="hev1")),
        "vp9_webm": ("vp9.webm", std("libvpx-vp9", "yuv420p", options=VPX, tags=BT709, rng=LIMITED)),
        "vp8_webm": ("vp8.webm", std("libvpx", "yuv420p", options={"crf": "10", "b": "1M", "deadline": "realtime", "cpu-used": "8"})),
        "av1_mp4": ("av1.mp4", std("libsvtav1", "yuv420p", options=SVT, tags=BT709, rng=LIMITED)),
        "av1_mkv": ("av1.mkv", std("libsvtav1", "yuv420p", options=SVT, tags=BT709, rng=LIMITED)),
        "mpeg2_mpg": ("mpeg2.mpg", std("mpeg2video", "yuv420p", options={"qscale": "2"}, fmt="mpeg")),
        "mpeg2_ts": ("mpeg2.ts", std("mpeg2video", "yuv420p", options={"qscale": "2"}, fmt="mpegts")),
        "mpeg4_avi": ("mpeg4.avi", std("mpeg4", "yuv420p", options={"qscale": "2"})),
        "prores_mov": ("prores.mov", std("prores_ks", "yuv422p10le", options={"profile": "2"}, tags=BT709, rng=LIMITED)),
        "mjpeg_avi": ("mjpeg.avi", std("mjpeg", "yuvj420p", options={"qscale": "2"})),
        "mjpeg422_avi": ("mjpeg422.avi", std("mjpeg", "yuvj422p", options={"qscale": "2"})),
        "ffv1_mkv": ("ffv1.mkv", std("ffv1", "yuv420p", tags=BT709, rng=LIMITED)),
        "h264_bframes_ts": ("h264_gop24.ts", std("libx264", "yuv420p", options=GOP, tags=BT709, rng=LIMITED)),
        "h264_bframes_mp4": ("h264_gop24.mp4", std("libx264", "yuv420p", options=GOP, tags=BT709, rng=LIMITED)),
        "mpeg2_bframes_ts": ("mpeg2_gop12.ts", std("mpeg2video", "yuv420p", options={"qscale": "2", "bf": "2", "g": "12"})),
        "h264_interlaced_ts": ("h264_interlaced.ts", std("libx264", "yuv420p", options=GOP | {"x264-params": "interlaced=1:tff=1"},
                                                         tags=BT601, rng=LIMITED)),
        # pixel formats and colour
        "h264_high10": ("h264_high10.mp4", std("libx264", "yuv420p10le", options=X264, tags=BT709, rng=LIMITED)),
        "hevc_main10": ("hevc_main10.mp4", std("libx265", "yuv420p10le", options=X265, tags=BT709, rng=LIMITED, codec_tag="hvc1")),
        # (this libvpx has no high bit depth: VP9 profile 2 cannot be made here; profile 1 is 4:4:4)
        "vp9_444": ("vp9_444.webm", std("libvpx-vp9", "yuv444p", options=VPX, tags=BT709, rng=LIMITED)),
        "h264_422": ("h264_422.mp4", std("libx264", "yuv422p", options=X264, tags=BT709, rng=LIMITED)),
        "h264_444": ("h264_444.mp4", std("libx264", "yuv444p", options=X264, tags=BT709, rng=LIMITED)),
        "h264_fullrange_j": ("h264_yuvj420p.mp4", std("libx264", "yuvj420p", options=X264, tags=BT601)),
        "h264_fullrange_tag": ("h264_full.mp4", std("libx264", "yuv420p", options=X264, tags=BT709, rng=FULL)),
        "hevc_bt2020_pq": ("hevc_pq.mp4", hdr("libx265", "yuv420p10le", options=X265, tags=BT2020_PQ, rng=LIMITED,
                                              codec_tag="hvc1")),
        "ffv1_gray": ("ffv1_gray.mkv", std("ffv1", "gray")),
        "ffv1_rgb": ("ffv1_rgb.mkv", std("ffv1", "bgr0")),
        # geometry
        "odd_853x479": ("odd_853x479.mkv", sized(853, 479, "ffv1", "yuv420p", tags=BT709, rng=LIMITED)),
        "tiny_64x36": ("tiny_64x36.mp4", sized(64, 36, options=X264, tags=BT709, rng=LIMITED)),
        "tiny_8x8": ("tiny_8x8.mp4", sized(8, 8, options=X264, tags=BT709, rng=LIMITED)),
        "portrait_1080x1920": ("portrait.mp4", sized(1080, 1920, n=30, options=X264, tags=BT709, rng=LIMITED)),
        "uhd_3840x2160": ("uhd.mp4", sized(3840, 2160, n=30, options=X264, tags=BT709, rng=LIMITED)),
        "rotate_90": ("rot90.mp4", rotated(-90)),    # shown turned 90 deg clockwise (a phone held upright)
        "rotate_270": ("rot270.mov", rotated(90)),
        "rotate_180": ("rot180.mp4", rotated(180)),
        "sar_4_3": ("sar43.mp4", anamorphic),
        # time
        "vfr": ("vfr.mp4", vfr),
        "fps60": ("fps60.mp4", rate_of(Fraction(60))),
        "fps23976": ("fps23976.mp4", rate_of(Fraction(24000, 1001))),
        "start_1_5s": ("start15.mp4", shifted),
        "audio_first": ("audio_first.mp4", audio_first),
        "fragmented": ("frag.mp4", fragmented),
        "vfr_gap": ("vfr_gap.mp4", gap),
        # degenerate
        "one_frame": ("one_frame.mp4", few(1)),
        "five_frames": ("five_frames.mp4", few(5)),
        "audio_only": ("audio_only.m4a", audio_only),
        "audio_with_cover": ("song_cover.m4a", cover_only),
        "zero_bytes": ("zero.mp4", empty),
        "text_as_mp4": ("text.mp4", text),
        "no_decodable_frame": ("no_frame.mp4", no_frame),
        "truncated_moov_end": ("trunc_moov_end.mp4", truncated),
    }


CASES = _case_table()


def make_case(name: str, out_dir: Path, src: tuple[list[np.ndarray], Fraction]) -> Made:
    fname, maker = CASES[name]
    frames, rate = src
    made = maker(Path(out_dir) / fname, frames, rate)
    made.note = name
    return made
