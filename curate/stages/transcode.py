"""Transcode: cut one clip span out of its source and encode it as H.264 mp4 (plays in any player).

Decodes the span once with PyAV (the clips of one source in a batch share one decode pass), deinterlaces
frames the decoder flags interlaced (FFmpeg's bwdif, one frame per frame), turns frames upright (rotation
metadata) and to square pixels (sample aspect ratio), optionally crops letterbox bars, caps the frame
rate and the longest side, and encodes yuv420p H.264 with faststart. While frames stream
through, it keeps K evenly spaced small frames (``frames``) for the scoring stages and the frame
signature (``frame_signature``) for near-duplicate search, so no later stage decodes the clip again.

Cost (BENCHMARKS.md, issue 12): the old path (every frame to RGB at the source size, cv2 scaling, RGB
back to YUV in the encoder, each span decoded from the keyframe before it) took 25.8 s of CPU for 11
spans of sintel at 1080p; one swscale call per frame and a shared decode take 13.4 s, a bare PyAV
decode-scale-encode of the same spans 15.3 s.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction

import av
import cv2
import numpy as np

from reelforge.curate.colour import ColourConverter, SourceColour, source_colour
from reelforge.curate.deinterlace import Deinterlacer
from reelforge.curate.media import local_copy, main_video_stream
from reelforge.curate.stage import Batch, Resources, Stage, batch_len, error_reason, row_at, rows_to_batch

# a frame "matches" a planned pts if it lies within this many seconds (pts are exact floats from PyAV)
PTS_EPS = 1e-4


@dataclass
class TranscodeConfig:
    max_side: int = 1024          # longest output side in px (never upscaled)
    max_fps: float = 30.0         # frame-rate cap; higher-rate sources are decimated
    crf: int = 20
    preset: str = "veryfast"
    threads: int = 2
    crop_borders: bool = False    # crop detected letterbox/pillarbox bars before encoding
    sample_frames: int = 8        # K frames kept for scoring stages
    sample_short_side: int = 256  # their short side (never upscaled)

    def __post_init__(self):
        if self.max_side < 16:
            raise ValueError(f"max_side must be >= 16, got {self.max_side}")
        if self.max_fps <= 0:
            raise ValueError(f"max_fps must be > 0, got {self.max_fps}")
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be in [0, 51], got {self.crf}")
        if self.sample_frames < 1:
            raise ValueError("sample_frames must be >= 1")


def output_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Scale (width, height) so the longest side is <= max_side; both even (yuv420p needs it)."""
    scale = min(1.0, max_side / max(width, height))
    w = max(2, int(width * scale) // 2 * 2)
    h = max(2, int(height * scale) // 2 * 2)
    return w, h


def upright(img: np.ndarray, rotation_cw: int) -> np.ndarray:
    """Apply the clockwise display rotation so pixels are stored the way players show them."""
    k = (rotation_cw // 90) % 4
    return np.ascontiguousarray(np.rot90(img, k=-k)) if k else img


class _CutOff(Exception):
    """The stream breaks off (a truncated download): the packet at ``pos`` ends past the end of the file."""


def decode_span(path: str, start_pts: float, end_pts: float, as_frames: bool = False):
    """Yield (time, rgb ndarray) (or ``av.VideoFrame`` with ``as_frames``) for frames with
    start_pts <= time <= end_pts, in presentation order.

    A file that breaks off (a truncated download) is decoded up to its last complete packet. A span
    whose frames all come before the cut is whole; one that runs into the cut, or a decoder error
    inside the span, raises ValueError saying where decoding stopped."""
    last = None
    try:
        for t, img in _decode_span(path, start_pts, end_pts, as_frames):
            last = t
            yield t, img
    except (av.error.FFmpegError, _CutOff) as exc:
        if last is not None and last >= end_pts - PTS_EPS:
            return  # the span is complete; the decoder was only reading ahead for reordered frames
        where = f"after the frame at {last:.3f} s" if last is not None else "before the first frame"
        raise ValueError(f"truncated: decoding stopped {where} of the span {start_pts:.3f}-{end_pts:.3f} s "
                         f"({type(exc).__name__}: {exc})") from exc


def _decoded(container, stream, size: int):
    """Frames in decode order, stopping at a cut packet after draining the decoder: with frame threads
    it holds a few frames back, which would be lost if the cut packet were fed to it."""
    for packet in container.demux(stream):
        if packet.size and (packet.is_corrupt or (packet.pos is not None and packet.pos + packet.size > size)):
            for frame in stream.codec_context.decode(None):
                frame.time_base = stream.time_base  # a flush has no packet to take it from
                yield frame
            raise _CutOff(f"packet at byte {packet.pos} is cut off by the end of the file ({size} bytes)")
        yield from packet.decode()


def _frames_from(container, stream, start: float, size: int):
    """Frames in decode order from a seek to ``start`` (s), the first of them at or before it.

    Demuxers without an index (MPEG-TS, MPEG-PS) seek by searching timestamps and can land on the
    keyframe after the target: a 1 s GOP in .ts lost the first 23 of 60 frames of a span, and a clip
    from an interlaced .ts decoded no frame at all. Such a seek is repeated from further back (1, 2,
    4, ... s before ``start``), and at last from the first byte of the file."""
    tb = stream.time_base
    first_t = float(stream.start_time * tb) if stream.start_time is not None else 0.0
    back = 0.0
    while True:
        target = start - back
        from_top = back > 0 and target <= first_t
        if from_top:
            try:
                container.seek(0, unsupported_byte_offset=True)  # byte 0 (AVSEEK_FLAG_BYTE): no search
            except av.error.FFmpegError:  # a demuxer without byte seeks: its first timestamp
                container.seek(stream.start_time or 0, stream=stream, backward=True, any_frame=False)
        else:
            container.seek(int(math.floor(target / tb)), stream=stream, backward=True, any_frame=False)
        frames = _decoded(container, stream, size)
        head = []
        for frame in frames:
            head.append(frame)
            if frame.time is not None:
                break
        t = head[-1].time if head else None
        # nothing decoded after the seek counts as landing too late (the interlaced .ts case)
        if from_top or (t is not None and t <= start + PTS_EPS):
            yield from head
            yield from frames
            return
        back = max(1.0, 2 * back)


def _decode_span(path: str, start_pts: float, end_pts: float, as_frames: bool = False):
    with av.open(path) as container:
        stream = main_video_stream(container)
        stream.thread_type = "AUTO"
        pending = []
        for frame in _frames_from(container, stream, start_pts, os.path.getsize(path)):
            t = frame.time
            if t is None or t < start_pts - PTS_EPS:
                continue
            if t > end_pts + PTS_EPS:
                # B-frames can arrive late; keep reading a little past the end in decode order
                pending.append(t)
                if len(pending) > 16:
                    break
                continue
            yield t, frame if as_frames else frame.to_ndarray(format="rgb24")


# a span that starts more than this many seconds after the last decoded frame is reached by a seek (from
# the keyframe before it); a nearer one by decoding on (neighbouring shots of a video share one decode)
SEEK_GAP_S = 4.0
# frames decoded past a span's end before it is closed: a stream with out-of-order timestamps can still
# deliver one of its frames late (the per-span decoder before this read 16 past the end for that reason)
LATE_FRAMES = 16


class _SpanError(Exception):
    """Decoding stopped before span ``index`` was complete (``cause`` says why)."""

    def __init__(self, index: int, cause: BaseException):
        super().__init__(str(cause))
        self.index, self.cause = index, cause


def decode_spans(path: str, spans: list[tuple[float, float]]):
    """One decode pass over several spans of the local file ``path``: yields ``(i, time, av.VideoFrame)``
    for every frame with ``start_i <= time <= end_i``, and ``(i, None, None)`` once span ``i`` is complete.

    Spans are visited in order of their start: one near the last decoded frame is decoded on to, a far
    one is sought. While the stream's frame times rise (the rule), the first frame past a span's end
    closes it; once they have gone back, a span stays open for ``LATE_FRAMES`` frames past its end.
    When decoding stops (a damaged packet, a file that breaks off), the spans whose frames were all
    delivered are closed and the first incomplete one raises ``_SpanError``: the caller decodes it and
    the spans after it on their own (``decode_span``), which says where decoding stopped.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    with av.open(path) as container:
        stream = main_video_stream(container)
        stream.thread_type = "AUTO"
        size = os.path.getsize(path)
        frames, last, rising, seek_check = None, None, True, True
        j = 0                       # spans order[:j] are closed
        past: dict[int, int] = {}   # span -> frames decoded past its end
        got: dict[int, float] = {}  # span -> time of its last frame
        while j < len(order):
            if seek_check:
                seek_check = False
                start = spans[order[j]][0]
                if frames is None or last is None or start - last > SEEK_GAP_S:
                    frames, last, rising = _frames_from(container, stream, start, size), None, True
            try:
                frame = next(frames, None)
            except (av.error.FFmpegError, _CutOff) as exc:
                frame = exc
            if frame is None or isinstance(frame, BaseException):
                for k in order[j:]:
                    if isinstance(frame, BaseException) and got.get(k, -math.inf) < spans[k][1] - PTS_EPS:
                        raise _SpanError(k, frame)
                    yield k, None, None  # its frames were all decoded (or the stream ended: it has what there is)
                return
            t = frame.time
            if t is None:
                continue
            if last is not None and t <= last:
                rising = False
            last = t
            for k in order[j:]:
                a, b = spans[k]
                if t < a - PTS_EPS:
                    break  # sorted by start: no later span has begun either
                if t <= b + PTS_EPS:
                    got[k] = t
                    yield k, t, frame
                else:
                    past[k] = past.get(k, 0) + 1
            while j < len(order) and past.get(order[j], 0) >= (1 if rising else LATE_FRAMES):
                yield order[j], None, None
                j += 1
                seek_check = True


class _ClipEncoder:
    """One clip's H.264 encoder, fed the source frames of its span one at a time.

    A frame that needs no pixel work beyond scaling (upright, square pixels, no crop: the rule) goes from
    the decoder's YUV to the encoder's yuv420p at the output size in one swscale call, as a bare
    transcode does; only the few sampled frames are turned into RGB. Others take the RGB path (rotate,
    stretch, crop, scale). Either way the source's colour is read from its first frame's tags, and frames
    are written in limited range, HDR tone-mapped, with the clip's colour tagged (``curate/colour.py``). The frame signature (``signature.py``) is taken from the frames as they go in,
    so the near-duplicate stage does not decode the clip again.
    """

    def __init__(self, cfg: TranscodeConfig, row: dict, crop: list[int] | None,
                 converters: dict[SourceColour, ColourConverter] | None = None, variable_rate: bool = False):
        from reelforge.curate.stages.signature import Ticks

        self.cfg, self.row, self.crop = cfg, row, crop
        expected = max(1, int(row["end_frame"]) - int(row["start_frame"]))
        src_fps = float(row.get("src_fps") or 0.0) or 25.0
        self.expected = expected  # the planned source frames: the span's pts can reach past them (a cut file)
        self.keep = set(_decimate(expected, src_fps, cfg.max_fps))
        self.rate = _out_rate(src_fps, cfg.max_fps)
        # a variable-frame-rate source (a phone dropping frames in low light) under the cap keeps each
        # frame at its own time: placed by its index a frame plays early or late, and motion around a
        # drop-out runs fast (a 0.8 s hole: 0.4 s off at mid-clip, BENCHMARKS.md). A constant-rate one
        # keeps frame i at i / rate, as planned, also where frames are missing (a file cut short)
        self.retime = variable_rate and src_fps <= cfg.max_fps + 1e-3
        self.t0 = 0.0                            # the time of the clip's first frame
        self.prev: av.VideoFrame | None = None   # the last frame encoded: repeated over a hole
        self.pick = set(np.linspace(0, len(self.keep) - 1, min(cfg.sample_frames, len(self.keep))).round()
                        .astype(int).tolist())
        self.rotation = int(row.get("rotation") or 0)
        self.sar = float(row.get("sar") or 1.0)
        self.direct = not crop and self.rotation % 360 == 0 and abs(self.sar - 1.0) <= 1e-3
        self.ticks = Ticks()
        self.colour: ColourConverter | None = None  # from the first frame's tags
        self.converters = {} if converters is None else converters  # shared by the clips of a Transcode
        self.sampled: list[tuple[int, np.ndarray]] = []
        self.src_idx = self.n = self.w = self.h = self.sw = self.sh = 0
        # faststart rewrites the file to put the index first (players start at once); FFmpeg does that
        # by reopening the output by name, so encode to a scratch file rather than a BytesIO
        tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
        tmp.close()
        self.path = tmp.name
        self.out = self.stream = None
        # made at the first frame flagged interlaced; progressive sources never build a filter graph
        self.deint: Deinterlacer | None = None

    def add(self, frame: av.VideoFrame) -> None:
        if self.deint is None and frame.interlaced_frame:
            self.deint = Deinterlacer(self.cfg.threads)
        if self.deint is None:
            self._add(frame)
            return
        for f in self.deint.push(frame):
            self._add(f)

    def _add(self, frame: av.VideoFrame) -> None:
        idx, self.src_idx = self.src_idx, self.src_idx + 1
        slot = self.n
        if idx >= self.expected:
            return
        if self.retime and frame.time is not None:
            if self.n == 0:
                self.t0 = frame.time
            else:
                # its output slot at the clip's constant rate; a constant-rate source's frame i is slot i
                slot = int(round((frame.time - self.t0) * float(self.rate)))
                if slot < self.n:
                    return  # a second frame within one output interval (faster than the average rate)
        elif idx not in self.keep:
            return
        if self.colour is None:
            src = source_colour(frame)
            if src not in self.converters:
                self.converters[src] = ColourConverter(src)
            self.colour = self.converters[src]
        if self.direct:
            if self.stream is None:
                self._open(frame.width, frame.height)
            yuv = self.colour.to_output(frame, self.w, self.h)
            rgb = None  # the sampled ones are read back from the yuv, by its tags (``_emit``)
        else:
            img = upright(self.colour.to_rgb(frame), self.rotation)
            if abs(self.sar - 1.0) > 1e-3:  # non-square pixels: stretch to display aspect
                h, w = img.shape[:2]
                img = cv2.resize(img, (max(2, int(round(w * self.sar))), h), interpolation=cv2.INTER_AREA)
            if self.crop:
                img = img[self.crop[1]:self.crop[3], self.crop[0]:self.crop[2]]
            if self.stream is None:  # size is known once the first frame is upright and cropped
                self._open(img.shape[1], img.shape[0])
            if img.shape[1] != self.w or img.shape[0] != self.h:
                img = cv2.resize(img, (self.w, self.h), interpolation=cv2.INTER_AREA)
            rgb = np.ascontiguousarray(img)
            yuv = self.colour.rgb_to_output(rgb)
        while self.n < slot:  # a hole in the source's frame times: the last frame stays on screen
            self._emit(self.prev, None)
        self._emit(yuv, rgb)

    def _emit(self, yuv: av.VideoFrame, rgb: np.ndarray | None) -> None:
        """Encode output frame ``self.n``; keep it small for the scorers when it is one of the K picked
        (``rgb``: its RGB when the caller has it)."""
        if self.n in self.pick:
            if rgb is None:
                rgb = yuv.to_ndarray(format="rgb24")
            small = cv2.resize(rgb, (self.sw, self.sh), interpolation=cv2.INTER_AREA) \
                if (self.sw, self.sh) != (self.w, self.h) else rgb
            self.sampled.append((self.n, small))
        self.ticks.add(float(self.n / self.rate), yuv)
        yuv.pts, yuv.time_base = self.n, 1 / self.rate  # constant frame rate output
        for packet in self.stream.encode(yuv):
            self.out.mux(packet)
        self.prev = yuv
        self.n += 1

    def _open(self, width: int, height: int) -> None:
        cfg = self.cfg
        self.w, self.h = output_size(width, height, cfg.max_side)
        ss = min(1.0, cfg.sample_short_side / min(self.w, self.h))
        self.sw, self.sh = max(2, int(round(self.w * ss))), max(2, int(round(self.h * ss)))
        self.out = av.open(self.path, "w", format="mp4", options={"movflags": "+faststart"})
        self.stream = self.out.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height, self.stream.pix_fmt = self.w, self.h, "yuv420p"
        self.colour.tag_stream(self.stream)  # untagged, a reader guesses the matrix (by size, or BT.601)
        self.stream.options = {"crf": str(cfg.crf), "preset": cfg.preset, "threads": str(cfg.threads)}

    def finish(self) -> dict:
        """The row's transcode outputs (or a failed status when no frame of the span decoded)."""
        try:
            if self.deint is not None:
                for f in self.deint.flush():
                    self._add(f)
            if self.out is not None:
                for packet in self.stream.encode():
                    self.out.mux(packet)
                self.out.close()
                self.out = None
            if self.n == 0:
                return {"status": "failed", "reason": "transcode: no frame decoded in the clip span"}
            with open(self.path, "rb") as f:
                mp4 = f.read()
        finally:
            self.close()
        return {"mp4": mp4, "num_frames": self.n, "fps": float(self.rate), "width": self.w, "height": self.h,
                "duration_s": self.n / float(self.rate), "crop_box": self.crop,
                "frames": np.stack([img for _, img in self.sampled]),
                "frame_times": [float(i / self.rate) for i, _ in self.sampled],
                "frame_signature": self.ticks.pack()}

    def close(self) -> None:
        if self.out is not None:
            try:
                self.out.close()
            except av.error.FFmpegError:
                pass  # discarding a half-written clip
            self.out = None
        if os.path.exists(self.path):
            os.unlink(self.path)


def variable_rate(path: str) -> bool:
    """Whether the local file's video has a variable frame rate: its average rate differs from the rate
    FFmpeg guesses from its timestamps (equal, to the digit, for every constant-rate file in ../shared and
    the formats matrix; 21.4 vs 30 for 30 fps with a hole)."""
    try:
        with av.open(path) as container:
            stream = main_video_stream(container)
            avg, real = (stream.average_rate, stream.guessed_rate) if stream is not None else (None, None)
    except av.error.FFmpegError:
        return False
    return bool(avg and real) and abs(float(avg) - float(real)) > 0.01 * float(real)


def _decimate(n: int, src_fps: float, max_fps: float) -> list[int]:
    """Indices of source frames to keep so the output rate is <= max_fps (even spacing)."""
    if src_fps <= max_fps + 1e-3:
        return list(range(n))
    step = src_fps / max_fps
    return sorted({min(n - 1, int(round(i * step))) for i in range(int(n / step))}) or [0]


def _out_rate(src_fps: float, max_fps: float) -> Fraction:
    if src_fps <= max_fps + 1e-3:
        return Fraction(src_fps).limit_denominator(1001)
    return Fraction(max_fps).limit_denominator(1001)


class Transcode(Stage):
    """Clips of one source in a batch share one decode pass (``decode_spans``): neighbouring shots are
    decoded once, not each from the keyframe before it."""

    name = "transcode"
    inputs = ("video_path", "start_pts", "end_pts", "rotation", "sar", "src_fps")
    outputs = ("mp4", "num_frames", "fps", "width", "height", "duration_s", "crop_box", "frames", "frame_times",
               "frame_signature")

    def __init__(self, cfg: TranscodeConfig | None = None):
        self.cfg = cfg or TranscodeConfig()
        # one colour converter per source colour for the stage's life: an HDR source's tone-mapping tables
        # take ~2.5 s of CPU to build, once per worker rather than once per clip
        self.converters: dict[SourceColour, ColourConverter] = {}

    @classmethod
    def resources(cls, cfg: TranscodeConfig | None = None) -> Resources:
        # clips of a batch share a decode pass: 11 sintel 1080p spans took 14.5 s of CPU in batches of 2,
        # 13.4 s as one batch (BENCHMARKS.md, issue 12); 4 keeps a batch's mp4s and frames small
        return Resources(num_cpus=1, batch_size=4)

    def default_outputs(self) -> dict:
        return {"mp4": b"", "num_frames": 0, "fps": 0.0, "width": 0, "height": 0, "duration_s": 0.0,
                "crop_box": None, "frames": None, "frame_times": None, "frame_signature": None}

    def __call__(self, batch: Batch) -> Batch:
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        by_video: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            row.update(self.default_outputs())
            if row.get("status", "ok") in self.acts_on:
                by_video.setdefault(row["video_path"], []).append(i)
        for path, idx in by_video.items():
            results = self._transcode_video(path, [rows[i] for i in idx])
            for i, res in zip(idx, results):
                if isinstance(res, BaseException):
                    res = {"status": "failed", "reason": error_reason(self.name, res, self.on_error)}
                rows[i].update(res)
        return rows_to_batch(rows, like=batch)

    def process_row(self, row: dict) -> dict:
        res = self._transcode_video(row["video_path"], [row])[0]
        if isinstance(res, BaseException):
            raise res
        return res

    def _transcode_video(self, path: str, rows: list[dict]) -> list[dict | BaseException]:
        """Outputs (or the exception) of each clip row of the source ``path``, in the rows' order."""
        results: list[dict | BaseException | None] = [None] * len(rows)
        try:
            with local_copy(path) as local:
                crops = []
                for i, row in enumerate(rows):
                    try:
                        crops.append(self._crop_box(local, row) if self.cfg.crop_borders else None)
                    except Exception as exc:  # noqa: BLE001 - the row's own error, judged by the caller
                        results[i], crops = exc, crops + [None]
                todo = [i for i in range(len(rows)) if results[i] is None]
                vfr = variable_rate(local)
                rest = self._encode_spans(local, rows, crops, todo, results, vfr)
                for i in rest:  # after a decoding error: each on its own, as a single-span decode says why
                    try:
                        results[i] = self._encode_one(local, rows[i], crops[i], vfr)
                    except Exception as exc:  # noqa: BLE001
                        results[i] = exc
        except Exception as exc:  # noqa: BLE001 - fetching the source failed: every row says so
            results = [r if r is not None else exc for r in results]
        return results

    def _encode_spans(self, local: str, rows: list[dict], crops: list, todo: list[int], results: list,
                      vfr: bool = False) -> list[int]:
        """Encode the rows ``todo`` from one decode pass; returns the rows left when decoding stopped."""
        if not todo:
            return []
        spans = [(float(rows[i]["start_pts"]), float(rows[i]["end_pts"])) for i in todo]
        encoders: dict[int, _ClipEncoder] = {}
        try:
            for k, t, frame in decode_spans(local, spans):
                i = todo[k]
                if frame is None:
                    enc = encoders.pop(k, None) or _ClipEncoder(self.cfg, rows[i], crops[i], self.converters, vfr)
                    results[i] = enc.finish()
                    continue
                if k not in encoders:
                    encoders[k] = _ClipEncoder(self.cfg, rows[i], crops[i], self.converters, vfr)
                encoders[k].add(frame)
        except _SpanError:
            return [i for i in todo if results[i] is None]
        finally:
            for enc in encoders.values():
                enc.close()
        return []

    def _encode_one(self, local: str, row: dict, crop, vfr: bool = False) -> dict:
        enc = _ClipEncoder(self.cfg, row, crop, self.converters, vfr)
        try:
            for _, frame in decode_span(local, float(row["start_pts"]), float(row["end_pts"]), as_frames=True):
                enc.add(frame)
            return enc.finish()
        finally:
            enc.close()

    def _crop_box(self, local: str, row: dict) -> list[int] | None:
        """Letterbox/pillarbox crop from a few frames of the span (a second, sampled decode)."""
        from reelforge.curate.stages.borders import detect_letterbox
        frames = [img for _, img in self._rgb_frames(local, row)]
        if not frames:
            return None
        probe = np.stack([frames[i] for i in np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)])
        del frames
        x0, y0, x1, y1 = (int(v) for v in detect_letterbox(probe))
        full = (0, 0, probe.shape[2], probe.shape[1])
        if (x1 - x0) < 16 or (y1 - y0) < 16 or (x0, y0, x1, y1) == full:
            return None
        return [x0, y0, x1, y1]

    def _rgb_frames(self, local: str, row: dict):
        sar = float(row.get("sar") or 1.0)
        for t, img in decode_span(local, float(row["start_pts"]), float(row["end_pts"])):
            img = upright(img, int(row.get("rotation") or 0))
            if abs(sar - 1.0) > 1e-3:  # non-square pixels: stretch to display aspect
                h, w = img.shape[:2]
                img = cv2.resize(img, (max(2, int(round(w * sar))), h), interpolation=cv2.INTER_AREA)
            yield t, img
