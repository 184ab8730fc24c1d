"""Small videos several to a task, in this process (no Ray): one work shard series for the group, parts
and completion still per video, a resume that redoes exactly what was not committed."""
from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest

from reelforge.config import load_config
from reelforge.curate.manifest import Manifest
from reelforge.curate.pipeline import BuildConfig, stage_specs
from reelforge.curate.video_group import GROUP, GroupConfig, VideoGroupTask, group_items, video_rows
from reelforge.curate.video_task import STATS
from reelforge.samples import PALETTE, ShotSpec, VideoSpec, render_video

CHEAP = ["curate.filters.text_overlay.enabled=false", "curate.filters.nsfw.enabled=false",
         "curate.filters.aesthetic.enabled=false", "curate.split.min_seconds=0.5"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("src")
    out = []
    for i, (c1, c2) in enumerate([("red", "blue"), ("green", "yellow"), ("orange", "purple")]):
        spec = VideoSpec(f"v{i}", [ShotSpec(18, "gradient", PALETTE[c1], "circle", motion="object"),
                                   ShotSpec(18, "stripes", PALETTE[c2], "square", motion="pan", direction="up")],
                         width=128, height=128, fps=12, seed=i)
        out.append(str(render_video(spec, d)))
    return out


def _task(out):
    cfg = load_config(BuildConfig, None, CHEAP)
    return VideoGroupTask(str(Manifest(out).work), stage_specs(cfg.curate, "video"), stage_specs(cfg.curate, "clip"),
                          cfg.shards, policy="reraise")


def _item(paths):
    return next(group_items(({"path": p, "status": "ok", "reason": ""} for p in paths), GroupConfig()))


def _parts(out) -> Counter:
    ids = Counter()
    for p in (out / "_work" / "clips").rglob("*.parquet"):
        ids.update(pq.read_table(p, columns=["clip_id"]).column("clip_id").to_pylist())
    return ids


def test_a_group_writes_one_shard_series_and_completes_each_video(videos, tmp_path):
    out = tmp_path / "ds"
    item = _item(videos)
    assert len(item[GROUP]) == 3
    got = _task(out)(item)
    rows = video_rows(got)
    assert [r["path"] for r in rows] == videos and all(r["status"] == "ok" for r in rows)
    assert got[STATS]["written"] == 6 and got[STATS]["shards"] == 1
    tars = [p.name for p in (out / "_work" / "shards").glob("*.tar")]
    assert len(tars) == 1 and tars[0].startswith("work-g")  # three videos' clips, one tar
    manifest = Manifest(out)
    for r in rows:  # each content's records hold its own rows only, and say it is complete
        assert manifest.is_complete(r["sha256"])
        part = pq.read_table(out / "_work" / "clips" / r["sha256"][:20] / f"{tars[0]}.parquet").to_pylist()
        assert len(part) == 2 and all(c["clip_id"].startswith(r["sha256"][:20]) for c in part)
        assert {c["work_shard"] for c in part} == {tars[0]}
    assert sorted(_parts(out).values()) == [1] * 6
    manifest.recover()  # every tar has its parts: nothing is removed
    assert [p.name for p in (out / "_work" / "shards").glob("*.tar")] == tars


def test_a_killed_group_resumes_each_video_exactly_once(videos, tmp_path):
    out = tmp_path / "ds"
    task = _task(out)
    rows = video_rows(task(_item(videos)))
    before = _parts(out)
    # killed between the shared tar's parts: the third content's part and the last two markers never landed
    third = out / "_work" / "clips" / rows[2]["sha256"][:20]
    for p in third.glob("work-*.parquet"):
        p.unlink()
    (third / "complete.json").unlink()
    (out / "_work" / "clips" / rows[1]["sha256"][:20] / "complete.json").unlink()
    Manifest(out).recover()  # the tar is recorded by the first two contents' parts: it stays
    again = task(_item(videos))
    assert [r[STATS] if STATS in r else None for r in video_rows(again)] == [None] * 3  # stats moved to the group
    assert again[STATS]["written"] == 2 and again[STATS]["clips"] == 2  # only the third video's clips redone
    assert _parts(out) == before  # each clip in exactly one part
    assert all(Manifest(out).is_complete(r["sha256"]) for r in rows)


def test_an_exact_copy_in_the_same_group_reuses_the_first(videos, tmp_path):
    out = tmp_path / "ds"
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(open(videos[0], "rb").read())
    got = _task(out)(_item([videos[0], str(copy)]))
    first, second = video_rows(got)
    assert second["sha256"] == first["sha256"] and second["clip_spans"] == first["clip_spans"]
    assert got[STATS]["written"] == 2 and sorted(_parts(out).values()) == [1, 1]


def test_grouping_packs_small_inputs_and_leaves_a_large_one_alone(tmp_path):
    sizes = {"a": 10, "b": 10, "big": 1000, "c": 10, "d": 10, "e": 10}
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"x" * n)
    rows = [{"path": str(tmp_path / n)} for n in sizes]
    groups = [[r["path"].rsplit("/", 1)[1] for r in g[GROUP]]
              for g in group_items(rows, GroupConfig(max_videos=2, max_bytes=100))]
    assert groups == [["a", "b"], ["big"], ["c", "d"], ["e"]]
    assert [len(g[GROUP]) for g in group_items(rows, GroupConfig(max_videos=1))] == [1] * 6  # grouping off


def test_a_group_that_failed_as_a_whole_fails_each_of_its_videos():
    item = {"path": "a", GROUP: [{"path": "a"}, {"path": "b"}], "status": "failed", "reason": "video: worker died"}
    assert [(r["path"], r["status"], r["reason"]) for r in video_rows(item)] == \
        [("a", "failed", "video: worker died"), ("b", "failed", "video: worker died")]


def test_grouping_never_leaves_a_slot_idle(tmp_path):
    rows = []
    for i in range(6):
        (tmp_path / f"v{i}").write_bytes(b"x" * 10)
        rows.append({"path": str(tmp_path / f"v{i}")})
    sizes = lambda count, slots: [len(g[GROUP]) for g in group_items(rows, GroupConfig(), count=count, slots=slots)]
    assert sizes(6, 3) == [2, 2, 2]     # six videos, three slots: three tasks, not one
    assert sizes(6, 8) == [1] * 6       # more slots than videos: one video a task
    assert sizes(6, 1) == [6]           # one slot: one group (max_videos 32)


def test_a_group_gives_freed_heap_back_after_each_split_and_clip_batch(videos, tmp_path, monkeypatch):
    """A group runs up to max_videos videos in one worker: like the single-video task it returns freed
    heap pages after each shot split and each clip batch (curate/malloc.py), not once at the end."""
    from reelforge.curate import malloc

    calls = []
    monkeypatch.setattr(malloc, "release", lambda: calls.append(1))
    task = _task(tmp_path / "ds")
    got = task(_item(videos))
    assert got[STATS]["written"] == 6
    # 3 splits + at least one clip batch per video (2 clips each, batch 4: one batch a video)
    assert len(calls) == 3 + 3
