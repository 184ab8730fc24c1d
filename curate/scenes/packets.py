"""What the compressed stream says before anything is decoded: pure functions of a chunk's packets.

The fast reader (``reader.py``) decides from these which frames its first pass decodes:
- which packets are reference pictures (NAL headers of length-prefixed H.264/HEVC);
- which are B-frames (shown before a packet fed earlier);
- "spikes": reference packets much bigger than the chunk's usual inter packet. The first reference
  frame after a cut is coded almost intra, so its packet is a spike; the B-frames shown just before
  it (where the cut is) follow it in decode order;
- runs of spikes (fades, dissolves, fast action code every P-frame mostly intra), whose inside is
  left to the refinement;
- chunks: whole GOPs, demuxed a chunk at a time.

``packets`` are PyAV packets of one chunk in decode order (a chunk starts at a keyframe); ``refs``
is ``references(packets, ...)``: per packet True/False, or None where the codec layout is unknown.
"""
from __future__ import annotations

from .features import FastPathUnsupported
from .thumbs import median

# GOPs are gathered into chunks of at least this many packets: each chunk is one decoder run that
# ends with a drain, so chunks of tiny GOPs (all-intra video) would cost a drain per frame
CHUNK_MIN_PACKETS = 48
# a spike (besides spike_ratio x the chunk's median inter packet) must be this share of the chunk's
# keyframe size: the first reference frame after a cut is coded mostly intra, like a keyframe ...
_SPIKE_KEY_SHARE = 0.02
# ... and at least this many bytes per pixel: in a still shot every small change is a "spike"
_SPIKE_BYTES_PER_PIXEL = 1 / 400


def nal_length_size(stream) -> int | None:
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


def is_reference(data: memoryview, codec: str, nal_len: int) -> bool:
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


def references(packets: list, codec: str, nal_len: int | None) -> list[bool | None]:
    """Per packet: a reference picture or not; None for all when ``nal_len`` is (unknown layout)."""
    return [is_reference(memoryview(p), codec, nal_len) if nal_len else None for p in packets]


def b_frames(packets: list) -> list[bool]:
    """Per packet (decode order): a B-frame, i.e. shown before a packet fed earlier; the others
    are I/P frames, each shown after everything fed before it."""
    out, shown = [], None
    for p in packets:
        out.append(shown is not None and p.pts < shown)
        shown = p.pts if shown is None else max(shown, p.pts)
    return out


def coarse_mask(packets: list, refs: list[bool | None], skip: str) -> list[bool]:
    """Which packets the coarse pass decodes under ``skip``: reference frames, less the B-frames
    under BIDIR."""
    return [bool(r) and not (skip == "BIDIR" and b) for r, b in zip(refs, b_frames(packets))]


def spikes(packets: list, refs: list[bool | None], spike_ratio: float, pixels: int) -> list[int]:
    """Indices of reference packets much bigger than the chunk's usual inter frame."""
    inter = [p.size for p, r in zip(packets, refs) if not p.is_keyframe and r is not False]
    if not inter:
        return []
    keys = [p.size for p in packets if p.is_keyframe]
    floor = max(spike_ratio * median(inter),
                _SPIKE_KEY_SHARE * median(keys) if keys else 0.0,
                pixels * _SPIKE_BYTES_PER_PIXEL)
    return [i for i, (p, r) in enumerate(zip(packets, refs))
            if not p.is_keyframe and r is not False and p.size > floor]


def after_spike(packets: list, refs: list[bool | None], i: int) -> set[int]:
    """pts of the B-frame packets that follow spike ``i`` in decode order up to the next frame
    shown after it: the B-frames shown just before the spiking frame, where the cut is (reference
    B-frames included: the BIDIR coarse pass skips them)."""
    out: set[int] = set()
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


def inner_spikes(packets: list, spiking: list[int]) -> set[int]:
    """Spikes whose P-frames before and after (decode order) spike too: the inside of a run of
    spikes. A run is a fade, a dissolve or fast action (every P-frame coded mostly intra), not a
    cut; the first reference frame after a cut inside a run stands out from the run's other gaps
    on the P-frames alone, so the B-frames inside are left to the refinement (psd_testvideo: 23%
    fewer frames decoded, same cuts; BENCHMARKS.md)."""
    forward = [i for i, b in enumerate(b_frames(packets)) if not b]  # I/P frames
    spiking = set(spiking)
    return {i for k, i in enumerate(forward[1:-1], 1)
            if i in spiking and forward[k - 1] in spiking and forward[k + 1] in spiking}


def gap_after(packets: list, refs: list[bool | None], i: int) -> set[int]:
    """pts of the B-frames shown between packet ``i`` and the next frame after it in decode order
    that is shown after it (they follow that frame in decode order).

    Used for the chunk's keyframe: when the chunk starts with a cut, the detector measures the new
    shot's motion frame to frame just after it; decoded in the first pass, these two or three
    B-frames spare decoding the keyframe again (at 1080p it can cost 20 P-frames)."""
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


def prior_ref_bs(packets: list, decoded: set[int], refs: list[bool | None], in_runs: set[int]) -> set[int]:
    """pts of the reference B-frames a pass that decodes the B-frames in ``decoded`` (or the
    reference B-frames of runs, ``in_runs``) must decode too when it skips reference B-frames
    (BIDIR): for each gap with a decoded B-frame, the gap's own reference B-frames and the last one
    fed before the gap. FFmpeg's H.264 decoder stands a copy of an older picture in for a skipped
    reference frame, and B-frames predicting from it come out wrong: one right after a cut came out
    as a blend with the old shot (113 levels off, and the cut was missed); P-frames are not
    affected."""
    out: set[int] = set()
    last_ref_b = before_gap = None
    gap: list[tuple[int, bool]] = []  # (pts, reference) of the B-frames fed since the last I/P

    def close() -> None:
        if any(pts in decoded or (ref and pts in in_runs) for pts, ref in gap):
            out.update(pts for pts, ref in gap if ref)
            if before_gap is not None:
                out.add(before_gap)

    for p, b, ref in zip(packets, b_frames(packets), refs):
        if not b:  # I/P: the B-frames fed after it are its gap
            close()
            before_gap, gap = last_ref_b, []
            continue
        gap.append((p.pts, bool(ref)))
        if ref:
            last_ref_b = p.pts
    close()
    return out


def demux_chunks(container, stream, all_pts: list[int], hidden: set[int]):
    """The stream's packets, a chunk (list) at a time: whole GOPs, at least CHUNK_MIN_PACKETS
    packets each; every shown packet's pts is appended to ``all_pts`` as it is read, and the pts of
    packets the container marks discarded (``hidden``) are not frames at all.

    Discarded packets: an mp4 edit list that starts the video inside a GOP (a trim by stream copy,
    what editors and phones write) keeps the GOP's packets before the edit, flagged discard: the
    decoder needs them as references and then drops their pictures, so they are fed but never
    counted, asked for or waited on.

    Leading pictures: in an open GOP (x264 ``open_gop``, MPEG-2 and MPEG-4 Part 2 by default) the
    packets right after a keyframe in decode order may be shown before it, and they predict from
    the GOP before as well as from the keyframe: a decoder started at the keyframe drops them. So
    they go with the chunk before, after a second copy of the keyframe (decoded in both chunks, an
    intra picture each time; closed GOPs have no leading pictures and get no copy): every chunk
    is then a run of presentation order that its own decoder can decode whole."""
    chunk: list = []
    done: list | None = None  # a finished chunk, taking the next keyframe's leading pictures
    first, leading = True, False  # the first chunk; ``done`` holds the keyframe's copy already
    for pkt in container.demux(stream):
        if pkt.size == 0:  # demuxer's end-of-stream marker
            continue
        if pkt.pts is None:
            raise FastPathUnsupported
        (hidden.add if pkt.is_discard else all_pts.append)(pkt.pts)
        if done is not None:
            if pkt.pts < chunk[0].pts:  # shown before the chunk's keyframe: a leading picture
                done += [pkt] if leading else [chunk[0], pkt]
                leading = True
                continue
            yield done
            done = None
        if pkt.is_keyframe and len(chunk) >= CHUNK_MIN_PACKETS:
            if first and all(p.is_keyframe for p in chunk):
                # all-intra (x264 keyint=1, codecs not flagged intra-only): the GOP-wise passes
                # would decode every frame and more, so the caller reads it whole instead
                raise FastPathUnsupported
            done, chunk, first, leading = chunk, [], False, False
        chunk.append(pkt)
    if done is not None:
        yield done
    if chunk:
        yield chunk
