"""The fast reader: per-frame thumbnails for shot detection without decoding every frame.

Decoding is the whole cost of a content detector, and most of what a decoder does is wasted on it:
a frame between two reference frames that look alike cannot hide a hard cut. So the video is read
one chunk of whole GOPs at a time:

1. coarse: decode only the reference frames (``skip_frame=NONREF``: I, P and reference-B frames; no
   reference chain is broken, so every decoded picture is exact) and take small Y/U/V thumbnails
   straight from the decoder's planes (no colour conversion). With ``fast_decode`` on H.264/HEVC,
   reference B-frames are skipped too (``BIDIR``: I and P only): P-frames seldom predict from them,
   so pictures stay within a level or so of exact, for up to a third less decoding (a pass that
   decodes a B-frame decodes the reference B-frames it may predict from: see _prior_ref_bs);
2. refine: where two consecutive decoded frames differ by more than ``refine_threshold`` and much
   more than their neighbours do, the skipped frames between them may hold a cut or a transition:
   decode the chunk again (up to there), keeping the skipped frames inside those gaps, so decisions
   there are made on every frame.

The compressed stream says where to look before anything is decoded: the first reference frame
after a cut is coded almost intra, so its packet is a "spike" against the chunk's usual inter
packet; the non-reference frames shown just before it (where the cut is) are decoded in the coarse
pass already (reference or not is read from the NAL headers of H.264/HEVC), except inside a run of
spikes: fades, dissolves and fast action code every P-frame mostly intra, so only a run's two ends
get their B-frames in the first pass, and a gap inside it is refined when it stands out from the
run's other gaps (a cut does; the steps of a fade do not). A chunk with no spike
decodes only its keyframes, and a chunk's tail after its last spike is left undecoded, its decoder
paused there; both are decoded after all (the paused decoder goes on) when the next chunk's first
frame does not follow on from their last decoded one. The frames between a chunk's keyframe and
its first P-frame are decoded in the first pass: when the keyframe is a cut (encoders put keyframes
at cuts) the detector measures the motion just after it frame to frame, and decoding them later
would mean decoding the keyframe, often the costliest frame of the chunk, a second time.

Chunks are demuxed as decoding reaches them and decoded by ``decode_workers`` threads, a window of
up to 64 chunks at a time. Decoders are reused (a fresh one per chunk measured 8-18% more CPU at
1080p: its setup and the first-touch page faults of its frame pool), and chunks are checked in
order as soon as the next chunk's keyframe is decoded, so few paused decoders are alive at once
whatever the video's length. Where a window has fewer chunks than workers (a clip shorter than a
GOP), its decoders use frame threads.

Frame times come from the packets (``packet.pts * time_base``, sorted), which are exactly the
``frame.time`` values PyAV gives for the decoded frames; frames that were never decoded have a
time but no thumbnail. Anything unusual (packets without timestamps, duplicate timestamps, a
refinement that does not give back the frames it was asked for) falls back to decoding every frame.
"""
from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np

from .config import SceneConfig
from .features import Features, FastPathUnsupported, fps_of, open_video, read_exact, stream_rate
from .policy import needed
from .result import SceneDetectionError
from .thumbs import THUMB_DIM, distance, median, thumbnail

# GOPs are gathered into chunks of at least this many packets: each chunk is one decoder run that
# ends with a drain, so chunks of tiny GOPs (all-intra video) would cost a drain per frame
_CHUNK_MIN_PACKETS = 48
# a window of chunks is decoded in parallel; each window ends with its last chunk decoded whole
# (nothing after it to check against) and a wait for its slowest chunk, so windows are long;
# bounded by the packets they hold (a 4K stream at 50 Mb/s: ~40 s of video)
_WINDOW_CHUNKS = 64
_WINDOW_BYTES = 256 << 20
# a gap between decoded frames is refined when its distance is this many times that of the gaps
# around it (and above refine_threshold)
_REFINE_RATIO = 2.0
# a spike (besides spike_ratio x the chunk's median inter packet) must be this share of the chunk's
# keyframe size: the first reference frame after a cut is coded mostly intra, like a keyframe ...
_SPIKE_KEY_SHARE = 0.02
# ... and at least this many bytes per pixel: in a still shot every small change is a "spike"
_SPIKE_BYTES_PER_PIXEL = 1 / 400
# B-frames a gap inside a run of spikes must hold to be left to the refinement: one B-frame between
# two P-frames costs little, and coarse steps there cut short the dissolves the detector finds
_MIN_RUN_GAP = 2
_MIN_TAIL = 12  # packets after a chunk's last spike worth leaving undecoded (paused) for now


def read_features(path: str, cfg: SceneConfig) -> Features:
    """Thumbnails of ``path``: the fast reader unless ``cfg.exact``, or when it cannot cope."""
    if not cfg.exact:
        try:
            return FastReader(path, cfg).read()
        except FastPathUnsupported:
            pass
    return read_exact(path)  # every frame: frame threads pay off here


def _nal_length_size(stream) -> int | None:
    """Bytes of the NAL length prefix of H.264 (avcC) / HEVC (hvcC) packets; None for Annex B or
    other codecs (then which packets are references is unknown)."""
    extra = stream.codec_context.extradata
    if not extra or extra[0] != 1:
        return None
    name = stream.codec_context.name
    if name == "h264" and len(extra) > 4:
        return (extra[4] & 3) + 1
    if name == "hevc" and len(extra) > 21:
        return (extra[21] & 3) + 1
    return None


def _is_reference(data: memoryview, codec: str, nal_len: int) -> bool:
    """Whether the first picture slice of a length-prefixed packet is a reference picture."""
    pos, n = 0, len(data)
    while pos + nal_len < n:
        size = int.from_bytes(data[pos:pos + nal_len], "big")
        head = data[pos + nal_len]
        if codec == "h264":
            if (head & 0x1F) in (1, 5):  # coded slice (non-IDR / IDR)
                return (head >> 5) & 3 != 0  # nal_ref_idc
        else:
            kind = (head >> 1) & 0x3F
            if kind < 32:  # VCL: the even types below 16 are sub-layer non-reference pictures
                return not (kind < 16 and kind % 2 == 0)
        pos += nal_len + size
    return True


def _b_frames(packets: list) -> list[bool]:
    """Per packet (decode order): a B-frame, i.e. shown before a packet fed earlier; the others
    are I/P frames, each shown after everything fed before it."""
    out, shown = [], None
    for p in packets:
        out.append(shown is not None and p.pts < shown)
        shown = p.pts if shown is None else max(shown, p.pts)
    return out


def _coarse_mask(packets: list, refs: list[bool | None], skip: str) -> list[bool]:
    """Which packets the coarse pass decodes under ``skip``: reference frames, less the B-frames
    under BIDIR."""
    return [bool(r) and not (skip == "BIDIR" and b) for r, b in zip(refs, _b_frames(packets))]


def _gap_level(d: np.ndarray, span: np.ndarray, i: int, in_run: bool) -> float:
    """The level of change gap ``i`` (distance ``d[i]`` over ``span[i]`` frames) is compared with:
    the median distance of the steps around it. Inside a run of spikes, that of the run's other
    coarse gaps only: every gap of a fade exceeds the per-frame steps at the run's ends, where its
    B-frames were decoded; with fewer than two such gaps around, the per-frame rate around it times
    its span."""
    lo, hi = max(1, i - 4), min(len(d), i + 5)
    if not in_run:
        around = np.concatenate([d[lo:i], d[i + 1:hi]])
        return median(around) if len(around) else 0.0
    near = [j for j in range(lo, hi) if j != i and span[j] > 1]
    if len(near) >= 2:
        return median(d[near])
    rate = np.concatenate([d[lo:i] / span[lo:i], d[i + 1:hi] / span[i + 1:hi]])
    return (median(rate) if len(rate) else 0.0) * float(span[i])


class Paused:
    """A decoder stopped part-way through a chunk, undrained: ``next_index`` is the chunk's first
    packet not fed yet."""

    def __init__(self, cc, next_index: int, helpers: set[int]):
        self._cc, self.next_index, self.helpers = cc, next_index, helpers

    def take(self):
        """The decoder, once (None after): whoever takes it drains or flushes it."""
        cc, self._cc = self._cc, None
        return cc


class FastReader:
    """The coarse/refine reader described at the top of this file, one chunk of GOPs at a time.

    Three things keep it from decoding what it does not need:
    - quiet chunks (no packet-size spike) decode only their keyframes (a single-GOP chunk then
      pauses its decoder there); if the next chunk's first frame differs from the last keyframe,
      the chunk is decoded after all (the paused decoder goes on);
    - the non-reference frames right after a spiking reference packet (a cut, mostly: the first
      reference frame after a cut is coded almost intra) are decoded in the coarse pass already,
      but for spikes inside a run of spikes (a fade or fast action);
    - a refinement pass stops after the last packet it needs.

    Chunks start at keyframes and are decoded independently, so ``decode_workers`` threads decode
    several at once, each with its own decoder (PyAV releases the GIL while decoding); then the
    boundaries between chunks are checked in order.
    """

    def __init__(self, path: str, cfg):
        self.path, self.cfg = path, cfg
        self.thumbs: dict[int, np.ndarray] = {}  # packet pts → thumbnail
        self._frames_out = itertools.count()  # frames the decoders let out (next() is atomic)
        # idle decoders, reused: a fresh decoder per chunk measured 8-18% more CPU over the 1080p
        # bench clip (its setup, and first-touch page faults of its frame pool). Each thread keeps its
        # own (a decoder's frames stay in that core's cache); the shared list holds those freed by
        # the main thread
        self._local = threading.local()
        self._idle: list = []
        self._idle_lock = threading.Lock()
        # decoders' threading: cfg.decode_threads, or frame threads while a window has fewer chunks
        # than workers (a one-GOP clip is one chunk: the other cores would sit idle)
        self._threads = cfg.decode_threads
        self._threads_of: dict[int, str] = {}  # id(decoder) → its threading
        self._key_ready: dict[int, threading.Event] = {}  # a chunk's first pts → its thumbnail is in
        self._opened: list = []
        # pts of the B-frames inside runs of spikes (see _inner_spikes): decoded at reference level
        # only (NONREF) in every pass, and refined only where their gap stands out from the run's
        self._in_runs: set[int] = set()
        self._runs_lock = threading.Lock()
        self._eager: set[int] = set()  # pts of B-frames decoded in the first pass (spikes', heads)

    # --- decoding

    def _new_ctx(self):
        """A decoder with exactly the stream's parameters.

        H.264/HEVC with avcC/hvcC extradata: a fresh context given that extradata (all the decoder
        reads besides the packets). Otherwise the codec context of a new opening of the file (never
        demuxed); opening probes the file again, which decodes its first frame (~13 ms at 1080p)."""
        if self.nal_len:
            cc = av.CodecContext.create(self.codec, "r")
            cc.extradata = self.extradata
            cc.thread_type = self._threads
        else:
            container, stream = open_video(self.path, self._threads)
            self._opened.append(container)  # closed at the end of read()
            cc = stream.codec_context
        if self._threads == "FRAME":
            cc.thread_count = self.workers
        self._threads_of[id(cc)] = self._threads
        if self.cfg.fast_decode:
            # no reference frame is skipped, so skipping the loop filter only blurs block edges a
            # little: invisible in a 64x36 thumbnail, and ~15% less decoding
            cc.options = {"skip_loop_filter": "all"}
            cc.flags2 |= 1  # AV_CODEC_FLAG2_FAST
        return cc

    def _own_idle(self) -> list:
        if not hasattr(self._local, "idle"):
            self._local.idle = []
        return self._local.idle

    def _acquire(self):
        """An idle decoder (reset) with the current threading: this thread's, else a shared one,
        else a new one."""
        own = self._own_idle()
        while own:
            if self._threads_of[id(cc := own.pop())] == self._threads:
                return cc
        with self._idle_lock:
            while self._idle:
                if self._threads_of[id(cc := self._idle.pop())] == self._threads:
                    return cc
        return self._new_ctx()

    def _release(self, cc, shared: bool = False) -> None:
        """Back to this thread's idle decoders (or the shared ones); ``cc`` must have been drained
        or flushed."""
        if not shared:
            self._own_idle().append(cc)
            return
        with self._idle_lock:
            self._idle.append(cc)

    def _feed(self, cc, packets: list, full: set[int], default_skip: str,
              helpers: set[int] = frozenset()) -> None:
        """Feed ``packets``: those in ``full`` or ``helpers`` decoded whatever ``default_skip``
        says; ``helpers`` (reference B-frames other B-frames need, see _prior_ref_bs) get no
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
        cc = self._acquire()
        self._feed(cc, packets, full, default_skip, helpers)
        self._drain(cc, helpers)
        self._release(cc)

    def _take(self, frame, helpers: set[int] = frozenset()) -> None:
        if frame.pts is None:
            raise FastPathUnsupported
        next(self._frames_out)
        if frame.pts not in self.thumbs and frame.pts not in helpers:
            self.thumbs[frame.pts] = thumbnail(frame)
            if (ready := self._key_ready.get(frame.pts)) is not None:
                ready.set()

    # --- per chunk

    def _spikes(self, packets: list, refs: list[bool | None]) -> list[int]:
        """Indices of reference packets much bigger than the chunk's usual inter frame."""
        inter = [p.size for p, r in zip(packets, refs) if not p.is_keyframe and r is not False]
        if not inter:
            return []
        keys = [p.size for p in packets if p.is_keyframe]
        floor = max(self.cfg.spike_ratio * median(inter),
                    _SPIKE_KEY_SHARE * median(keys) if keys else 0.0,
                    self.pixels * _SPIKE_BYTES_PER_PIXEL)
        return [i for i, (p, r) in enumerate(zip(packets, refs))
                if not p.is_keyframe and r is not False and p.size > floor]

    def _after_spikes(self, packets: list, refs: list[bool | None], spikes: list[int]) -> set[int]:
        """pts of the B-frame packets that follow each spike in decode order up to the next
        frame shown after it: the B-frames shown just before the spiking frame, where the cut is
        (reference B-frames included: the BIDIR coarse pass skips them)."""
        out: set[int] = set()
        for i in spikes:
            shown = packets[i].pts
            for j in range(i + 1, min(len(packets), i + 1 + 32)):
                p = packets[j]
                if refs[j] is None:  # unknown codec layout: the next few packets
                    if j - i > 4:
                        break
                    out.add(p.pts)
                elif p.pts > shown:
                    break  # the next P (or I) frame: the B-frames of the spike's gap are behind
                else:  # a B-frame shown before the spike: reference B-frames too (coarse skips them)
                    out.add(p.pts)
        return out

    @staticmethod
    def _inner_spikes(packets: list, spikes: list[int]) -> set[int]:
        """Spikes whose P-frames before and after (decode order) spike too: the inside of a run of
        spikes. A run is a fade, a dissolve or fast action (every P-frame coded mostly intra), not
        a cut; the first reference frame after a cut inside a run stands out from the run's
        other gaps on the P-frames alone, so the B-frames inside are left to the refinement.
        On psd_testvideo.mp4 (fades and action with spikes on every P-frame) this decodes 23% fewer
        frames (241 instead of 313) with the same cuts, its transitions within a frame of where they
        were."""
        forward = [i for i, b in enumerate(_b_frames(packets)) if not b]  # I/P frames
        spiking = set(spikes)
        return {i for k, i in enumerate(forward[1:-1], 1)
                if i in spiking and forward[k - 1] in spiking and forward[k + 1] in spiking}

    @staticmethod
    def _gap_after(packets: list, refs: list[bool | None], i: int) -> set[int]:
        """pts of the B-frames shown between packet ``i`` and the next frame after it in decode
        order that is shown after it (they follow that frame in decode order).

        Used for the chunk's keyframe: when the chunk starts with a cut, the detector measures the
        new shot's motion frame to frame just after it; decoded in the first pass, these two or
        three B-frames spare decoding the keyframe again (at 1080p it can cost 20 P-frames)."""
        shown, out = packets[i].pts, set()
        nxt = next((j for j in range(i + 1, min(len(packets), i + 33)) if packets[j].pts > shown), None)
        if nxt is None or refs[nxt] is None:
            return out
        for j in range(nxt + 1, min(len(packets), nxt + 33)):
            if packets[j].pts > packets[nxt].pts:
                break
            if packets[j].pts > shown:
                out.add(packets[j].pts)
        return out

    def _helpers(self, packets: list, full: set[int]) -> set[int]:
        """The reference B-frames a pass decoding ``full`` decodes only for other B-frames' sake."""
        return self._prior_ref_bs(packets, full) - full - self._in_runs

    def _prior_ref_bs(self, packets: list, decoded: set[int]) -> set[int]:
        """pts of the reference B-frames a pass that decodes the B-frames in ``decoded`` must decode
        too, when it skips reference B-frames (BIDIR): for each gap with a decoded B-frame, the
        gap's own reference B-frames and the last one fed before the gap. FFmpeg's H.264 decoder
        stands a copy of an older picture in for a skipped reference frame, and B-frames predicting
        from it come out wrong: one right after a cut came out as a blend with the old shot (113
        levels off, and the cut was missed); P-frames are not affected."""
        if self.coarse_skip != "BIDIR":
            return set()
        out: set[int] = set()
        last_ref_b = before_gap = None
        gap: list[tuple[int, bool]] = []  # (pts, reference) of the B-frames fed since the last I/P

        def close() -> None:
            if any(pts in decoded or (ref and pts in self._in_runs) for pts, ref in gap):
                out.update(pts for pts, ref in gap if ref)
                if before_gap is not None:
                    out.add(before_gap)

        for p, b in zip(packets, _b_frames(packets)):
            if not b:  # I/P: the B-frames fed after it are its gap
                close()
                before_gap, gap = last_ref_b, []
                continue
            ref = _is_reference(memoryview(p), self.codec, self.nal_len)
            gap.append((p.pts, ref))
            if ref:
                last_ref_b = p.pts
        close()
        return out

    def _refine(self, packets: list, open_end: bool = False) -> None:
        """Decode again the skipped frames of gaps whose two ends differ much more than decoded
        frames around them do (or that come before the chunk's first decoded frame).

        Relative to the neighbours, because in fast motion every gap differs: a cut (or the start
        of a transition) still stands out from them; steady motion does not need every frame."""
        order = sorted(p.pts for p in packets)
        known: list[np.ndarray] = []
        known_pts: list[int] = []
        gaps: list[tuple[int, list[int]]] = []  # (index into known of the gap's right end, pts)
        pending: list[int] = []
        for p in order:
            th = self.thumbs.get(p)
            if th is None:
                pending.append(p)
                continue
            if pending:
                gaps.append((len(known), pending))
            known.append(th)
            known_pts.append(p)
            pending = []
        # undecoded frames at the end of the chunk (open GOP); not of a paused chunk: its tail waits
        wanted: set[int] = set() if open_end else set(pending)
        if known:
            th = np.stack(known)
            d = np.concatenate([[np.inf], distance(th[1:], th[:-1])])  # (K,) d[i]: known i-1 → i
            picked: set[int] = set()
            span = np.ones(len(known))  # (K,) frames each step spans
            for i, pts in gaps:
                span[i] = len(pts) + 1
            # gaps inside a run of spikes (see _inner_spikes), judged against the run's other gaps
            interior = {i for i, pts in gaps if i and self._in_runs.issuperset(pts)}
            for i, pts in gaps:
                if i == 0:
                    wanted.update(pts)  # undecoded frames before the first decoded one (open GOP)
                    continue
                level = _gap_level(d, span, i, i in interior)
                if d[i] > self.cfg.refine_threshold and d[i] > _REFINE_RATIO * level:
                    wanted.update(pts)
                    picked.add(i)
            if self.coarse_skip == "BIDIR":
                # P-frames alone are sparse (a B-pyramid puts 4-8 frames between them): a moving
                # gap next to a refined one, or next to frames already decoded at full rate (a
                # spike's B-frames) that move too, is refined as well, so a transition's ends and
                # the motion just outside it are seen at full rate, as the detector expects
                by_end = dict(gaps)
                busy = d > self.cfg.refine_threshold  # (K,)

                def full_rate(j: int) -> bool:
                    """Step j is between adjacent frames, one of them a B-frame decoded in the first
                    pass (at a spike or a keyframe), and moves. Not consecutive P-frames: an encoder
                    leaves B-frames out in steady motion too (a pan), which is no transition, and
                    refining next to them decoded a GOP again for nothing (1080p bench clip: 259
                    frames decoded before, 244 since)"""
                    return (j not in by_end and bool(busy[j])
                            and (known_pts[j] in self._eager or known_pts[j - 1] in self._eager))

                for i in by_end:  # (not inside a run of spikes: its ends are decoded at full rate)
                    if i == 0 or not busy[i] or i in interior:
                        continue
                    left = i - 1 >= 1 and (i - 1 in picked or full_rate(i - 1))
                    right = i + 1 < len(d) and (i + 1 in picked or full_rate(i + 1))
                    if left or right:
                        wanted.update(by_end[i])
        # what the detector's own tests ask for (policy.py); not a paused chunk's tail: it waits
        wanted |= needed(order, self.thumbs, self.cfg) - (set(pending) if open_end else set())
        if not wanted:
            return
        last = max(i for i, p in enumerate(packets) if p.pts in wanted)
        self._decode(packets[:last + 1], wanted, self.coarse_skip)
        if any(p not in self.thumbs for p in wanted):
            raise FastPathUnsupported  # e.g. open-GOP leading frames that need the previous chunk

    def _process(self, packets: list, quiet_ok: bool):
        """Coarse pass (+ refinement) over one chunk. Returns "quiet" (only keyframes decoded),
        "done", or a ``Paused`` decoder: the chunk's tail after its last spike was
        left undecoded and waits for the check against the next chunk."""
        refs = [_is_reference(memoryview(p), self.codec, self.nal_len) if self.nal_len else None
                for p in packets]
        spikes = self._spikes(packets, refs)
        # the frames between the keyframe and the next reference frame: where the new shot's motion is
        # measured when the chunk starts with a cut (encoders put keyframes at cuts)
        head = self._gap_after(packets, refs, 0) if self.nal_len else set()
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
        gap_of = {i: self._after_spikes(packets, refs, [i]) for i in spikes}
        inner = {i for i in self._inner_spikes(packets, spikes) if len(gap_of[i]) >= _MIN_RUN_GAP}
        after = set().union(head, *(g for i, g in gap_of.items() if i not in inner))
        with self._runs_lock:
            self._in_runs |= set().union(*(gap_of[i] for i in inner)) - after
            self._eager |= after
        if quiet_ok and spikes and self.nal_len:
            last = max([spikes[-1]] + [i for i, p in enumerate(packets) if p.pts in after])
            if len(packets) - last - 1 >= _MIN_TAIL:
                paused = self._pause(packets, refs, after, last)
                if paused is not None:
                    return paused
        self._decode(packets, after, self.coarse_skip)
        self._refine(packets)
        return "done"

    def _pause(self, packets: list, refs: list, after: set[int], last: int):
        """Decode up to packet ``last`` (a chunk's last spike, or a quiet GOP's keyframe and head)
        on a decoder of its own, and a few packets more until the decoder has let out every frame
        up to there; then stop, undrained. A tail too short to be worth it is decoded at once."""
        cc = self._acquire()  # released by _resume, or reset in _run_window when not resumed
        helpers = self._helpers(packets, after)  # the whole chunk's: its tail may need some fed here
        self._feed(cc, packets[:last + 1], after, self.coarse_skip, helpers)
        coarse = _coarse_mask(packets[:last + 1], refs, self.coarse_skip)
        expected = {p.pts for i, p in enumerate(packets[:last + 1])
                    if coarse[i] or p.pts in after or (refs[i] and p.pts in self._in_runs)}
        j = last + 1
        while not expected <= self.thumbs.keys() and j < len(packets) and j - last <= 8:
            self._feed(cc, packets[j:j + 1], set(), self.coarse_skip, helpers)
            j += 1
        if (not expected <= self.thumbs.keys() or len(packets) - j < _MIN_TAIL // 2
                or self._needs_tail(packets, j)):
            self._feed(cc, packets[j:], set(), self.coarse_skip, helpers)
            self._drain(cc, helpers)
            self._release(cc)
            self._refine(packets)
            return "done"
        self._refine(packets[:j], open_end=True)
        return Paused(cc, j, helpers)

    def _needs_tail(self, packets: list, j: int) -> bool:
        """Whether the detector needs frames of the chunk's tail (``packets[j:]``) beside a possible
        cut among the frames decoded so far (a spike is the new shot's first frame): then it is
        decoded now, by the decoder that stands there, not again from the keyframe later."""
        order = sorted(p.pts for p in packets)
        tail = {p.pts for p in packets[j:]}
        return not tail.isdisjoint(needed(order, self.thumbs, self.cfg))

    def _resume(self, packets: list, paused: "Paused") -> None:
        cc = paused.take()
        self._feed(cc, packets[paused.next_index:], set(), self.coarse_skip, paused.helpers)
        self._drain(cc, paused.helpers)
        self._release(cc)
        self._refine(packets)

    def _edge(self, packets: list, last: bool):
        """Thumbnail of the chunk's last (or first) decoded frame in presentation order."""
        order = sorted((p.pts for p in packets), reverse=last)
        return next((self.thumbs[p] for p in order if p in self.thumbs), None)

    def _run_window(self, pool, first: list, source):
        """Decode a window of chunks in parallel, then finish the quiet and paused ones whose last
        decoded frame does not lead into the next chunk's first. The window starts with chunk
        ``first`` and takes more from ``source`` (the demuxer) as they are needed, up to
        _WINDOW_CHUNKS chunks or _WINDOW_BYTES of packets; returns the next window's first chunk
        (None at the end of the video).

        Chunks are demuxed only as decoding reaches them, so decoding starts with the first chunk.
        They are checked in order, each as soon as it is done and the next one's keyframe is
        decoded, so a tail goes on decoding beside the chunks after it; and only three chunks per
        worker run ahead of the check: a paused decoder holds its frames until then, so the number
        alive at once is bounded and the idle ones are reused. Fewer (one ahead per worker) left a
        worker idle behind a costly chunk (textured 1080p GOPs), 10-17% more wall time on the
        1080p bench clip. A window's last chunk is always decoded whole: nothing decoded
        after it to check against."""
        chunks: list[list] = []
        held = 0
        nxt = None  # the next window's first chunk
        ended = False  # no more chunks for this window

        def pull(i: int) -> bool:
            """Whether chunk i is in this window (demuxing up to it)."""
            nonlocal held, nxt, ended
            while len(chunks) <= i and not ended:
                c = first if not chunks else next(source, None)
                if c is None or len(chunks) == _WINDOW_CHUNKS or held >= _WINDOW_BYTES:
                    nxt, ended = c, True
                    break
                chunks.append(c)
                held += sum(p.size for p in c)
                self._key_ready[c[0].pts] = threading.Event()
            return i < len(chunks)

        # fewer chunks than workers: a decoder per chunk leaves cores idle; frame threads use them
        # (+20-30% CPU time, but on cores that had nothing to do)
        few = not pull(self.workers - 1) and self.cfg.decode_threads == "NONE"
        self._threads = "FRAME" if few else self.cfg.decode_threads
        ahead = 3 * self.workers
        running: dict[int, object] = {}
        finishing = []

        def start(i: int) -> None:
            if pull(i):
                last = not pull(i + 1)
                running[i] = pool.submit(self._process, chunks[i], self.cfg.skip_quiet and not last)
                # a chunk that ends without its first frame decoded (or fails) wakes the check too
                running[i].add_done_callback(lambda _, e=self._key_ready[chunks[i][0].pts]: e.set())

        def first_frame(i: int):
            """Thumbnail of chunk i's first packet (its keyframe) once decoded, else once the
            chunk is done, its first decoded frame."""
            self._key_ready[chunks[i][0].pts].wait()
            th = self.thumbs.get(chunks[i][0].pts)
            if th is None:
                running[i].result()  # raises the chunk's error, if any
                th = self._edge(chunks[i], last=False)
            return th

        try:
            for i in range(ahead):
                start(i)
            i = 0
            while i in running:
                state = running[i].result()
                start(i + ahead)
                if state != "done":
                    before, after = self._edge(chunks[i], last=True), first_frame(i + 1)
                    if before is None or after is None or distance(before, after) > self.cfg.refine_threshold:
                        if state == "quiet":
                            finishing.append(pool.submit(self._process, chunks[i], False))
                        else:
                            finishing.append(pool.submit(self._resume, chunks[i], state))
                    elif isinstance(state, Paused):  # leads on: drop its frames, keep the decoder
                        cc = state.take()
                        cc.flush_buffers()
                        self._release(cc, shared=True)
                i += 1
            for f in finishing:
                f.result()
        finally:
            for f in list(running.values()) + finishing:  # on error: drop what has not started
                f.cancel()
        self._context(pool, ([self._last_chunk] if self._last_chunk else []) + chunks)
        self._last_chunk = chunks[-1]  # its frames are the context of a cut at the next window's start
        return nxt

    def _context(self, pool, chunks: list[list]) -> None:
        """Decode what ``policy.needed`` asks for across these chunks, again until it asks for nothing
        (a decoded gap may show a jump at its far end that needs context in turn).

        Most of it is a cut at a chunk's keyframe (encoders put keyframes at cuts) whose chunk
        decoded only its keyframe, or whose first gap skipped frames; a re-decode from the keyframe
        up to the gap's end, a few packets mostly."""
        while True:  # each round decodes frames not decoded before (or raises): it ends
            order = sorted(p.pts for c in chunks for p in c)
            wanted = needed(order, self.thumbs, self.cfg)
            jobs = [(c, w) for c in chunks if (w := wanted & {p.pts for p in c})]
            if not jobs:
                return
            list(pool.map(lambda job: self._decode_gaps(*job), jobs))

    def _decode_gaps(self, packets: list, wanted: set[int]) -> None:
        """Decode ``packets`` from the keyframe up to the last one in ``wanted``, keeping those."""
        last = max(i for i, p in enumerate(packets) if p.pts in wanted)
        self._decode(packets[:last + 1], wanted, self.coarse_skip)
        if any(p not in self.thumbs for p in wanted):
            raise FastPathUnsupported  # e.g. open-GOP leading frames that need the previous chunk

    @staticmethod
    def _demux(container, stream, all_pts: list[int]):
        """The stream's packets, a chunk (list) at a time: whole GOPs, at least _CHUNK_MIN_PACKETS
        packets each; every packet's pts is appended to ``all_pts`` as it is read."""
        chunk: list = []
        for pkt in container.demux(stream):
            if pkt.size == 0:  # demuxer's end-of-stream marker
                continue
            if pkt.pts is None:
                raise FastPathUnsupported
            if pkt.is_keyframe and len(chunk) >= _CHUNK_MIN_PACKETS:
                yield chunk
                chunk = []
            chunk.append(pkt)
            all_pts.append(pkt.pts)
        if chunk:
            yield chunk

    def read(self) -> Features:
        container, stream = open_video(self.path, self.cfg.decode_threads)
        rate = stream_rate(stream)
        tb = stream.time_base
        self.codec = stream.codec_context.name
        self.nal_len = _nal_length_size(stream)
        self.extradata = stream.codec_context.extradata
        # fast_decode: the coarse pass skips B-frames, reference B-frames included, where the NAL
        # headers tell references apart. In x264's B-pyramid, P-frames seldom predict from reference
        # B-frames, so the P chain stays nearly exact (thumbnails within ~1 level on psd_testvideo)
        # at up to a third less decoding; bit-exact decoding skips only non-references
        self.coarse_skip = "BIDIR" if self.nal_len and self.cfg.fast_decode else "NONREF"
        self.pixels = stream.codec_context.width * stream.codec_context.height
        self.workers = workers = self.cfg.decode_workers or min(2, os.cpu_count() or 1)
        self._last_chunk: list | None = None
        all_pts: list[int] = []
        try:
            with container, ThreadPoolExecutor(workers) as pool:
                source = self._demux(container, stream, all_pts)
                window = next(source, None)
                while window is not None:
                    window = self._run_window(pool, window, source)
        except FastPathUnsupported:
            raise
        except Exception as exc:
            raise SceneDetectionError(f"cannot decode {self.path}: {type(exc).__name__}: {exc}") from exc
        finally:
            for c in self._opened:
                c.close()
        if not all_pts:
            raise SceneDetectionError(f"{self.path}: no video frames could be decoded")
        ipts = np.sort(np.asarray(all_pts, np.int64))
        if np.any(np.diff(ipts) == 0):
            raise FastPathUnsupported  # duplicate timestamps: presentation order is ambiguous
        if set(self.thumbs) - set(all_pts):
            raise FastPathUnsupported  # decoder invented timestamps the packets do not have
        order = ipts.tolist()
        known = np.fromiter((p in self.thumbs for p in order), bool, len(order))
        stacked = np.zeros((len(order), THUMB_DIM), np.float32)
        if known.any():
            stacked[known] = np.stack([self.thumbs[p] for p in order if p in self.thumbs])
        # exactly PyAV's frame.time: float(pts * time_base) on Fractions, i.e. the correctly rounded
        # quotient of two integers, which float64 division gives too while both are exact (< 2**53)
        num, den = tb.numerator, tb.denominator
        if len(ipts) and max(abs(int(ipts[0])), abs(int(ipts[-1]))) * num < 2**53 and den < 2**53:
            pts = (ipts * num).astype(np.float64) / den
        else:
            pts = np.array([float(p * tb) for p in ipts.tolist()], np.float64)
        return Features(pts, stacked, known, fps_of(rate, pts), next(self._frames_out), "fast")
