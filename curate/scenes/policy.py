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
from .thumbs import distance, median, structure_change


def needed(order: list[int], thumbs: dict, cfg: SceneConfig) -> set[int]:
    """pts of the undecoded frames the detector needs (see the module docstring).

    ``order``: pts in presentation order; ``thumbs``: pts -> thumbnail of each decoded frame."""
    kidx = np.array([i for i, p in enumerate(order) if p in thumbs], np.int64)  # (K,) decoded frames
    if len(kidx) < 2:
        return set()
    th = np.stack([thumbs[order[i]] for i in kidx])  # (K, D)
    steps = distance(th[1:], th[:-1])  # (K-1,) step k: decoded k -> k + 1
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
