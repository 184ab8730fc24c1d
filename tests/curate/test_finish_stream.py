"""The finish's video rows streamed from the manifest's parts (issue 16), and the output lock checked
before each step that replaces what readers see."""
from __future__ import annotations

import os
import shutil
import tracemalloc

import pyarrow.parquet as pq
import pytest

from reelforge.config import load_config
from reelforge.curate import finish as finish_mod
from reelforge.curate.buildstate import BuildStateError, OutputLock
from reelforge.curate.finish import Totals, Videos, video_row, write_videos
from reelforge.curate.manifest import Manifest
from reelforge.curate.pipeline import BuildConfig, run_build, run_refilter
from reelforge.samples import PALETTE, ShotSpec, VideoSpec, render_video

OVERRIDES = ["ray.dashboard=false", "ray.progress_bars=false", "report=false",
             "curate.filters.motion.enabled=false", "curate.filters.exposure.enabled=false",
             "curate.filters.text_overlay.enabled=false", "curate.filters.nsfw.enabled=false"]


def mark_exact_duplicates(videos: list[dict]) -> list[dict]:
    """The rule on a whole list (the finish's before it streamed): sorted by path, the first path of each
    sha256 the original, every later ``ok`` copy filtered naming it."""
    first: dict[str, str] = {}
    out = []
    for v in sorted(videos, key=lambda v: v["path"]):
        sha = v.get("sha256")
        if v.get("status") == "ok" and sha:
            if sha in first:
                v = dict(v, status="filtered", duplicate_of=first[sha],
                         reason=f"duplicate: same bytes as {first[sha]} (sha256 {sha[:16]}...)")
            else:
                first[sha] = v["path"]
        out.append(v)
    return out


def saved_videos(manifest: Manifest, n: int, per_part: int) -> list[dict]:
    """``n`` video rows saved in parts of ``per_part`` (as the build's driver saves them), out of path
    order, some saved twice (the later part wins) and a few exact copies."""
    rows = [{"path": f"/in/{i:05d}.mp4", "status": "ok" if i % 9 else "failed", "reason": "" if i % 9 else f"probe: bad /in/{i:05d}.mp4",
             "sha256": f"{i % 40:064x}" if i % 9 else None, "duration_s": 1.5, "clip_spans": "[]",
             "cpu_s_probe": 0.01 * i, "notes": "x" * 2000} for i in range(n)]
    order = rows[1::2] + rows[::2]
    for k in range(0, n, per_part):
        manifest.save_videos(order[k:k + per_part])
    manifest.save_videos([dict(rows[5], duration_s=9.0)])  # saved again: this row wins
    rows[5] = dict(rows[5], duration_s=9.0)
    return rows


def test_videos_stream_in_path_order_with_copies_marked(tmp_path, monkeypatch):
    manifest = Manifest(tmp_path / "ds")
    rows = saved_videos(manifest, 300, per_part=37)
    monkeypatch.setattr(finish_mod, "VIDEO_CHUNK", 16)
    current = {r["path"] for r in rows if not r["path"].endswith("7.mp4")}  # inputs dropped since
    expected = mark_exact_duplicates([r for r in rows if r["path"] in current])
    videos = Videos(manifest, current)
    assert len(videos) == len(expected)
    assert list(videos) == expected and list(videos) == expected   # twice: the finish reads them twice
    assert sum(bool(v.get("duplicate_of")) for v in expected) > 100

    totals = Totals()
    totals.per_video.update({rows[1]["path"]: 3})
    totals.kept.update({rows[1]["path"]: 2})
    counts = write_videos(tmp_path / "videos.parquet", videos, totals)
    whole = [video_row(v, totals) for v in expected]
    table = pq.read_table(tmp_path / "videos.parquet")
    assert pq.ParquetFile(tmp_path / "videos.parquet").num_row_groups > 1
    assert table.to_pylist() == [{k: r.get(k) for k in table.column_names} for r in whole]
    assert (counts.inputs, counts.failed, counts.duplicate) == (
        len(whole), sum(r["status"] == "failed" for r in whole), sum(bool(r.get("duplicate_of")) for r in whole))
    assert counts.failed_by_reason == {"probe: bad <file>": counts.failed}
    assert counts.cpu["cpu_s_probe"] == pytest.approx(sum(r["cpu_s_probe"] for r in whole))


def test_video_rows_are_not_held(tmp_path, monkeypatch):
    """4x the videos, about the same Python peak while streaming them: a chunk of rows, plus a few hundred
    bytes a video (its path and place, an original's sha256)."""
    monkeypatch.setattr(finish_mod, "VIDEO_CHUNK", 50)
    manifests = {}
    for n in (500, 2000):
        manifests[n] = Manifest(tmp_path / f"ds{n}")
        saved_videos(manifests[n], n, per_part=100)
    list(Videos(manifests[500]))  # warm: imports and caches are not the stream's
    peaks = {}
    for n, manifest in manifests.items():
        tracemalloc.start()
        try:
            for _ in Videos(manifest):
                pass
            peaks[n] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # held whole (one chunk), these rows take ~2.5 KB each as dicts: +3.7 MB for 1,500 more (measured)
    assert peaks[2000] - peaks[500] < 1500 * 400, peaks


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    """A real build of two tiny videos (with the two tests below: 16.5 s at load 6 on the 2-core machine)."""
    src = tmp_path_factory.mktemp("src")
    for i in range(2):
        render_video(VideoSpec(f"v{i}", [
            ShotSpec(18, "gradient", PALETTE["red" if i else "blue"], "circle", PALETTE["white"], motion="object"),
            ShotSpec(18, "stripes", PALETTE["green"], "square", PALETTE["yellow"], motion="pan")],
            width=128, height=128, fps=12, seed=i), src)
    out = tmp_path_factory.mktemp("ds")
    run_build([str(src)], out, load_config(BuildConfig, None, OVERRIDES + ["ray.num_cpus=2"]))
    return out


@pytest.mark.parametrize("lose_at", ["decide", "videos"])
def test_a_lost_lock_stops_before_the_next_commit(built, tmp_path, monkeypatch, lose_at):
    """A lease lost mid-finish (as the renewal thread of a lock on object storage marks it) stops the
    refilter at the next commit point: nothing readers see is replaced after it."""
    out = tmp_path / "ds"
    shutil.copytree(built, out)
    (out / "_work" / "published.json").unlink()   # the publish would copy every clip again
    files = ["clips.parquet", "videos.parquet", "index.parquet", "summary.json"]
    before = {f: os.stat(out / f).st_mtime_ns for f in files}
    tars = sorted(p.name for p in (out / "shards").glob("*.tar"))
    locks = []
    real_enter = OutputLock.__enter__
    monkeypatch.setattr(OutputLock, "__enter__", lambda self: locks.append(self) or real_enter(self))

    def lose(real):
        def wrapped(*a, **k):
            locks[0].lost = "the test took it"
            return real(*a, **k)
        return wrapped

    if lose_at == "decide":  # the decision runs; the first commit (the side tables) is refused
        monkeypatch.setattr(finish_mod, "chunks", lose(finish_mod.chunks))
    else:  # the publish and clips.parquet are done; videos.parquet is written; the index is refused
        monkeypatch.setattr("reelforge.curate.pipeline.write_videos", lose(write_videos))
    with pytest.raises(BuildStateError, match="lost the lock"):
        run_refilter(out, load_config(BuildConfig, None, OVERRIDES))
    after = {f: os.stat(out / f).st_mtime_ns for f in files}
    changed = {f for f in files if after[f] != before[f]}
    if lose_at == "decide":
        assert changed == set()
        assert sorted(p.name for p in (out / "shards").glob("*.tar")) == tars
    else:  # published again (new tar names), its tables written; the index of the old tars stays
        assert changed == {"clips.parquet", "videos.parquet"}
        assert sorted(p.name for p in (out / "shards").glob("*.tar")) != tars
