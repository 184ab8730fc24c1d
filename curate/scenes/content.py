"""The content detector: hard cuts, fades and dissolves from per-frame thumbnails.

Works on the frames ``features.read_features`` decoded (``known``): every frame around anything that
changed, only reference frames where nothing did. Three passes, in this order:

1. fades: a run of black frames with a luma ramp into and/or out of it;
2. dissolves: a stretch where the picture moves in a straight line from one image to another
   (a cross-fade is a linear blend, so its path length equals its end-to-end distance; noise and
   camera motion wander, so theirs does not), with no single step big enough to be a cut;
3. hard cuts: a jump far above both an absolute floor and the local level of change (fast motion
   is a high level, not a jump), that does not come back within a few frames (a flash does),
   outside the transitions found above, and at least ``min_shot_frames`` after the previous cut.
"""
from __future__ import annotations

import numpy as np

from .config import SceneConfig
from .features import THUMB_H, THUMB_W, Features, distance, structure_change
from .result import Transition

_NY = THUMB_W * THUMB_H
_LEVEL_WINDOW = 12  # frames each side used for the local level of change
# a dissolve's path may be this much longer than its end-to-end distance (noise, slight motion)
_STRAIGHTNESS = 0.7
# ... and no single step of it may hold more than this share of its end-to-end distance
_MAX_STEP_SHARE = 0.4
_DISSOLVE_SPANS = (48, 32, 24, 16, 10, 6)  # frames, longest first
_FLAT_STD = 4.0  # luma std under which a picture has no layout to compare (structure is skipped)


def detect_content(feat: Features, cfg: SceneConfig) -> tuple[list[int], list[Transition]]:
    kidx = np.flatnonzero(feat.known)  # (K,) frame indices with a thumbnail
    thumbs = feat.thumbs[kidx]  # (K, D)
    if len(kidx) < 2:
        return [], []
    steps = distance(thumbs[1:], thumbs[:-1])  # (K-1,) step k: from known k to known k+1
    luma = thumbs[:, :_NY].mean(1)  # (K,)
    flat = thumbs[:, :_NY].std(1) < cfg.black_max_std  # (K,)

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


def _fades(kidx: np.ndarray, luma: np.ndarray, flat: np.ndarray, cfg: SceneConfig) -> list[Transition]:
    """Black runs with a monotonic luma ramp on at least one side (fade out, fade in, or both)."""
    black = (luma < cfg.black_luma) & flat
    out: list[Transition] = []
    k, n = 0, len(kidx)
    while k < n:
        if not black[k]:
            k += 1
            continue
        e = k
        while e + 1 < n and black[e + 1]:
            e += 1
        # walk away from the black run while luma keeps rising (a fade), at most max frames, and
        # stop where the rise flattens out: a fade ends, a slow brightening of the shot is not it
        a = k
        top = 0.0
        while a > 0 and kidx[k] - kidx[a - 1] <= cfg.max_transition_frames:
            rise = (luma[a - 1] - luma[a]) / (kidx[a] - kidx[a - 1])
            if rise <= 0.2 or rise > cfg.cut_threshold:  # flat, or a hard cut into the black
                break
            top = max(top, rise)
            if luma[a] > cfg.black_luma and rise < 0.15 * top:
                break
            a -= 1
        b = e
        top = 0.0
        while b + 1 < n and kidx[b + 1] - kidx[e] <= cfg.max_transition_frames:
            rise = (luma[b + 1] - luma[b]) / (kidx[b + 1] - kidx[b])
            if rise <= 0.2 or rise > cfg.cut_threshold:
                break
            top = max(top, rise)
            if luma[b] > cfg.black_luma and rise < 0.15 * top:
                break
            b += 1
        ramp = max(kidx[k] - kidx[a], kidx[b] - kidx[e])
        # the ramp must reach real picture, not just wobble inside the dark
        rise = max(luma[a], luma[b]) - luma[k:e + 1].mean()
        if ramp >= cfg.min_transition_frames and rise >= cfg.black_luma:
            # the fade covers the ramps and the black: start at the first darkened frame; end after
            # the last brightening frame, or after the black when the video ends in it
            out.append(Transition(int(kidx[a]), int(kidx[b]) + 1, "fade"))
        k = e + 1
    return out


def _dissolves(kidx, thumbs, steps, taken, cfg: SceneConfig) -> list[Transition]:
    cum = np.concatenate([[0.0], np.cumsum(steps)])  # (K,) path length from known frame 0
    n = len(kidx)
    found: list[Transition] = []
    used = taken.copy()
    for span in _DISSOLVE_SPANS:
        if span > cfg.max_transition_frames or span < cfg.min_transition_frames:
            continue
        ends = np.searchsorted(kidx, kidx + span)  # (K,) first known frame >= start + span
        best: list[tuple[float, int, int]] = []
        for a in range(n):
            b = int(ends[a])
            if b >= n or b - a < 2:
                continue
            d_ab = float(distance(thumbs[a], thumbs[b]))
            path = cum[b] - cum[a]
            if d_ab < cfg.dissolve_threshold or d_ab < _STRAIGHTNESS * path:
                continue
            if steps[a:b].max() > _MAX_STEP_SHARE * d_ab:
                continue  # one jump carries it: a cut (or a cut plus motion), not a dissolve
            s_ab, contrast = structure_change(thumbs[a], thumbs[b])
            if contrast >= _FLAT_STD and s_ab < cfg.cut_min_structure:
                continue  # same layout at both ends: a lighting or colour change, not a new shot
            best.append((d_ab, a, b))
        for d_ab, a, b in sorted(best, reverse=True):
            # trim to where the blend really moves: alpha = projection on the a→b line
            ab = thumbs[b] - thumbs[a]
            alpha = (thumbs[a:b + 1] - thumbs[a]) @ ab / float(ab @ ab)  # (b-a+1,)
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
    cuts: list[int] = []
    for k in np.flatnonzero(steps >= cfg.cut_threshold / 3):
        i = int(kidx[k + 1])  # the first frame of the new shot
        if taken[i] or taken[int(kidx[k])]:
            continue
        jump = float(steps[k])
        # local level of change: median step in a window around, this step left out
        # (not across a transition, and without other jumps as big as this one: other cuts)
        lo = np.searchsorted(kidx, i - _LEVEL_WINDOW)
        hi = np.searchsorted(kidx, i + _LEVEL_WINDOW)
        around = np.concatenate([steps[max(0, lo - 1):k], steps[k + 1:min(n - 1, hi)]])
        where = np.concatenate([np.arange(max(0, lo - 1), k), np.arange(k + 1, min(n - 1, hi))])
        keep = (around < jump) & ~taken[kidx[where]] & ~taken[kidx[where + 1]]
        level = float(np.median(around[keep])) if keep.any() else 0.0
        # a loud jump over the local level, or a smaller one in a very quiet shot
        loud = jump >= cfg.cut_ratio * level
        quiet = jump >= cfg.cut_threshold / 3 and jump >= 3 * cfg.cut_ratio * max(level, 1.0)
        if not loud and not quiet:
            continue
        s_k, contrast = structure_change(thumbs[k], thumbs[k + 1])
        if contrast >= _FLAT_STD and s_k < cfg.cut_min_structure:
            continue
        # a flash: the picture returns to what it was before the jump within flash_frames
        back = thumbs[k]
        later = np.flatnonzero((kidx > i) & (kidx <= i + cfg.flash_frames))
        if len(later) and float(distance(thumbs[later], back).min()) < cfg.flash_return * jump:
            continue
        if cuts and i - cuts[-1] < cfg.min_shot_frames:
            continue
        if i < cfg.min_shot_frames and not cuts:
            continue
        cuts.append(i)
    return cuts
