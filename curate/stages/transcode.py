"""Transcode: cut one clip span out of its source and encode it as H.264 mp4 (plays in any player).

Decodes the span once with PyAV, turns frames upright (rotation metadata) and to square pixels (sample
aspect ratio), optionally crops letterbox bars, caps the frame rate and the longest side, and encodes
yuv420p H.264 with faststart. While frames stream through, it keeps K evenly spaced small frames
(``frames``) for the scoring stages, so no later stage decodes the clip again.
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

from reelforge.curate.media import local_copy
from reelforge.curate.stage import Resources, Stage

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


def decode_span(path: str, start_pts: float, end_pts: float):
    """Yield (time, rgb ndarray) for frames with start_pts <= time <= end_pts, in presentation order.

    A file that breaks off (a truncated download) is decoded up to its last complete packet. A span
    whose frames all come before the cut is whole; one that runs into the cut, or a decoder error
    inside the span, raises ValueError saying where decoding stopped."""
    last = None
    try:
        for t, img in _decode_span(path, start_pts, end_pts):
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


def _decode_span(path: str, start_pts: float, end_pts: float):
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        container.seek(int(math.floor(start_pts / tb)), stream=stream, backward=True, any_frame=False)
        pending = []
        for frame in _decoded(container, stream, os.path.getsize(path)):
            t = frame.time
            if t is None or t < start_pts - PTS_EPS:
                continue
            if t > end_pts + PTS_EPS:
                # B-frames can arrive late; keep reading a little past the end in decode order
                pending.append(t)
                if len(pending) > 16:
                    break
                continue
            yield t, frame.to_ndarray(format="rgb24")


class Transcode(Stage):
    name = "transcode"
    inputs = ("video_path", "start_pts", "end_pts", "rotation", "sar", "src_fps")
    outputs = ("mp4", "num_frames", "fps", "width", "height", "duration_s", "crop_box", "frames", "frame_times")

    def __init__(self, cfg: TranscodeConfig | None = None):
        self.cfg = cfg or TranscodeConfig()

    @classmethod
    def resources(cls, cfg: TranscodeConfig | None = None) -> Resources:
        return Resources(num_cpus=1, batch_size=2)

    def default_outputs(self) -> dict:
        return {"mp4": b"", "num_frames": 0, "fps": 0.0, "width": 0, "height": 0, "duration_s": 0.0,
                "crop_box": None, "frames": None, "frame_times": None}

    def process_row(self, row: dict) -> dict:
        cfg = self.cfg
        expected = max(1, int(row["end_frame"]) - int(row["start_frame"]))
        src_fps = float(row.get("src_fps") or 0.0) or 25.0
        keep = self._decimate(expected, src_fps)
        out_rate = self._out_rate(src_fps)
        pick = set(np.linspace(0, len(keep) - 1, min(cfg.sample_frames, len(keep))).round().astype(int).tolist())
        with local_copy(row["video_path"]) as local:
            crop = self._crop_box(local, row) if cfg.crop_borders else None
            # frames stream from the decoder into the encoder: a long 4K span never sits in memory
            mp4, (w, h), n, sampled = self._encode(self._frames(local, row), set(keep), pick, crop, out_rate)
        if n == 0:
            return {"status": "failed", "reason": "transcode: no frame decoded in the clip span"}
        return {
            "mp4": mp4, "num_frames": n, "fps": float(out_rate), "width": w, "height": h,
            "duration_s": n / float(out_rate), "crop_box": crop,
            "frames": np.stack([img for _, img in sampled]),
            "frame_times": [float(i / out_rate) for i, _ in sampled],
        }

    def _crop_box(self, local: str, row: dict) -> list[int] | None:
        """Letterbox/pillarbox crop from a few frames of the span (a second, sampled decode)."""
        from reelforge.curate.stages.borders import detect_letterbox
        frames = [img for _, img in self._frames(local, row)]
        probe = np.stack([frames[i] for i in np.linspace(0, len(frames) - 1, min(8, len(frames))).astype(int)])
        del frames
        x0, y0, x1, y1 = (int(v) for v in detect_letterbox(probe))
        full = (0, 0, probe.shape[2], probe.shape[1])
        if (x1 - x0) < 16 or (y1 - y0) < 16 or (x0, y0, x1, y1) == full:
            return None
        return [x0, y0, x1, y1]

    def _frames(self, local: str, row: dict):
        sar = float(row.get("sar") or 1.0)
        for t, img in decode_span(local, float(row["start_pts"]), float(row["end_pts"])):
            img = upright(img, int(row.get("rotation") or 0))
            if abs(sar - 1.0) > 1e-3:  # non-square pixels: stretch to display aspect
                h, w = img.shape[:2]
                img = cv2.resize(img, (max(2, int(round(w * sar))), h), interpolation=cv2.INTER_AREA)
            yield t, img

    def _decimate(self, n: int, src_fps: float) -> list[int]:
        """Indices of source frames to keep so the output rate is <= max_fps (even spacing)."""
        if src_fps <= self.cfg.max_fps + 1e-3:
            return list(range(n))
        step = src_fps / self.cfg.max_fps
        return sorted({min(n - 1, int(round(i * step))) for i in range(int(n / step))}) or [0]

    def _out_rate(self, src_fps: float) -> Fraction:
        if src_fps <= self.cfg.max_fps + 1e-3:
            return Fraction(src_fps).limit_denominator(1001)
        return Fraction(self.cfg.max_fps).limit_denominator(1001)

    def _encode(self, frames, keep: set[int], pick: set[int], crop, rate: Fraction):
        """Encode kept frames; returns (mp4 bytes, (w, h), frames encoded, [(out_index, small rgb)])."""
        # faststart rewrites the file to put the index first (players start at once); FFmpeg does that
        # by reopening the output by name, so encode to a scratch file rather than a BytesIO
        tmp = tempfile.NamedTemporaryFile(suffix=".mp4", delete=False)
        tmp.close()
        sampled: list[tuple[int, np.ndarray]] = []
        try:
            data = self._encode_to(tmp.name, frames, keep, pick, crop, rate, sampled)
        finally:
            os.unlink(tmp.name)
        return data

    def _encode_to(self, path, frames, keep, pick, crop, rate, sampled):
        cfg = self.cfg
        n = 0
        w = h = sw = sh = 0
        with av.open(path, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vs = None
            for src_idx, (_, img) in enumerate(frames):
                if src_idx not in keep:
                    continue
                if crop:
                    img = img[crop[1]:crop[3], crop[0]:crop[2]]
                if vs is None:  # size is known once the first frame is upright and cropped
                    w, h = output_size(img.shape[1], img.shape[0], cfg.max_side)
                    ss = min(1.0, cfg.sample_short_side / min(w, h))
                    sw, sh = max(2, int(round(w * ss))), max(2, int(round(h * ss)))
                    vs = out.add_stream("libx264", rate=rate)
                    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
                    vs.options = {"crf": str(cfg.crf), "preset": cfg.preset, "threads": str(cfg.threads)}
                if img.shape[1] != w or img.shape[0] != h:
                    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
                img = np.ascontiguousarray(img)
                if n in pick:
                    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA) if (sw, sh) != (w, h) else img
                    sampled.append((n, small))
                vf = av.VideoFrame.from_ndarray(img, format="rgb24")
                vf.pts, vf.time_base = n, 1 / rate  # constant frame rate output
                for packet in vs.encode(vf):
                    out.mux(packet)
                n += 1
            if vs is not None:
                for packet in vs.encode():
                    out.mux(packet)
        with open(path, "rb") as f:
            data = f.read() if n else b""
        return data, (w, h), n, sampled
