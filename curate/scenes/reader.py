"""The fast reader: per-frame thumbnails for shot detection without decoding every frame.

Decoding is the whole cost of a content detector, and most of what a decoder does is wasted on it:
a frame between two reference frames that look alike cannot hide a hard cut. So the video is read
one chunk of whole GOPs at a time:

1. coarse: decode only the reference frames (``skip_frame=NONREF``: I, P and reference-B frames; no
   reference chain is broken, so every decoded picture is exact) and take small Y/U/V thumbnails
   straight from the decoder's planes (no colour conversion). With ``fast_decode`` on H.264/HEVC,
   reference B-frames are skipped too (``BIDIR``: I and P only): P-frames seldom predict from them,
   so pictures stay within a level or so of exact, for up to a third less decoding (a pass that
   decodes a B-frame decodes the reference B-frames it may predict from: packets.prior_ref_bs);
2. refine: decode the chunk again (up to the last packet needed), keeping the skipped frames the
   refinement policy (``policy.py``) asks for: gaps that stand out from their neighbours, and
   whatever the detector's own tests need around a possible cut.

The compressed stream says where to look before anything is decoded (``packets.py``): the first
reference frame after a cut is coded almost intra, so its packet is a "spike" against the chunk's
usual inter packet; the non-reference frames shown just before it (where the cut is) are decoded
in the coarse pass already, except inside a run of spikes (fades, dissolves and fast action code
every P-frame mostly intra), where only a run's two ends get their B-frames in the first pass. A
chunk with no spike decodes only its keyframes, and a chunk's tail after its last spike is left
undecoded, its decoder paused there; both are decoded after all (the paused decoder goes on) when
the next chunk's first frame does not follow on from their last decoded one, or when a possible
cut needs the tail beside it. The frames between a chunk's keyframe and its first P-frame are
decoded in the first pass: when the keyframe is a cut (encoders put keyframes at cuts) the
detector measures the motion just after it frame to frame, and decoding them later would mean
decoding the keyframe, often the costliest frame of the chunk, a second time.

Chunks are scheduled by ``schedule.py`` (windows decoded in parallel, checked in order) on the
decoders of ``decoders.py``. Frame times come from the packets (``packet.pts * time_base``,
sorted), which are exactly the ``frame.time`` values PyAV gives for the decoded frames; frames that
were never decoded have a time but no thumbnail. Anything unusual (packets without timestamps,
duplicate timestamps, a refinement that does not give back the frames it was asked for) falls back
to decoding every frame.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from reelforge.curate import malloc

from . import packets as pk
from .config import SceneConfig
from .decoders import DecoderPool, Paused
from .features import Features, FastPathUnsupported, fps_of, open_video, read_exact, stream_rate
from .policy import needed, relative_gaps
from .result import SceneDetectionError
from .schedule import run_windows
from .thumbs import THUMB_DIM, distance, thumbnail

# B-frames a gap inside a run of spikes must hold to be left to the refinement: one B-frame between
# two P-frames costs little, and coarse steps there cut short the dissolves the detector finds
_MIN_RUN_GAP = 2
_MIN_TAIL = 12  # packets after a chunk's last spike worth leaving undecoded (paused) for now
# thumbnails moved into the final array between two returns of freed heap memory (below)
_TRIM_ROWS = 2048
# codecs (FFmpeg decoder names) the fast reader reads: their decoders skip non-reference pictures
# packet by packet (skip_frame), which is what the passes are made of; fast = exact is tested on each
# (tests/curate/test_scenes_matrix.py, test_scenes_codecs.py). Everything else is read whole, decided
# from the stream before anything is decoded (BENCHMARKS.md, "Shot detection on codecs we did not
# choose"):
# - VP8/VP9: every inter frame libvpx writes refreshes a reference buffer, so the decoder skips none:
#   the passes decoded 100% of the frames for 1.1-2.1x the CPU of one plain decode;
# - AV1 (libdav1d): skip_frame is read once, when the decoder opens (dav1d's decode_frame_type), so a
#   pass cannot decode one packet and skip the next: refinements came back without their frames;
# - intra-only (ProRes, MJPEG, DNxHD): every frame is a keyframe and the passes decoded 13-27% more
#   than one plain decode; FFV1: its decoder skips nothing either, what the passes saved came from
#   still stretches alone (0.67-1.05 of the frames decoded);
# - codecs nobody tested here (VVC, Theora, ...): exact is never wrong.
_FAST_CODECS = {"h264", "hevc", "mpeg1video", "mpeg2video", "mpeg4"}


def read_features(path: str, cfg: SceneConfig) -> Features:
    """Thumbnails of ``path``: the fast reader unless ``cfg.exact``, or when it cannot cope."""
    if not cfg.exact:
        try:
            return FastReader(path, cfg).read()
        except FastPathUnsupported:
            pass
    return read_exact(path)  # every frame: frame threads pay off here


class FastReader:
    """The coarse/refine passes over one chunk of GOPs (``process``, ``resume``, ``decode_gaps``,
    called by ``schedule.run_windows`` from its worker threads), and the ``Features`` they add up to.

    Three things keep it from decoding what it does not need:
    - quiet chunks (no packet-size spike) decode only their keyframes (a single-GOP chunk then
      pauses its decoder there); if the next chunk's first frame differs from the last keyframe,
      the chunk is decoded after all (the paused decoder goes on);
    - the non-reference frames right after a spiking reference packet (a cut, mostly) are decoded
      in the coarse pass already, but for spikes inside a run of spikes (a fade or fast action);
    - a refinement pass stops after the last packet it needs.
    """

    def __init__(self, path: str, cfg: SceneConfig):
        self.path, self.cfg = path, cfg
        self.thumbs: dict[int, np.ndarray] = {}  # packet pts → thumbnail
        self.key_ready: dict[int, threading.Event] = {}  # a chunk's first pts → its thumbnail is in
        self._frames_out = itertools.count()  # frames the decoders let out (next() is atomic)
        # pts of the B-frames inside runs of spikes (see packets.inner_spikes): decoded at reference
        # level only (NONREF) in every pass, and refined only where their gap stands out from the run's
        self._in_runs: set[int] = set()
        self._runs_lock = threading.Lock()
        self._eager: set[int] = set()  # pts of B-frames decoded in the first pass (spikes', heads)
        self.hidden: set[int] = set()  # pts of discarded packets: fed, never shown (packets.demux_chunks)

    # --- decoding

    def _refs(self, packets: list) -> list[bool | None]:
        return pk.references(packets, self.codec, self.nal_len)

    def _feed(self, cc, packets: list, full: set[int], default_skip: str,
              helpers: set[int] = frozenset()) -> None:
        """Feed ``packets``: those in ``full`` or ``helpers`` decoded whatever ``default_skip``
        says; ``helpers`` (reference B-frames other B-frames need, see packets.prior_ref_bs) get no
        thumbnail: known frames are the same whether or not a pass needed them."""
        for pkt in packets:
            if pkt.pts in full or pkt.pts in helpers:
                cc.skip_frame = "DEFAULT"
            elif default_skip == "BIDIR" and pkt.pts in self._in_runs:
                # a run's reference B-frames keep its P-frames exact: in a fade P-frames do predict
                # from them, and the fade's luma ramp is read off those P-frames
                cc.skip_frame = "NONREF"
            else:
                cc.skip_frame = default_skip
            for frame in cc.decode(pkt):
                self._take(frame, helpers)

    def _drain(self, cc, helpers: set[int] = frozenset()) -> None:
        cc.skip_frame = "DEFAULT"
        for frame in cc.decode(None):  # the decoder holds frames back for reordering
            self._take(frame, helpers)
        cc.flush_buffers()

    def _decode(self, packets: list, full: set[int], default_skip: str) -> None:
        """Decode ``packets`` from a fresh decoder state: packets whose pts is in ``full`` always,
        the others with ``skip_frame=default_skip``."""
        helpers = self._helpers(packets, full)
        cc = self.decoders.acquire()
        self._feed(cc, packets, full, default_skip, helpers)
        self._drain(cc, helpers)
        self.decoders.release(cc)

    def _take(self, frame, helpers: set[int] = frozenset()) -> None:
        if frame.pts is None:
            raise FastPathUnsupported
        next(self._frames_out)
        if frame.pts not in self.thumbs and frame.pts not in helpers:
            self.thumbs[frame.pts] = thumbnail(frame)
            if (ready := self.key_ready.get(frame.pts)) is not None:
                ready.set()

    def _helpers(self, packets: list, full: set[int]) -> set[int]:
        """The reference B-frames a pass decoding ``full`` decodes only for other B-frames' sake
        (only when the coarse pass skips reference B-frames)."""
        if self.coarse_skip != "BIDIR":
            return set()
        return pk.prior_ref_bs(packets, full, self._refs(packets), self._in_runs) - full - self._in_runs

    # --- per chunk (called from the scheduler's threads)

    def process(self, packets: list, quiet_ok: bool):
        """Coarse pass (+ refinement) over one chunk. Returns "quiet" (only keyframes decoded),
        "done", or a ``Paused`` decoder: the chunk's tail after its last spike was left undecoded
        and waits for the check against the next chunk."""
        refs = self._refs(packets)
        spikes = pk.spikes(packets, refs, self.cfg.spike_ratio, self.pixels)
        # the frames between the keyframe and the next reference frame: where the new shot's motion
        # is measured when the chunk starts with a cut (encoders put keyframes at cuts)
        head = pk.gap_after(packets, refs, 0) if self.nal_len else set()
        with self._runs_lock:
            self._eager |= head
        if quiet_ok and not spikes:
            keys = [p for p in packets if p.is_keyframe]
            if len(keys) == 1 and self.nal_len and len(packets) > _MIN_TAIL:
                # one GOP: decode its keyframe (and head) and pause there, so that if the chunk must
                # be decoded after all the decoder goes on from it (a keyframe costs several
                # P-frames, up to ~20 for a textured 1080p picture)
                last = max([0] + [i for i, p in enumerate(packets) if p.pts in head])
                return self._pause(packets, refs, head, last)
            self._decode(keys, set(), "DEFAULT")
            kth = [self.thumbs.get(p.pts) for p in keys]
            if all(t is not None for t in kth) and all(
                    distance(a, b) <= self.cfg.refine_threshold for a, b in zip(kth, kth[1:])):
                return "quiet"
        gap_of = {i: pk.after_spike(packets, refs, i) for i in spikes}
        inner = {i for i in pk.inner_spikes(packets, spikes) if len(gap_of[i]) >= _MIN_RUN_GAP}
        after = set().union(head, *(g for i, g in gap_of.items() if i not in inner))
        with self._runs_lock:
            self._in_runs |= set().union(*(gap_of[i] for i in inner)) - after
            self._eager |= after
        if quiet_ok and spikes and self.nal_len:
            last = max([spikes[-1]] + [i for i, p in enumerate(packets) if p.pts in after])
            if len(packets) - last - 1 >= _MIN_TAIL:
                return self._pause(packets, refs, after, last)
        self._decode(packets, after, self.coarse_skip)
        self._refine(packets)
        return "done"

    def _pause(self, packets: list, refs: list, after: set[int], last: int):
        """Decode up to packet ``last`` (a chunk's last spike, or a quiet GOP's keyframe and head)
        on a decoder of its own, and a few packets more until the decoder has let out every frame
        up to there; then stop, undrained. A tail too short to be worth it, or one a possible cut
        needs beside it, is decoded at once."""
        cc = self.decoders.acquire()  # released by resume, or by the scheduler when not resumed
        helpers = self._helpers(packets, after)  # the whole chunk's: its tail may need some fed here
        self._feed(cc, packets[:last + 1], after, self.coarse_skip, helpers)
        coarse = pk.coarse_mask(packets[:last + 1], refs, self.coarse_skip)
        expected = {p.pts for i, p in enumerate(packets[:last + 1])
                    if (coarse[i] or p.pts in after or (refs[i] and p.pts in self._in_runs))
                    and p.pts not in self.hidden}
        j = last + 1
        while not expected <= self.thumbs.keys() and j < len(packets) and j - last <= 8:
            self._feed(cc, packets[j:j + 1], set(), self.coarse_skip, helpers)
            j += 1
        # the tail's own keyframes (GOPs shorter than a chunk; encoders put keyframes at cuts),
        # decoded on their own: a tail that ends as it began may hold shots between (psd_testvideo at
        # 160x90, GOP 250: black, a title card at 30-179, black again; both cuts were lost)
        if tail_keys := [p for p in packets[j:] if p.is_keyframe]:
            self._decode(tail_keys, set(), "DEFAULT")
        if (not expected <= self.thumbs.keys() or len(packets) - j < _MIN_TAIL // 2
                or self._needs_tail(packets, j)):
            self._feed(cc, packets[j:], set(), self.coarse_skip, helpers)
            self._drain(cc, helpers)
            self.decoders.release(cc)
            self._refine(packets)
            return "done"
        self._refine(packets[:j], open_end=True)
        return Paused(cc, j, helpers)

    def _needs_tail(self, packets: list, j: int) -> bool:
        """Whether the detector needs frames of the chunk's tail (``packets[j:]``) beside a possible
        cut among the frames decoded so far (a spike is the new shot's first frame): then it is
        decoded now, by the decoder that stands there, not again from the keyframe later."""
        order = self.order(packets)
        tail = {p.pts for p in packets[j:]}
        return not tail.isdisjoint(needed(order, self.thumbs, self.cfg))

    def resume(self, packets: list, paused: Paused) -> None:
        cc = paused.take()
        self._feed(cc, packets[paused.next_index:], set(), self.coarse_skip, paused.helpers)
        self._drain(cc, paused.helpers)
        self.decoders.release(cc)
        self._refine(packets)

    def _refine(self, packets: list, open_end: bool = False) -> None:
        """Decode again the skipped frames the refinement policy asks for (``policy.py``): gaps that
        stand out from their neighbours, and what the detector needs around a possible cut; not a
        paused chunk's tail (``open_end``): it waits for the check against the next chunk."""
        order = self.order(packets)
        wanted = relative_gaps(order, self.thumbs, self.cfg, self._in_runs, self._eager,
                               self.coarse_skip == "BIDIR", open_end)
        tail: set[int] = set()
        if open_end:  # the frames shown after the last decoded one
            known = [i for i, p in enumerate(order) if p in self.thumbs]
            tail = set(order[known[-1] + 1:] if known else order)
        wanted |= needed(order, self.thumbs, self.cfg) - tail
        if wanted:
            self.decode_gaps(packets, wanted)

    def decode_gaps(self, packets: list, wanted: set[int]) -> None:
        """Decode ``packets`` from the last keyframe before the first one in ``wanted`` up to the
        last one in ``wanted``, keeping those.

        Not from the chunk's first keyframe: a chunk holds several GOPs where they are short
        (scene-cut keyframes), and what a refinement wants is mostly near a cut at the chunk's end,
        so the P chain of the GOPs before it was decoded again for nothing (BENCHMARKS.md, issue
        12). A later keyframe is taken only when no wanted frame is shown before it (an open GOP's
        leading frames need the GOP before): decoding from it is then what the reader does at
        every chunk start."""
        idx = [i for i, p in enumerate(packets) if p.pts in wanted]
        first, last = idx[0], idx[-1]
        shown = min(wanted)
        start = max((i for i in range(first + 1) if packets[i].is_keyframe and packets[i].pts <= shown),
                    default=0)
        self._decode(packets[start:last + 1], wanted, self.coarse_skip)
        if any(p not in self.thumbs for p in wanted):
            # e.g. leading pictures of the stream's first keyframe (a cut by stream copy inside an
            # open GOP): no chunk before holds what they predict from (packets.demux_chunks)
            raise FastPathUnsupported

    def order(self, packets) -> list[int]:
        """pts of the frames ``packets`` show, in presentation order (discarded packets show none;
        a keyframe that ends one chunk and starts the next counts once)."""
        return sorted({p.pts for p in packets} - self.hidden)

    def edge(self, packets: list, last: bool):
        """Thumbnail of the chunk's last (or first) decoded frame in presentation order."""
        order = sorted((p.pts for p in packets), reverse=last)
        return next((self.thumbs[p] for p in order if p in self.thumbs), None)

    # --- the whole video

    def read(self) -> Features:
        container, stream = open_video(self.path, self.cfg.decode_threads)
        rate = stream_rate(stream)
        tb = stream.time_base
        self.codec = stream.codec_context.name
        if self.codec not in _FAST_CODECS:
            container.close()
            raise FastPathUnsupported
        self.nal_len = pk.nal_length_size(stream)
        # fast_decode: the coarse pass skips B-frames, reference B-frames included, where the NAL
        # headers tell references apart. In x264's B-pyramid, P-frames seldom predict from reference
        # B-frames, so the P chain stays nearly exact at up to a third less decoding; bit-exact
        # decoding skips only non-references. Not HEVC: FFmpeg's decoder skips under BIDIR every
        # picture with a B slice, and x265 codes its P-frames as B slices (generalised P/B), so the
        # coarse pass lost its P chain and every refinement came back short (x265 with B-frames was
        # read whole after a wasted fast pass; BENCHMARKS.md, "Shot detection on codecs ...")
        bidir = self.codec == "h264" and self.nal_len and self.cfg.fast_decode
        self.coarse_skip = "BIDIR" if bidir else "NONREF"
        self.pixels = stream.codec_context.width * stream.codec_context.height
        self.workers = self.cfg.decode_workers or min(2, os.cpu_count() or 1)
        self.decoders = DecoderPool(self.path, stream, self.workers, self.cfg.decode_threads,
                                    self.cfg.fast_decode, self.nal_len)
        all_pts: list[int] = []
        try:
            with container, ThreadPoolExecutor(self.workers) as executor:
                run_windows(self, executor, pk.demux_chunks(container, stream, all_pts, self.hidden))
        except FastPathUnsupported:
            raise
        except Exception as exc:
            raise SceneDetectionError(f"cannot decode {self.path}: {type(exc).__name__}: {exc}") from exc
        finally:
            self.decoders.close()
        if not all_pts:
            raise SceneDetectionError(f"{self.path}: no video frames could be decoded")
        ipts = np.sort(np.asarray(all_pts, np.int64))
        if np.any(np.diff(ipts) == 0):
            raise FastPathUnsupported  # duplicate timestamps: presentation order is ambiguous
        if set(self.thumbs) - set(all_pts):
            raise FastPathUnsupported  # decoder invented timestamps the packets do not have
        order = ipts.tolist()
        known = np.fromiter((p in self.thumbs for p in order), bool, len(order))
        # rows for the decoded frames only, moved out of the dict one by one, the heap pages they
        # leave returned as they go: glibc keeps freed memory, and the whole video's thumbnails twice
        # over (dict and array) were the split's peak on long inputs (+~300 MB on two hours of
        # 1080p; BENCHMARKS.md, issue 12)
        stacked = np.empty((int(known.sum()), THUMB_DIM), np.uint8)
        for r, p in enumerate([p for p in order if p in self.thumbs]):
            stacked[r] = self.thumbs.pop(p)
            if r % _TRIM_ROWS == _TRIM_ROWS - 1:
                malloc.release()
        # exactly PyAV's frame.time: float(pts * time_base) on Fractions, i.e. the correctly rounded
        # quotient of two integers, which float64 division gives too while both are exact (< 2**53)
        num, den = tb.numerator, tb.denominator
        if len(ipts) and max(abs(int(ipts[0])), abs(int(ipts[-1]))) * num < 2**53 and den < 2**53:
            pts = (ipts * num).astype(np.float64) / den
        else:
            pts = np.array([float(p * tb) for p in ipts.tolist()], np.float64)
        return Features(pts, stacked, known, fps_of(rate, pts), next(self._frames_out), "fast")
