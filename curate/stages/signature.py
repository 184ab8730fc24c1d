"""Frame signature: perceptual hashes of a clip every quarter second, for near-duplicate search without weights.

The transcode stage signs each clip's frames as they go into its encoder (``Ticks``: no second decode);
a clip without that signature has its encoded mp4 decoded once here. Each frame's luma is shrunk to a
64x64 thumbnail by area averaging (a 1080p and a 320p copy give nearly the same thumbnail, which is what
makes the hash indifferent to size and bitrate). Every ``TICK_S`` seconds from the clip's first frame a
*tick* pools the frames of the next ``WINDOW_HOPS`` hops (half a second) and keeps:

- ``hash``: a 256-bit DCT hash (pHash) of the window's *mean* thumbnail: the lowest 16x16 DCT
  frequencies, each bit set when its coefficient is above the median of the others. Averaging is what
  tolerates a trim: a copy cut at any point is at most 1/8 s off the nearest tick of the original, and
  a half-second mean changes far less over 1/8 s than a single frame does (Sintel trailer re-encoded at
  272-360 px and cut at 0.875, 1.04 or 1.125 s: clip medians of 4-26 bits of 256 between aligned ticks;
  other shots of the shared videos >= 72 bits, except two halves of one still-camera shot at 32-48).
- ``color``: the mean U and V planes over a 4x4 grid (32 bytes). Luma hashes ignore colour, and the
  sample generator (like real footage) reuses textures under different tints; the search requires both.

Ticks whose mean thumbnail is nearly flat (black frames, fades, blank cards, black behind a watermark)
carry no usable hash and are left out: two clips never match on darkness or a shared logo alone. The
hashing constants are fixed (not config keys), so signatures written by one build always compare with
those written by another; ``SIGNATURE_VERSION`` is stored in each signature and a mismatch is an error,
not a silent miss.

Cost: the thumbnails only when the transcode signs the frames it encodes (a hash of encoded frames and of
the frames before encoding differ by at most 6 of 256 bits on sintel at 1080p: BENCHMARKS.md); one
decode of the clip at its output size plus ~25 % otherwise; see bench/bench_dedup.py.
"""
from __future__ import annotations

import io
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

from reelforge.curate.stage import Resources, Stage

SIGNATURE_VERSION = 1
TICK_S = 0.25         # seconds between ticks
WINDOW_HOPS = 2       # each tick pools this many hops (0.5 s): long enough to average over a trim's offset
THUMB = 64            # luma thumbnail side (px) the DCT reads
DCT_BLOCK = 16        # lowest DCT_BLOCK x DCT_BLOCK frequencies -> 256 hash bits
HASH_BITS = DCT_BLOCK * DCT_BLOCK
COLOR_GRID = 4        # U and V means over a COLOR_GRID x COLOR_GRID grid -> 32 bytes
# luma std (0-255 levels) of a tick's mean thumbnail below which it carries no picture to compare: black,
# a fade, a blank card, or black with a watermark (psd_testvideo's black copyright frames: 2.0-6.8; its
# fade-in to a deer 11.2; Sintel's darkest shot 14)
MIN_TICK_STD = 8.0

TICK_DTYPE = np.dtype([("tick", "<u4"), ("hash", "<u8", (HASH_BITS // 64,)),
                       ("color", "u1", (2 * COLOR_GRID * COLOR_GRID,))])
_HEADER = np.dtype([("version", "<u2"), ("tick_ms", "<u2")])


# ------------------------------------------------------------------------------------------ one tick

def tick_hash(thumb: np.ndarray) -> np.ndarray:
    """(THUMB, THUMB) float luma -> (4,) uint64: bits of the low-frequency DCT block above its median."""
    coeffs = cv2.dct(np.asarray(thumb, dtype=np.float32))[:DCT_BLOCK, :DCT_BLOCK].reshape(-1)  # (256,)
    # the DC term is the mean brightness: left out of the median so a brighter copy keeps its bits
    bits = coeffs > np.median(coeffs[1:])
    return np.packbits(bits).view(">u8").astype("<u8")


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    p = frame.planes[i]
    return np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]


def _shrink(plane: np.ndarray, side: int, keep: int) -> np.ndarray:
    """(H, W) uint8 -> (side, side) float32 area mean. The plane is first thinned to every k-th pixel with
    its short side still >= ``keep`` (2x the output: each output pixel still averages a few samples per
    axis): area-resizing a whole 1080p plane costs more than decoding it."""
    k = max(1, min(plane.shape) // keep)
    if k > 1:
        plane = np.ascontiguousarray(plane[::k, ::k])
    return cv2.resize(plane, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)


class Ticks:
    """Pools frames into ticks and hashes each when it closes; O(1) memory in the clip's length. Feed it
    ``add(time_s, frame)`` in presentation order, then ``pack()`` (the transcode stage does, as it encodes)."""

    def __init__(self):
        self.rows: list[tuple] = []
        self.t0: float | None = None
        self.current = -1
        self.luma = np.zeros((THUMB, THUMB), np.float64)
        self.chroma = np.zeros((2, COLOR_GRID, COLOR_GRID), np.float64)
        self.count = 0
        self.window: list[tuple] = []  # the last WINDOW_HOPS hops: (hop, luma sum, chroma sum, frames)
        self.emitted = False

    def add(self, t: float, frame: av.VideoFrame) -> None:
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if self.t0 is None:
            self.t0 = t
        hop = int((t - self.t0) / TICK_S + 1e-6)
        if hop != self.current:
            self._close_hop()
            self.current = hop
        self.luma += _shrink(_plane(frame, 0), THUMB, 2 * THUMB)
        for c in (0, 1):
            self.chroma[c] += _shrink(_plane(frame, c + 1), COLOR_GRID, 8 * COLOR_GRID)
        self.count += 1

    def _close_hop(self) -> None:
        """A hop ended: the tick that ends with it (this hop and the WINDOW_HOPS - 1 before) is hashed."""
        if not self.count:
            return
        self.window.append((self.current, self.luma.copy(), self.chroma.copy(), self.count))
        self.window = [w for w in self.window if w[0] > self.current - WINDOW_HOPS]
        if len(self.window) == WINDOW_HOPS:
            self._emit(self.window[0][0])
            self.emitted = True
        self.luma[:] = 0
        self.chroma[:] = 0
        self.count = 0

    def _emit(self, tick: int) -> None:
        n = sum(w[3] for w in self.window)
        mean = sum(w[1] for w in self.window) / n  # (64, 64) mean luma over the window
        if mean.std() >= MIN_TICK_STD:
            chroma = sum(w[2] for w in self.window) / n
            color = np.clip(np.rint(chroma), 0, 255).astype(np.uint8).reshape(-1)  # (32,)
            self.rows.append((tick, tick_hash(mean), color))

    def pack(self) -> bytes:
        self._close_hop()
        if not self.emitted and self.window:  # a clip shorter than one window still gets its one tick
            self._emit(self.window[0][0])
        return pack_signature(np.array(self.rows, dtype=TICK_DTYPE))


# ------------------------------------------------------------------------------------------ whole clips

def pack_signature(ticks: np.ndarray) -> bytes:
    header = np.array([(SIGNATURE_VERSION, int(TICK_S * 1000))], dtype=_HEADER)
    return header.tobytes() + np.ascontiguousarray(ticks, dtype=TICK_DTYPE).tobytes()


def unpack_signature(data: bytes) -> np.ndarray:
    """Bytes from :func:`pack_signature` -> (n,) TICK_DTYPE array. ValueError when not a signature of
    this version (signatures of another hashing scheme must not be compared as if they were)."""
    data = bytes(data)
    if len(data) < _HEADER.itemsize or (len(data) - _HEADER.itemsize) % TICK_DTYPE.itemsize:
        raise ValueError(f"not a frame signature ({len(data)} bytes)")
    version, tick_ms = np.frombuffer(data[:_HEADER.itemsize], dtype=_HEADER)[0]
    if version != SIGNATURE_VERSION or tick_ms != int(TICK_S * 1000):
        raise ValueError(f"frame signature version {version} (tick {tick_ms} ms); this reelforge reads "
                         f"version {SIGNATURE_VERSION}: rebuild the signatures")
    return np.frombuffer(data[_HEADER.itemsize:], dtype=TICK_DTYPE)


def signature_of_frames(frames: Iterable[tuple[float, av.VideoFrame | np.ndarray]]) -> bytes:
    """Signature of ``(time_s, frame)`` pairs in presentation order; a frame is an ``av.VideoFrame`` or
    an (H, W, 3) uint8 RGB array (converted through the same swscale path a decoder's frames take)."""
    ticks = Ticks()
    for t, frame in frames:
        if isinstance(frame, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        ticks.add(float(t), frame)
    return ticks.pack()


def decoded_frames(source, threads: int = 1) -> Iterator[tuple[float, av.VideoFrame]]:
    """``(time_s, frame)`` of every frame of a video file path or mp4 bytes."""
    src = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
    with av.open(src) as container:
        stream = container.streams.video[0]
        stream.thread_count = threads
        if threads > 1:
            stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            if frame.time is not None:
                yield frame.time, frame


def signature_of_video(source, threads: int = 1) -> bytes:
    """Signature of a whole video: a path or the mp4 bytes of a clip."""
    return signature_of_frames(decoded_frames(source, threads))


# ------------------------------------------------------------------------------------------ the stage

class SignatureStage(Stage):
    """Adds ``frame_signature`` (bytes, see :func:`unpack_signature`) to every ok or filtered clip; the
    dataset-wide search (``curate.near_dup``) reads it at the end of the build."""

    name = "near_dup"  # the stage list entry and config section it belongs to
    inputs = ("mp4",)
    outputs = ("frame_signature",)
    acts_on = ("ok", "filtered")  # filtered clips keep a signature so a --refilter can bring them back

    def __init__(self, cfg=None):
        self.cfg = cfg  # the near_dup section: the hashing itself has no settings (see SIGNATURE_VERSION)

    @classmethod
    def resources(cls, cfg=None) -> Resources:
        return Resources(num_cpus=1, batch_size=4)

    def process_row(self, row: dict) -> dict:
        if row.get("frame_signature"):  # the transcode stage signed the frames it encoded: no second decode
            return {"frame_signature": row["frame_signature"]}
        mp4 = row.get("mp4")
        if not mp4:
            if row.get("status", "ok") != "ok":
                return {"frame_signature": None}  # a clip filtered before transcoding has no media to sign
            raise ValueError("no encoded clip (mp4) to sign")
        return {"frame_signature": signature_of_video(mp4)}
