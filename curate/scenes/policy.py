"""The fast reader's refinement policy: which skipped frames the content detector needs decoded.

Pure functions of the presentation-order pts and the thumbnails decoded so far; ``reader.py``
decodes what they ask for and asks again until they ask for nothing. The rules are the detector's
own tests (``content.cut_floor``, ``content.may_cut``, the layout test), so frames are decoded
wherever a full decode could show a cut, not where a heuristic of the reader's guesses one:

- a step between adjacent decoded frames that may be a cut, and may not, depending on the motion
  around it, gets every frame within the detector's level window (``LEVEL_WINDOW`` each side) decoded: the detector judges it against the
  median motion per frame on both sides, and a median of the few frames a coarse pass happened to
  decode is not that. sintel_trailer_30s re-encoded at 160x90 with GOPs of 25-50 frames lost its
  cut at frame 286 (a jump of 17 in a shot moving 0.2 a frame) because the frames after the
  spike that starts the new shot were left undecoded and the detector took a 14-frame step for
  the motion after it; at 320x180 the cut at 356 (34 against a level of 13, in fast action) was
  lost to a left side of one decoded pair;
- a step across skipped frames that would be a cut were its whole change one jump gets its
  skipped frames decoded (then the rule above applies to what they show).

"May be a cut" is judged against a level that errs low: motion per frame from the steps around,
those across skipped frames counted as their change over the frames they span (motion does not add
up frame over frame, so that is less than the motion per frame). A step that fails even that, or
that leaves the picture's layout as it was, cannot become a cut whatever the skipped frames hold.
"""
from __future__ import annotations

import numpy as np

from .config import SceneConfig
from .content import FLAT_STD, LEVEL_WINDOW, cut_floor, loud_cut, may_cut
from .thumbs import median, steps_between, structure_change


def needed(order: list[int], thumbs: dict, cfg: SceneConfig) -> set[int]:
    """pts of the undecoded frames the detector needs (see the module docstring).

    ``order``: pts in presentation order; ``thumbs``: pts -> thumbnail of each decoded frame."""
    kidx = np.array([i for i, p in enumerate(order) if p in thumbs], np.int64)  # (K,) decoded frames
    if len(kidx) < 2:
        return set()
    th = np.stack([thumbs[order[i]] for i in kidx])  # (K, D) uint8
    steps = steps_between(th)  # (K-1,) step k: decoded k -> k + 1
    span = np.diff(kidx)  # (K-1,) frames each step spans
    rate = steps / span  # (K-1,) change per frame, low where a step spans several
    wanted: set[int] = set()
    for k in np.flatnonzero(steps >= cut_floor(cfg)):
        jump = float(steps[k])
        i = int(kidx[k + 1])  # the first frame of the new shot, as the detector counts
        lo = int(np.searchsorted(kidx, i - LEVEL_WINDOW))
        hi = int(np.searchsorted(kidx, i + LEVEL_WINDOW))
        low = high = 0.0  # the level the detector would find, erring low and erring high
        for side in (np.arange(max(0, lo - 1), k), np.arange(k + 1, min(len(steps), hi))):
            side = side[steps[side] < jump]  # as the detector: other jumps as big (cuts) left out
            if len(side):
                ones = side[span[side] == 1]
                low = max(low, median(rate[side]))
                high = max(high, median(steps[side]), median(steps[ones]) if len(ones) else 0.0)
        if not may_cut(jump, low, cfg):
            continue
        s, contrast = structure_change(th[k], th[k + 1])
        if contrast >= FLAT_STD and s < cfg.cut_min_structure:
            continue  # the same layout at both ends: a change of light or colour, no cut inside
        if span[k] > 1:
            wanted.update(order[int(kidx[k]) + 1:i])
        elif not loud_cut(jump, high, cfg):
            # a cut or not depending on the motion around it: the frames the detector's level
            # window (and the layout and flash tests) read. Not for a jump loud enough to be a cut
            # even against steps across skipped frames (most cuts, often at a keyframe whose previous GOP would have
            # to be decoded again for it)
            wanted.update(p for p in order[max(0, i - LEVEL_WINDOW - 1):i + LEVEL_WINDOW + 1] if p not in thumbs)
    return wanted


# a gap between decoded frames is refined when its distance is this many times that of the gaps
# around it (and above refine_threshold)
_REFINE_RATIO = 2.0


def relative_gaps(order: list[int], thumbs: dict, cfg: SceneConfig, in_runs: set[int], eager: set[int],
                  bidir: bool, open_end: bool = False) -> set[int]:
    """pts of the skipped frames of one chunk's gaps whose two ends differ much more than decoded
    frames around them do, and of those before the chunk's first decoded frame (open GOP) or, but
    for a paused chunk (``open_end``), after its last.

    Relative to the neighbours, because in fast motion every gap differs: a cut (or the start of a
    transition) still stands out from them; steady motion does not need every frame. This finds
    transitions (the detector wants their ends at full rate) more than cuts, which ``needed``
    finds by the detector's own tests. ``in_runs``: pts of B-frames inside runs of spikes (their
    gaps are judged against the run's other gaps); ``eager``: pts of B-frames decoded in the first
    pass (spikes', keyframes' heads); ``bidir``: the coarse pass skipped reference B-frames too."""
    known: list[np.ndarray] = []
    known_pts: list[int] = []
    gaps: list[tuple[int, list[int]]] = []  # (index into known of the gap's right end, pts)
    pending: list[int] = []
    for p in order:
        th = thumbs.get(p)
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
    if not known:
        return wanted
    th = np.stack(known)  # (K, D) uint8
    d = np.concatenate([[np.inf], steps_between(th)])  # (K,) d[i]: known i-1 → i
    picked: set[int] = set()
    span = np.ones(len(known))  # (K,) frames each step spans
    for i, pts in gaps:
        span[i] = len(pts) + 1
    # gaps inside a run of spikes (see packets.inner_spikes), judged against the run's other gaps
    interior = {i for i, pts in gaps if i and in_runs.issuperset(pts)}
    for i, pts in gaps:
        if i == 0:
            wanted.update(pts)  # undecoded frames before the first decoded one (open GOP)
            continue
        level = _gap_level(d, span, i, i in interior)
        if d[i] > cfg.refine_threshold and d[i] > _REFINE_RATIO * level:
            wanted.update(pts)
            picked.add(i)
    if bidir:
        # P-frames alone are sparse (a B-pyramid puts 4-8 frames between them): a moving gap next
        # to a refined one, or next to frames already decoded at full rate (a spike's B-frames)
        # that move too, is refined as well, so a transition's ends and the motion just outside it
        # are seen at full rate, as the detector expects
        by_end = dict(gaps)
        busy = d > cfg.refine_threshold  # (K,)

        def full_rate(j: int) -> bool:
            """Step j is between adjacent frames, one of them a B-frame decoded in the first pass
            (at a spike or a keyframe), and moves. Not consecutive P-frames: an encoder leaves
            B-frames out in steady motion too (a pan), which is no transition, and refining next
            to them decodes a GOP again for nothing (BENCHMARKS.md)"""
            return j not in by_end and bool(busy[j]) and (known_pts[j] in eager or known_pts[j - 1] in eager)

        for i in by_end:  # (not inside a run of spikes: its ends are decoded at full rate)
            if i == 0 or not busy[i] or i in interior:
                continue
            left = i - 1 >= 1 and (i - 1 in picked or full_rate(i - 1))
            right = i + 1 < len(d) and (i + 1 in picked or full_rate(i + 1))
            if left or right:
                wanted.update(by_end[i])
    return wanted


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
