"""Interlaced frames made whole before a clip is encoded (FFmpeg's ``bwdif`` through PyAV's filter graph)."""
from __future__ import annotations

import av


class Deinterlacer:
    """FFmpeg's ``bwdif`` over the frames of one clip: one output frame per input frame (``send_frame``),
    at its time, colour tags kept.

    An interlaced source (broadcast MPEG-2/H.264, camcorders) decodes to frames whose two fields were
    shot 1/50 or 1/60 s apart; woven into one picture, every moving edge is combed. Only frames the
    decoder flags interlaced are deinterlaced (``deint=interlaced``): a stream mixing progressive
    frames passes those through untouched. The filter needs the next frame to deinterlace one, so
    frames come out one behind; ``flush`` hands back the last.
    """

    def __init__(self, threads: int):
        self.threads = threads
        self.graph = self.key = None

    def _build(self, frame: av.VideoFrame) -> None:
        g = av.filter.Graph()
        g.threads = self.threads
        src = g.add("buffer", video_size=f"{frame.width}x{frame.height}", pix_fmt=frame.format.name,
                    time_base=str(frame.time_base), pixel_aspect="1/1",
                    colorspace=str(int(frame.colorspace)), range=str(int(frame.color_range)))
        bwdif = g.add("bwdif", "mode=send_frame:parity=auto:deint=interlaced")
        sink = g.add("buffersink")
        src.link_to(bwdif)
        bwdif.link_to(sink)
        g.configure()
        self.graph, self.key = g, self._key(frame)

    @staticmethod
    def _key(frame: av.VideoFrame) -> tuple:
        return frame.width, frame.height, frame.format.name, frame.time_base, int(frame.colorspace), \
            int(frame.color_range)

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        """The frames ready after ``frame`` went in (none for the first). A change of size or format
        mid-stream (a broadcast switching programmes) drains the filter and starts a new one: the
        buffer source cannot change them on the fly."""
        out = []
        if self.graph is not None and self._key(frame) != self.key:
            out = self.flush()
        if self.graph is None:
            self._build(frame)
        self.graph.push(frame)
        return out + self._pull()

    def flush(self) -> list[av.VideoFrame]:
        """The frames still held (the last one), at the end of the clip."""
        if self.graph is None:
            return []
        self.graph.push(None)
        out = self._pull()
        self.graph = self.key = None
        return out

    def _pull(self) -> list[av.VideoFrame]:
        out = []
        while True:
            try:
                out.append(self.graph.pull())
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
