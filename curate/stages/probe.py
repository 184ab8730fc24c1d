"""Probe: what each input file is — container, codec, size, frame rate, duration, rotation, audio.

Uses PyAV (FFmpeg's demuxers read more containers than decord). One decoded frame proves the stream is
decodable and gives the display rotation; a file that fails here ends as a ``failed`` video row.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction

import av

from reelforge.curate.colour import source_colour
from reelforge.curate.media import local_copy, main_video_stream, mp4_without_index, read_sidecar_caption, sha256_file
from reelforge.curate.stage import Resources, Stage


@dataclass
class ProbeConfig:
    min_bytes: int = 1024          # smaller files cannot hold a playable video
    read_sidecar_captions: bool = True

    def __post_init__(self):
        if self.min_bytes < 0:
            raise ValueError("min_bytes must be >= 0")


def probe_file(path: str) -> dict:
    """Container facts of one local video file. Raises ValueError with a clear message if unreadable."""
    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        if mp4_without_index(path):
            raise ValueError("mp4 without its index (no moov box): the file was cut short before its end, "
                             "where the index is written (an interrupted download or recording)") from exc
        raise ValueError(f"not a readable media file ({exc.__class__.__name__}: {exc})") from exc
    with container:
        vs = main_video_stream(container)
        if vs is None:
            covers = len(container.streams.video)
            raise ValueError("no video stream" + (f" (only cover art: {covers} attached picture"
                                                  f"{'s' if covers > 1 else ''})" if covers else ""))
        cc = vs.codec_context
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        fps = float(rate) if rate else 0.0
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
        if vs.duration is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        else:
            duration = 0.0
        frames = int(vs.frames or 0)
        if frames == 0 and duration and fps:
            frames = int(round(duration * fps))  # container does not say (e.g. mkv): estimate
        first = None
        try:
            for frame in container.decode(vs):
                first = frame
                break
        except av.error.FFmpegError as exc:
            raise ValueError(f"video stream does not decode ({exc})") from exc
        if first is None:
            raise ValueError("video stream holds no decodable frame")
        # PyAV reports the display matrix angle counter-clockwise; store the clockwise turn a player
        # applies (the classic ``rotate`` tag: 90 for a phone held upright)
        rotation = int(round(-(getattr(first, "rotation", 0) or 0))) % 360
        sar = vs.sample_aspect_ratio or Fraction(1, 1)
        width, height = int(cc.width or first.width), int(cc.height or first.height)
        disp_w = int(round(width * float(sar))) if sar else width
        disp_h = height
        if rotation in (90, 270):
            disp_w, disp_h = disp_h, disp_w
        audio = container.streams.audio[0] if container.streams.audio else None
        return {
            "container": container.format.name,
            "codec": cc.name,
            "pix_fmt": cc.pix_fmt or "",
            "color": source_colour(first).describe(),  # how the clips read it: bt709/tv, bt601/pc (guessed), ...
            "width": width,
            "height": height,
            "display_width": disp_w,
            "display_height": disp_h,
            "sar": float(sar) if sar else 1.0,
            "rotation": rotation,
            "fps": fps,
            "frame_count": frames,
            "duration_s": duration,
            "start_time": start,
            "bit_rate": int(container.bit_rate or 0),
            "has_audio": audio is not None,
            "audio_codec": audio.codec_context.name if audio is not None else "",
        }


PROBE_DEFAULTS = {
    "size_bytes": 0, "sha256": "", "container": "", "codec": "", "pix_fmt": "", "color": "", "width": 0, "height": 0,
    "display_width": 0, "display_height": 0, "sar": 1.0, "rotation": 0, "fps": 0.0, "frame_count": 0,
    "duration_s": 0.0, "start_time": 0.0, "bit_rate": 0, "has_audio": False, "audio_codec": "",
    "sidecar_caption": "",
}


class Probe(Stage):
    name = "probe"
    inputs = ("path",)
    outputs = tuple(PROBE_DEFAULTS)

    def __init__(self, cfg: ProbeConfig | None = None):
        self.cfg = cfg or ProbeConfig()

    @classmethod
    def resources(cls, cfg: ProbeConfig | None = None) -> Resources:
        return Resources(num_cpus=1, batch_size=4)

    def default_outputs(self) -> dict:
        return dict(PROBE_DEFAULTS)

    def process_row(self, row: dict) -> dict:
        path = row["path"]
        with local_copy(path) as local:
            size = os.path.getsize(local)
            out = {"size_bytes": size, "sha256": sha256_file(local)}
            if size < self.cfg.min_bytes:
                return out | {"status": "failed", "reason": f"probe: file is {size} bytes (< {self.cfg.min_bytes})"}
            try:
                out.update(probe_file(local))
            except ValueError as exc:
                return out | {"status": "failed", "reason": f"probe: {exc}"}
        if self.cfg.read_sidecar_captions:
            out["sidecar_caption"] = read_sidecar_caption(path)
        return out
