"""Variable frame rate: each source frame is shown at its own time in the clip's constant-rate output.

Placed by index, a phone clip that dropped frames for 0.5 s (low light, a busy encoder) lost the hole:
everything after it played early and motion ran at the wrong speed; the clip was shorter than its span.
"""
from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import formats_check as fc  # noqa: E402
import formats_inputs as fi  # noqa: E402
from test_formats_containers import _span, moving  # noqa: E402


def _vfr(path: Path, steps_90k: list[int]) -> Path:
    frames = moving(len(steps_90k) + 1)
    pts, t = [], 0
    for step in [0] + steps_90k:
        t += step
        pts.append(t)
    # untagged (read as BT.601 before and after the clips were tagged): only the timing is judged here
    return fi.encode(path, frames, Fraction(30), "libx264", "yuv420p", options=fi.X264, pts=pts,
                     time_base=Fraction(1, 90000))


@pytest.mark.parametrize("name,steps", [
    ("hole", [3000] * 20 + [3000 + 45000] + [3000] * 20),   # 30 fps, 0.5 s without a frame
    ("uneven", [3000, 4500] * 20),                          # 1/30 and 1/20 s in turn (24 fps on average)
])
def test_vfr_frames_stay_at_their_times(tmp_path, name, steps):
    src = _vfr(tmp_path / f"{name}.mp4", steps)
    times = fc.source_times(src)
    out = _span(src, 0, len(times))
    assert out["status"] == "ok", out["reason"]
    j = fc.judge_clip(out, out["mp4"], fc.display_frames(src), mean_tol=3.0, grid_tol=3.5, times=times)
    assert not j["problems"], j
    # as long as the source: the last frame at its time, not moved forward over the hole
    assert out["duration_s"] == pytest.approx(times[-1] - times[0] + 1 / out["fps"], abs=1.01 / out["fps"])


def test_constant_rate_sources_keep_every_frame_in_order(tmp_path):
    src = fi.encode(tmp_path / "cfr.mp4", moving(30), Fraction(30000, 1001), "libx264", "yuv420p", options=fi.X264)
    out = _span(src, 3, 27)
    assert out["num_frames"] == 24
    j = fc.judge_clip(out, out["mp4"], fc.display_frames(src), mean_tol=3.0, grid_tol=3.5)
    assert not j["problems"], j
