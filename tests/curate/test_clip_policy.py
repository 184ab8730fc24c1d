from __future__ import annotations

import numpy as np
import pytest

from reelforge.curate.clip_policy import ClipPolicyConfig, plan_clips
from reelforge.curate.scenes import SceneResult, Transition


def _result(frames, cuts=(), transitions=(), fps=25.0, start=0.0):
    pts = start + np.arange(frames) / fps
    return SceneResult("v.mp4", frames, fps, pts, list(cuts), list(transitions))


def test_margins_transitions_and_reasons():
    r = _result(300, cuts=[100], transitions=[Transition(200, 212, "fade")], start=1.5)
    spans = plan_clips(r, ClipPolicyConfig(cut_margin_frames=2, min_seconds=1.0, max_seconds=10.0))
    assert [(s.start_frame, s.end_frame) for s in spans] == [(0, 98), (102, 200), (212, 300)]
    assert [(s.cut_before, s.cut_after) for s in spans] == [("start", "cut"), ("cut", "transition"),
                                                            ("transition", "end")]
    assert spans[2].transition_before == "fade:200-212"
    assert spans[0].start_s == 1.5 and spans[0].end_s == pytest.approx(1.5 + 98 / 25)
    assert all(s.status == "ok" for s in spans)


def test_short_clips_filtered_with_reason():
    r = _result(120, cuts=[20])
    spans = plan_clips(r, ClipPolicyConfig(cut_margin_frames=2, min_seconds=1.0))
    assert spans[0].status == "filtered" and "< min_seconds 1.0" in spans[0].reason
    assert spans[1].status == "ok" and spans[1].reason == ""


def test_long_shots_split_evenly():
    r = _result(25 * 25)  # 25 s, one shot
    spans = plan_clips(r, ClipPolicyConfig(max_seconds=10.0))
    lengths = [s.end_frame - s.start_frame for s in spans]
    assert len(spans) == 3 and max(lengths) - min(lengths) <= 1 and sum(lengths) == 625
    assert [s.cut_before for s in spans] == ["start", "split", "split"]
    assert all(s.end_s - s.start_s <= 10.0 + 1e-9 for s in spans)


def test_config_validation():
    with pytest.raises(ValueError, match="cut_margin_frames"):
        ClipPolicyConfig(cut_margin_frames=-1)
    with pytest.raises(ValueError, match="max_seconds"):
        ClipPolicyConfig(min_seconds=5, max_seconds=2)
