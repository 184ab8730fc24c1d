"""One video's task, in this process (no Ray): it writes and commits its own shards and parts, returns a
small row, reuses the work of the same bytes under another name, and stops on an output it cannot write."""
from __future__ import annotations

import pickle

import pyarrow.parquet as pq
import pytest

from reelforge.config import load_config
from reelforge.curate.manifest import Manifest
from reelforge.curate.pipeline import BuildConfig, stage_specs
from reelforge.curate.video_task import STATS, VideoTask
from reelforge.samples import PALETTE, ShotSpec, VideoSpec, render_video
from reelforge.shards.writer import ShardWriteError

CHEAP = ["curate.filters.text_overlay.enabled=false", "curate.filters.nsfw.enabled=false",
         "curate.filters.aesthetic.enabled=false", "curate.split.min_seconds=0.5"]


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    spec = VideoSpec("two_shots", [
        ShotSpec(18, "gradient", PALETTE["red"], "circle", motion="object"),
        ShotSpec(18, "stripes", PALETTE["blue"], "square", motion="pan", direction="up"),
    ], width=128, height=128, fps=12)
    return render_video(spec, tmp_path_factory.mktemp("src"))


def _task(out):
    cfg = load_config(BuildConfig, None, CHEAP)
    return VideoTask(str(Manifest(out).work), stage_specs(cfg.curate, "video"), stage_specs(cfg.curate, "clip"),
                     cfg.shards, policy="reraise")


def test_the_task_commits_its_own_shards_and_returns_a_small_row(video, tmp_path):
    out = tmp_path / "ds"
    row = _task(out)({"path": str(video), "status": "ok", "reason": ""})
    assert row["status"] == "ok" and row[STATS]["written"] == 2 and row[STATS]["clips"] == 2
    assert "mp4" not in row and len(pickle.dumps(row)) < 8000  # what crosses to the driver
    manifest = Manifest(out)
    assert manifest.is_complete(row["sha256"])
    clips = manifest.committed_clips().to_pylist()
    tars = sorted(p.name for p in (out / "_work" / "shards").glob("*.tar"))
    assert {c["work_shard"] for c in clips} == set(tars)
    assert all(t.startswith(f"work-{row['sha256'][:20]}-") for t in tars)  # named by content and attempt
    assert sorted(p.name for p in (out / "_work" / "clips" / row["sha256"][:20]).iterdir()) == \
        sorted([f"{t}.parquet" for t in tars] + ["complete.json"])


def test_the_same_bytes_under_another_name_reuse_the_split_and_the_clips(video, tmp_path):
    out = tmp_path / "ds"
    task = _task(out)
    first = task({"path": str(video), "status": "ok", "reason": ""})
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(video.read_bytes())
    again = task({"path": str(copy), "status": "ok", "reason": ""})
    assert again[STATS]["written"] == 0 and again["sha256"] == first["sha256"]
    assert again["clip_spans"] == first["clip_spans"] and "cpu_s_scene_split" not in again  # not split again
    assert len(Manifest(out).committed_clips()) == 2


def test_an_output_that_cannot_be_written_stops_with_one_error(video, tmp_path):
    out = tmp_path / "ds"
    task = _task(out)
    (out / "_work" / "clips").rmdir()
    (out / "_work" / "clips").write_text("a file where the clip records go")  # every part write fails
    with pytest.raises(ShardWriteError, match="cannot write .*_work"):
        task({"path": str(video), "status": "ok", "reason": ""})
    assert not list((out / "_work" / "shards").glob("*.tmp"))


def test_a_resumed_task_skips_the_clips_its_content_committed(video, tmp_path):
    out = tmp_path / "ds"
    task = _task(out)
    first = task({"path": str(video), "status": "ok", "reason": ""})
    work = Manifest(out).content(first["sha256"])
    (work.dir / "complete.json").unlink()  # as if killed after its clips but before the marker
    row = pq.read_table(sorted(work.dir.glob("work-*.parquet"))[0]).to_pylist()[0]
    assert row["clip_id"] in work.done_ids()
    again = task(dict(first, **{STATS: None}))
    assert again[STATS]["clips"] == 0 and again[STATS]["written"] == 0  # nothing redone, nothing twice
    assert len(Manifest(out).committed_clips()) == 2 and Manifest(out).is_complete(first["sha256"])


def _span(a, b, before, after, status="ok"):
    return {"start_frame": a, "end_frame": b, "start_s": a / 10, "end_s": b / 10, "status": status, "reason": "",
            "cut_before": before, "cut_after": after, "transition_before": ""}


@pytest.mark.parametrize("spans, captioned", [
    ([_span(0, 100, "start", "split"), _span(100, 200, "split", "end")], True),        # one shot in two pieces
    ([_span(0, 5, "start", "transition", "filtered"), _span(20, 200, "transition", "end")], True),  # fade-in
    ([_span(0, 100, "start", "cut"), _span(102, 200, "cut", "end")], False),           # two shots
    ([_span(0, 100, "start", "transition"), _span(130, 200, "transition", "end")], False),  # a dissolve
])
def test_a_sidecar_caption_goes_to_clips_only_of_a_one_shot_video(spans, captioned):
    from reelforge.curate.video_task import plan_clip_rows
    video = {"sha256": "ab" * 32, "path": "v.mp4", "fps": 10.0, "clip_spans": spans,
             "sidecar_caption": "A dog runs on a beach."}
    rows = plan_clip_rows(video)
    assert [r["caption"] for r in rows] == (["A dog runs on a beach."] if captioned else [""]) * len(spans)
    assert [r["caption_source"] for r in rows] == (["sidecar"] if captioned else [""]) * len(spans)
