"""``reelforge build`` over inputs from encoders, containers and tools we did not choose (formats_inputs:
~55 files made from sintel with PyAV), judged clip by clip (formats_check): every input has a row with a
clear status and reason; every transcoded clip, kept or removed, is H.264 yuv420p with even sides,
upright at the display aspect, decodes to the frame count and duration its row says, holds the source
frames planned, and shows the source's colours; no score is NaN.

Slow (~2-3 min on 2 busy cores: ~55 small videos through the whole default build on a local Ray). The same
run prints the table recorded in BENCHMARKS.md ("Footage from encoders we did not choose"):
``.venv/bin/python -m pytest -q -m slow tests/curate/test_formats_build.py -s``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import formats_check as fc  # noqa: E402
import formats_inputs as fi  # noqa: E402


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_build_over_foreign_formats(ray_local, shared_media, tmp_path):
    from reelforge.config import load_config
    from reelforge.curate.pipeline import BuildConfig, run_build

    src = fi.source_rgb(shared_media)
    inputs = tmp_path / "in"
    inputs.mkdir()
    made = {name: fi.make_case(name, inputs, src) for name in fi.CASES}
    out = tmp_path / "ds"
    # the default build, as `reelforge build configs/build/default.yaml` runs it
    run_build([str(inputs)], out, load_config(BuildConfig, ROOT / "configs/build/default.yaml", []))
    report = fc.judge_build(out, made)
    print("\n" + "\n".join(fc.summary_lines(report)))
    bad = {r["case"]: r["problems"] for r in report if r["problems"]}
    assert not bad, bad
    # what a build must make of each: clips from every decodable video, a reason for every other
    by_case = {r["case"]: r for r in report}
    for name, m in made.items():
        r = by_case[name]
        if m.expect == "ok":
            assert r["status"] == "ok" and sum(r["clips"].values()) >= 1, r
        elif m.expect == "failed":
            assert r["status"] == "failed" and r["reason"], r
