"""The content detector: hard cuts, fades and dissolves from per-frame thumbnails.

Works on the frames ``reader.read_features`` decoded (``known``): every frame around anything that
changed, fewer (or only keyframes) where nothing did; a hard cut needs two adjacent decoded frames.
Three passes, in this order:

1. fades: a run of black frames with a luma ramp into and/or out of it;
2. dissolves: a stretch where the picture moves in a straight line from one image to another
   (a cross-fade is a linear blend, so its path length equals its end-to-end distance; noise and
   camera motion wander, so theirs does not), with no single step big enough to be a cut;
3. hard cuts: a jump far above both an absolute floor and the local level of change (fast motion
   is a high level, not a jump; the level is taken from adjacent frames where there are some), or
   less far above it when the picture's layout changes far more than it does around the jump,
   that does not come back within a few frames (a flash does),
   outside the transitions found above, and at least ``min_shot_frames`` after the previous cut
   (of two closer than that, the bigger jump).
"""
from __future__ import annotations

import numpy as np

from .config import SceneConfig
from .features import Features
from .result import Transition, runs
from .thumbs import THUMB_H, THUMB_W, distance, distance_pairs, median, steps_between, structure_change

_NY = THUMB_W * THUMB_H
LEVEL_WINDOW = 12  # frames each side used for the local level of change (the reader decodes for it)
# a dissolve's path may be this much longer than its end-to-end distance (noise, slight motion)
_STRAIGHTNESS = 0.7
# ... and no single step of it may hold more than this share of its end-to-end distance
_MAX_STEP_SHARE = 0.4
_DISSOLVE_SPANS = (48, 32, 24, 16, 10, 6)  # frames, longest first
# a dissolve's frames may sit this far (share of its end-to-end distance, + 2 for noise) from the
# blend of its two ends
_BLEND_RESIDUAL = 0.2
FLAT_STD = 4.0  # luma std under which a picture has no layout to compare (structure is skipped)
_DISSOLVE_RATE = 1.5  # a dissolve's change per frame over that of the frames around it
# floor of the local layout change a cut's is compared with (a still shot's is ~0: noise decides)
_MIN_LAYOUT_LEVEL = 0.05


def cut_floor(cfg: SceneConfig) -> float:
    """The smallest step between adjacent frames that can be a cut, whatever the motion around it (a
    quiet shot's cut: level <= 1). The fast reader decodes every such step's neighbours at full rate,
    so that the level it is judged against is measured as on a full decode."""
    return min(cfg.cut_threshold, max(cfg.cut_threshold / 3, 3 * cfg.cut_ratio))


def may_cut(jump: float, level: float, cfg: SceneConfig) -> bool:
    """Whether a jump of ``jump`` between adjacent frames is big enough for a cut against a local
    level of change ``level`` (the layout tests come after: ``_cuts``)."""
    loud, quiet, layout = _loudness(jump, level, cfg)
    return loud or quiet or layout


def loud_cut(jump: float, level: float, cfg: SceneConfig) -> bool:
    """Whether such a jump is big enough for a cut without asking how the layout changes around it
    (the loud and quiet tests; the layout test compares it with its neighbours' layout changes)."""
    loud, quiet, _ = _loudness(jump, level, cfg)
    return loud or quiet


def _loudness(jump: float, level: float, cfg: SceneConfig) -> tuple[bool, bool, bool]:
    """(loud, quiet, layout): a loud jump over the local level, a smaller one in a very quiet shot,
    or a loud one only a few times the level that must then break the picture's layout."""
    loud = jump >= cfg.cut_threshold and jump >= cfg.cut_ratio * level
    quiet = jump >= cfg.cut_threshold / 3 and jump >= 3 * cfg.cut_ratio * max(level, 1.0)
    layout = jump >= cfg.cut_threshold and jump >= cfg.cut_layout_min_ratio * level
    return loud, quiet, layout


def detect_content(feat: Features, cfg: SceneConfig) -> tuple[list[int], list[Transition]]:
    kidx = np.flatnonzero(feat.known)  # (K,) frame indices with a thumbnail
    thumbs = feat.thumbs  # (K, D) uint8, row k: frame kidx[k]
    if len(kidx) < 2:
        return [], []
    steps = steps_between(thumbs)  # (K-1,) step k: from known k to known k+1
    luma, luma_std = _luma_stats(thumbs)  # (K,), (K,)
    flat = luma_std < cfg.black_max_std  # (K,)

    transitions = _fades(kidx, luma, flat, cfg)
    taken = np.zeros(feat.known.shape[0], bool)
    for t in transitions:
        taken[t.start:t.end] = True
    transitions += _dissolves(kidx, thumbs, steps, taken, cfg)
    for t in transitions:
        taken[t.start:t.end] = True
    cuts = _cuts(kidx, thumbs, steps, taken, cfg)
    transitions.sort(key=lambda t: t.start)
    return cuts, transitions


def _luma_stats(thumbs: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of each thumbnail's luma, a block of rows at a time (a float copy of every
    thumbnail at once would be 4x the thumbnails themselves). (K, D) uint8 → (K,), (K,) float32"""
    mean, std = np.zeros(len(thumbs), np.float32), np.zeros(len(thumbs), np.float32)
    for s in range(0, len(thumbs), block):
        y = thumbs[s:s + block, :_NY].astype(np.float32)  # (B, NY)
        mean[s:s + block], std[s:s + block] = y.mean(1), y.std(1)
    return mean, std


def _fades(kidx: np.ndarray, luma: np.ndarray, flat: np.ndarray, cfg: SceneConfig) -> list[Transition]:
    """Black runs with a monotonic luma ramp on at least one side (fade out, fade in, or both)."""
    out: list[Transition] = []
    n = len(kidx)
    for k, stop in runs((luma < cfg.black_luma) & flat):  # in known-frame units
        e = stop - 1  # the run's last black frame
        a = _ramp_end(kidx, luma, k, -1, cfg)
        b = _ramp_end(kidx, luma, e, +1, cfg)
        ramp = max(kidx[k] - kidx[a], kidx[b] - kidx[e])
        # the ramp must reach real picture, not just wobble inside the dark
        rise = max(luma[a], luma[b]) - luma[k:e + 1].mean()
        if ramp >= cfg.min_transition_frames and rise >= cfg.black_luma:
            # the fade covers the ramps and the black: start at the first darkened frame; end after
            # the last brightening frame, or after the black when the video ends in it
            # kidx[a] / kidx[b] are the last / first undimmed frames of the shots around the fade
            # (a ramp still going at either end of the video takes the end frame in too)
            start = int(kidx[a]) + 1 if 0 < a < k else int(kidx[a])
            end = int(kidx[b]) if e < b < n - 1 else int(kidx[b]) + 1
            out.append(Transition(start, end, "fade"))
    return out


def _ramp_end(kidx: np.ndarray, luma: np.ndarray, k: int, way: int, cfg: SceneConfig) -> int:
    """Walk from black frame k (in known-frame units) in direction ``way`` while luma keeps rising
    like a fade: at most max_transition_frames, stopping where the rise flattens (the shot itself)
    or at a lone jump (a hard cut into the black, not a fade)."""
    n = len(kidx)
    top, j = 0.0, k

    def rise_at(i: int) -> float:  # luma gained per frame stepping from known i to i + way
        return (luma[i + way] - luma[i]) / abs(int(kidx[i + way]) - int(kidx[i]))

    while 0 <= j + way < n and abs(int(kidx[j + way]) - int(kidx[k])) <= cfg.max_transition_frames:
        rise = rise_at(j)
        if rise <= 0.2:
            break
        if rise > cfg.cut_threshold:
            further = rise_at(j + way) if 0 <= j + 2 * way < n else 0.0
            if further < 0.25 * rise:
                break  # one jump, then flat: a cut
        top = max(top, rise)
        if luma[j] > cfg.black_luma and rise < 0.3 * top:
            break
        j += way
    return j


def _dissolves(kidx, thumbs, steps, taken, cfg: SceneConfig) -> list[Transition]:
    cum = np.concatenate([[0.0], np.cumsum(steps)])  # (K,) path length from known frame 0
    rate = steps / np.diff(kidx).astype(np.float32)  # (K-1,) change per frame of each step
    n = len(kidx)
    found: list[Transition] = []
    used = taken.copy()
    for span in _DISSOLVE_SPANS:
        if span > cfg.max_transition_frames or span < cfg.min_transition_frames:
            continue
        ends = np.searchsorted(kidx, kidx + span)  # (K,) first known frame >= start + span
        starts = np.flatnonzero((ends < n) & (ends - np.arange(n) >= 2))
        # a window's path is at least as long as its end-to-end distance (triangle inequality), so
        # windows whose path is shorter than dissolve_threshold cannot pass: skip their distances
        starts = starts[cum[ends[starts]] - cum[starts] >= cfg.dissolve_threshold - 1e-3]
        if not len(starts):
            continue
        # the cheap tests for all windows at once: far enough apart, and a straight path
        d_all = distance_pairs(thumbs, starts, ends[starts])  # (S,)
        straight = (d_all >= cfg.dissolve_threshold) & (d_all >= _STRAIGHTNESS * (cum[ends[starts]] - cum[starts]))
        best: list[tuple[float, int, int]] = []
        for a, d_ab in zip(starts[straight].tolist(), d_all[straight].tolist()):
            b = int(ends[a])
            if used[kidx[a] + 1:kidx[b]].any():
                continue  # inside a fade or a longer dissolve already found
            if steps[a:b].max() > _MAX_STEP_SHARE * d_ab:
                continue  # one jump carries it: a cut (or a cut plus motion), not a dissolve
            # a dissolve changes the picture faster than the shots on either side of it do
            inside = median(rate[a:b])
            outside = np.concatenate([rate[max(0, a - 6):a], rate[b:b + 6]])
            if len(outside) and inside < _DISSOLVE_RATE * median(outside):
                continue
            # every frame inside must be the blend of the two ends: a pan or zoom is not
            w = thumbs[a:b + 1].astype(np.float32)  # (b-a+1, D)
            ab = w[-1] - w[0]
            alpha = np.clip((w[1:-1] - w[0]) @ ab / float(ab @ ab), 0.0, 1.0)  # (b-a-1,)
            blend = w[0] + alpha[:, None] * ab
            if float(distance(w[1:-1], blend).max()) > _BLEND_RESIDUAL * d_ab + 2.0:
                continue
            s_ab, contrast = structure_change(thumbs[a], thumbs[b])
            if contrast < FLAT_STD or s_ab < cfg.cut_min_structure:
                # same layout at both ends: a lighting or colour change, not a new shot; and a blend
                # into a flat picture is a fade (found above) or nothing
                continue
            best.append((d_ab, a, b))
        for d_ab, a, b in sorted(best, reverse=True):
            # trim to where the blend really moves: alpha = projection on the a→b line
            w = thumbs[a:b + 1].astype(np.float32)  # (b-a+1, D)
            ab = w[-1] - w[0]
            alpha = (w - w[0]) @ ab / float(ab @ ab)  # (b-a+1,)
            inside = np.flatnonzero((alpha > 0.04) & (alpha < 0.96))
            if len(inside) == 0:
                continue
            s, e = int(kidx[a + inside[0]]), int(kidx[a + inside[-1]]) + 1
            if e - s < cfg.min_transition_frames or used[s:e].any():
                continue
            used[s:e] = True
            found.append(Transition(s, e, "dissolve"))
    return found


def _cuts(kidx, thumbs, steps, taken, cfg: SceneConfig) -> list[int]:
    n = len(kidx)
    single = np.diff(kidx) == 1  # (K-1,) steps between adjacent frames
    cuts: list[int] = []
    cut_jumps: list[float] = []  # per cut: its jump
    for k in np.flatnonzero(steps >= cut_floor(cfg)):
        i = int(kidx[k + 1])  # the first frame of the new shot
        if taken[i] and taken[int(kidx[k])]:
            continue  # inside a transition; a jump into or out of one (cut to black) still counts
        if not single[k]:
            # frames between were not decoded: the reader judged this gap too small (relative to
            # the motion around it) to hide a cut, so it is motion seen from afar, not a cut
            continue
        jump = float(steps[k])
        # local level of change: median step in a window around, this step left out
        # (not across a transition, and without other jumps as big as this one: other cuts)
        # the busier side counts: a cut into (or out of) fast motion must stand out from it too
        lo = np.searchsorted(kidx, i - LEVEL_WINDOW)
        hi = np.searchsorted(kidx, i + LEVEL_WINDOW)
        sides = []  # per side of the jump: (S,) indices of the steps its level is measured on
        for where in (np.arange(max(0, lo - 1), k), np.arange(k + 1, min(n - 1, hi))):
            keep = where[(steps[where] < jump) & ~taken[kidx[where]] & ~taken[kidx[where + 1]]]
            # steps across undecoded frames (the fast reader's coarse pass) span several frames of
            # motion: the level is per frame, so adjacent pairs give it wherever the side has some
            if single[keep].any():
                keep = keep[single[keep]]
            if len(keep):
                sides.append(keep)
        level = max((median(steps[w]) for w in sides), default=0.0)
        loud, quiet, layout = _loudness(jump, level, cfg)
        if not loud and not quiet and not layout:
            continue
        s_k, contrast = structure_change(thumbs[k], thumbs[k + 1])
        if contrast >= FLAT_STD and s_k < cfg.cut_min_structure:
            continue
        if not loud and not quiet:
            # a jump only a few times the local level (steady motion, or animation on twos, sets
            # a high one) is a cut when it breaks the picture's layout far more than the motion
            # around it does: motion shifts and blurs the picture but keeps most of its layout
            layout_level = max((median([structure_change(thumbs[j], thumbs[j + 1])[0] for j in w])
                                for w in sides), default=0.0)
            if contrast < FLAT_STD or s_k < cfg.cut_layout_ratio * max(layout_level, _MIN_LAYOUT_LEVEL):
                continue
        # a flash: the picture returns to what it was before the jump within flash_frames
        back = thumbs[k]
        later = np.flatnonzero((kidx > i) & (kidx <= i + cfg.flash_frames))
        if len(later) and float(distance(thumbs[later], back).min()) < cfg.flash_return * jump:
            continue
        # ... or the end of one: the new picture is what was there just before the flash
        earlier = np.flatnonzero((kidx < int(kidx[k])) & (kidx >= int(kidx[k]) - cfg.flash_frames))
        if len(earlier) and float(distance(thumbs[earlier], thumbs[k + 1]).min()) < cfg.flash_return * jump:
            continue
        if cuts and i - cuts[-1] < cfg.min_shot_frames:
            # two cuts closer than a shot can be: keep the bigger jump, so that a jump in jittery
            # motion just before a real cut does not take the real cut's place (nor a jump in the
            # aliasing of a fast pan just after it)
            if jump > cut_jumps[-1]:
                cuts[-1], cut_jumps[-1] = i, jump
            continue
        if i < cfg.min_shot_frames and not cuts:
            continue
        cuts.append(i)
        cut_jumps.append(jump)
    return cuts
