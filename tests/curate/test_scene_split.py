from __future__ import annotations

import json

from reelforge.curate.clip_policy import ClipPolicyConfig
from reelforge.curate.scenes import SceneConfig
from reelforge.curate.stages.scene_split import SceneSplit
from reelforge.samples import ShotSpec, VideoSpec, load_ground_truth, render_video


def test_stage_rows_ok_failed_and_skipped(tmp_path):
    spec = VideoSpec("two", [ShotSpec(40, "stripes", (200, 40, 40)), ShotSpec(40, "checker", (40, 40, 200))],
                     width=160, height=120, fps=25)
    path = str(render_video(spec, tmp_path))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 2000)
    stage = SceneSplit(SceneConfig(), ClipPolicyConfig(min_seconds=0.5))
    out = stage({"path": [path, str(bad), path], "status": ["ok", "ok", "filtered"], "reason": ["", "", "x"]})
    assert out["status"] == ["ok", "failed", "filtered"]
    assert out["reason"][1].startswith("scene_split: ")
    assert out["cuts"][0] == load_ground_truth(path)["cuts"] == [40]
    assert out["frames"][0] == 80 and out["fps"][0] == 25.0 and out["start_time"][0] == 0.0
    assert json.loads(out["transitions"][0]) == []
    spans = out["clip_spans"][0]
    assert [(s["start_frame"], s["end_frame"]) for s in spans] == [(0, 38), (42, 80)]
    # skipped and failed rows keep stable column types
    assert out["cuts"][1] == [] and out["clip_spans"][2] == [] and out["transitions"][1] == "[]"
