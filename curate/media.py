"""Opening inputs: local paths as they are, fsspec URLs fetched once to a local temp file.

decord and PyAV need a seekable local file; remote inputs (``s3://…``) are copied to a scratch dir
first. The copy is removed when the context exits.

A truncated download (an mp4 cut short, its index at the front still promising every frame) decodes up
to the cut and then fails; ``complete_prefix`` gives the part before the cut as a file of its own, so
the shots and clips of that part are kept instead of failing the whole video.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Iterator

import fsspec

from reelforge import storage


def is_remote(path: str) -> bool:
    return storage.is_remote(path)


def local_copy(path: str):
    """A local path for ``path`` for the duration of the ``with`` (reelforge.storage.local_source): a
    remote source is downloaded once per process however many stages open it inside the per-video task's
    own ``local_source``."""
    return storage.local_source(path)


def sha256_file(path: str, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_sidecar_caption(path: str) -> str:
    """The caption written next to an input video (``clip.mp4`` → ``clip.txt``), or ''."""
    stem = path.rsplit(".", 1)[0]
    try:
        with fsspec.open(stem + ".txt", "r", encoding="utf-8") as f:
            return f.read().strip()
    except (FileNotFoundError, OSError, UnicodeDecodeError):
        return ""


def main_video_stream(container):
    """The container's video: its first video stream that is not cover art. Cover art (a song's or a
    podcast's picture, an mkv image attachment) is a video stream of one picture with the
    ``attached_pic`` disposition; None when the file has no other video stream."""
    import av

    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def mp4_without_index(path: str) -> bool:
    """True for an ISO media file (mp4, mov, m4a: it starts with an ``ftyp`` box) with no ``moov`` box:
    the index most writers put last, so a download or recording cut short has none and nothing in it can
    be read (FFmpeg says only "Invalid data found"). Reads the top-level box headers alone."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(8)[4:8] != b"ftyp":
            return False
        pos, found = 0, set()
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            n, kind = int.from_bytes(head[:4], "big"), head[4:8]
            if n == 1 and len(head) == 16:
                n = int.from_bytes(head[8:16], "big")
            elif n == 0:
                n = size - pos
            if n < 8:
                break
            found.add(kind)
            pos += n
    return b"moov" not in found


@dataclass
class Cut:
    """Where the video stream of a file breaks off (a truncated download)."""

    packets: int          # complete packets before the cut
    expected_frames: int  # what the container's index promises (0 when it does not say)
    where: str            # the cut, in words

    def reason(self, frames: int, last_s: float) -> str:
        """The ``reason`` of the video row that keeps the part before the cut."""
        of = f" of {self.expected_frames}" if self.expected_frames else ""
        return f"truncated: decoded {frames}{of} frames, stopped at {last_s:.1f} s ({self.where})"


def find_cut(path: str) -> Cut | None:
    """The cut in the video stream of the local file ``path``; None when every packet is whole, none is,
    or the file does not demux at all. Reads the packets without decoding them."""
    import av

    size = os.path.getsize(path)
    n = 0
    try:
        with av.open(path) as container:
            stream = main_video_stream(container)
            if stream is None:
                return None
            expected = int(stream.frames or 0)
            for pkt in container.demux(stream):
                if pkt.size == 0 and pkt.dts is None:  # the demuxer's end-of-stream marker
                    continue
                if pkt.is_corrupt or (pkt.pos is not None and pkt.pos + pkt.size > size):
                    where = f"packet {n} at byte {pkt.pos} is cut off by the end of the file ({size} bytes)"
                    return Cut(n, expected, where) if n else None
                n += 1
    except (av.error.FFmpegError, IndexError):  # IndexError: no video stream
        return None
    if expected and 0 < n < expected:
        return Cut(n, expected, f"the index promises {expected} packets, the file holds {n}")
    return None


@contextlib.contextmanager
def complete_prefix(path: str) -> Iterator[tuple[str, Cut] | None]:
    """``(path of a temporary mp4 holding the complete packets, the cut)`` when the video stream of the
    local file ``path`` breaks off, else None (see ``find_cut``). The copy is removed on exit.

    A stream copy (no re-encode) that keeps timestamps as they are, so frame times in the prefix are
    those of the same frames in ``path``; two passes over the packets keep memory flat."""
    import av

    cut = find_cut(path)
    if cut is None:
        yield None
        return
    tmpdir = tempfile.mkdtemp(prefix="reelforge-prefix-")
    try:
        out_path = os.path.join(tmpdir, "prefix.mp4")
        with av.open(path) as container, av.open(out_path, "w", format="mp4") as out:
            stream = main_video_stream(container)
            ostream = out.add_stream_from_template(stream)
            for i, pkt in enumerate(container.demux(stream)):
                if i >= cut.packets:
                    break
                pkt.stream = ostream
                out.mux(pkt)
        yield out_path, cut
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
