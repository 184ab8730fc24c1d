"""End to end: generated videos + bad files → `run_build` on an embedded Ray → parquet, tars, resume."""
from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sys
import subprocess
import tarfile
from collections import Counter
from pathlib import Path

import decord
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig, run_build
from reelforge.curate.stage import Resources, Stage
from reelforge.curate.video_task import STATS
from reelforge.samples import generate_samples

OVERRIDES = ["ray.dashboard=false", "ray.progress_bars=false", "ray.num_cpus=2",
             "curate.split.min_seconds=0.5", "shards.target_bytes=60000"]


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    videos = generate_samples(d, preset="test")
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("not a video at all\n" * 100)
    data = videos[0].read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 3])
    return d


SCORES = ("aspect_ratio", "border_area", "exposure_mean", "sharpness", "motion_mean", "text_area", "nsfw",
          "aesthetic")


def _cfg(extra=()):
    return load_config(BuildConfig, None, OVERRIDES + list(extra))


@pytest.fixture(scope="module")
def built(ray_local, raw, tiny_clip_overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    summary = run_build([str(raw)], out, _cfg(tiny_clip_overrides))
    return out, summary


def test_every_input_has_a_row(built, raw):
    out, summary = built
    videos = pq.read_table(out / "videos.parquet").to_pylist()
    inputs = sorted(str(p) for p in raw.iterdir() if p.suffix in (".mp4", ".mkv", ".webm", ".mov"))
    assert sorted(v["path"] for v in videos) == inputs
    by_name = {v["path"].rsplit("/", 1)[1]: v for v in videos}
    for bad in ("empty.mp4", "notes.mp4"):
        assert by_name[bad]["status"] == "failed" and by_name[bad]["reason"].startswith("probe:")
    assert by_name["truncated.mp4"]["status"] in ("failed", "ok")  # a readable prefix may still give clips
    good = [v for v in videos if v["path"].rsplit("/", 1)[1].startswith("t_")]
    assert good and all(v["status"] == "ok" and v["num_clips"] > 0 for v in good)
    assert summary["inputs"] == len(inputs) and summary["videos_failed"] >= 2
    assert json.loads((out / "summary.json").read_text())["clips"] == summary["clips"]
    assert (out / "config.yaml").exists()
    html = (out / "report.html").read_text()
    assert "<svg" in html and "data:image/jpeg;base64," in html


def test_clips_table_and_shards_agree(built):
    out, _ = built
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    for col in ("clip_id", "video_path", "start_s", "end_s", "start_frame", "end_frame", "shard", "status", "reason"):
        assert col in clips[0]
    assert len({c["clip_id"] for c in clips}) == len(clips)
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql(f"SELECT count(*) FROM '{out / 'clips.parquet'}'").fetchall()[0][0] == len(clips)
    assert all(c["status"] in ("ok", "filtered", "failed") for c in clips)
    assert all(c["reason"] for c in clips if c["status"] != "ok")
    in_shards = {c["clip_id"]: c for c in clips if c["shard"]}
    assert in_shards and all(c["shard"] for c in clips if c["status"] == "ok")

    assert len(list((out / "_work" / "shards").glob("*.tar"))) >= 2  # the small target forces several shards
    tars = sorted((out / "shards").glob("*.tar"))  # published: the kept clips only
    assert tars
    listed = subprocess.run(["tar", "tf", str(tars[0])], capture_output=True, text=True, check=True).stdout.split()
    assert listed and all(n.rsplit(".", 1)[0] in in_shards for n in listed)

    seen = Counter()
    for sample in wds.WebDataset([str(t) for t in tars], shardshuffle=False):
        meta = json.loads(sample["json"])
        seen[sample["__key__"]] += 1
        assert meta["clip_id"] == sample["__key__"] and meta["format"] == "reelforge.shard.v1"
        vr = decord.VideoReader(io.BytesIO(sample["mp4"]))
        assert len(vr) == meta["num_frames"]
        assert (vr[0].shape[1], vr[0].shape[0]) == (meta["width"], meta["height"])
        if in_shards[sample["__key__"]]["status"] == "ok":
            assert all(meta.get(k) is not None for k in SCORES), meta
        if in_shards[sample["__key__"]]["caption"]:
            assert sample["txt"].decode() == in_shards[sample["__key__"]]["caption"]
    assert set(seen) == set(in_shards) and max(seen.values()) == 1


def test_every_score_column_filled_for_ok_clips(built):
    out, summary = built
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    ok = [c for c in clips if c["status"] == "ok"]
    assert ok
    for c in ok:
        missing = [k for k in SCORES if c.get(k) is None]
        assert not missing, (c["clip_id"], missing)
    emb = pq.read_table(out / "embeddings.parquet")
    assert set(emb.column("clip_id").to_pylist()) >= {c["clip_id"] for c in ok}
    assert sum(summary["funnel"].values()) == sum(c["status"] == "filtered" for c in clips)


def test_rerun_is_idempotent(built, raw, tiny_clip_overrides, capsys):
    out, summary = built
    before = pq.read_table(out / "clips.parquet").to_pylist()
    tars = sorted(p.name for p in (out / "shards").glob("*.tar"))
    capsys.readouterr()
    again = run_build([str(raw)], out, _cfg(tiny_clip_overrides))
    n = summary["build_tasks"]["videos"]
    assert f"{n} of {n} inputs already done; 0 to do" in capsys.readouterr().out  # a re-run says what is left
    after = pq.read_table(out / "clips.parquet").to_pylist()
    assert sorted(c["clip_id"] for c in after) == sorted(c["clip_id"] for c in before)
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == tars
    assert again["clips"] == summary["clips"]


def test_the_finish_decides_the_same_a_video_at_a_time(built, tiny_clip_overrides, tmp_path, monkeypatch):
    """The streamed finish (curate/finish.py) with one video's clips per chunk: every cross-chunk step
    (schemas, the publish digest, the record's clip table read back in step, near-duplicates) as in one."""
    from reelforge.curate import finish
    from reelforge.curate.pipeline import run_refilter

    out = tmp_path / "ds"
    shutil.copytree(built[0], out)
    reference = pq.read_table(built[0] / "clips.parquet")
    monkeypatch.setattr(finish, "CHUNK_ROWS", 1)
    again = run_refilter(out, _cfg(tiny_clip_overrides))  # same decision: the publish is found unchanged
    assert again["publish"]["unchanged"] and again["funnel"] == built[1]["funnel"]
    assert pq.read_table(out / "clips.parquet").equals(reference)
    assert pq.read_metadata(out / "clips.parquet").num_row_groups == len(set(reference["video_path"].to_pylist()))
    (out / "_work" / "published.json").unlink()  # published again, a clip at a time
    again = run_refilter(out, _cfg(tiny_clip_overrides))
    assert not again["publish"]["unchanged"]
    clips = pq.read_table(out / "clips.parquet")
    assert clips.drop_columns(["shard"]).equals(reference.drop_columns(["shard"]))
    keys = {s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (out / "shards").glob("*.tar")),
                                                  shardshuffle=False)}
    assert keys == {c["clip_id"] for c in clips.to_pylist() if c["status"] == "ok"}


def test_killed_build_resumes_without_loss_or_duplicates(ray_local, raw, built, tiny_clip_overrides, tmp_path, monkeypatch):
    reference = {c["clip_id"]: c for c in pq.read_table(built[0] / "clips.parquet").to_pylist()}
    from reelforge.curate import pipeline as pipeline_mod

    real_run_tasks = pipeline_mod.run_tasks

    def killed_after_first_video(*args, **kwargs):
        # the driver dies once a video with clips is done; the tasks still running are killed mid-work
        tasks = real_run_tasks(*args, **kwargs)
        try:
            for row in tasks:
                wrote = row[STATS]["written"]
                yield row
                if wrote:
                    raise KeyboardInterrupt("killed after the first video")
        finally:
            tasks.close()

    monkeypatch.setattr(pipeline_mod, "run_tasks", killed_after_first_video)
    out = tmp_path / "ds"
    # shards of several clips each: the clip that fills a shard must be recorded with that shard
    multi = tiny_clip_overrides + ["shards.target_bytes=30000"]
    with pytest.raises(KeyboardInterrupt):
        run_build([str(raw)], out, _cfg(multi))
    assert not (out / "clips.parquet").exists() and not (out / "shards").exists()  # nothing published yet
    committed = sorted((out / "_work" / "shards").glob("*.tar"))
    assert committed  # the first video's shards at least
    # a work tar renamed but not recorded (killed between the two) must not survive the resume
    orphan = out / "_work" / "shards" / "work-009999.tar"
    shutil.copy(committed[0], orphan)

    monkeypatch.setattr(pipeline_mod, "run_tasks", real_run_tasks)
    run_build([str(raw)], out, _cfg(multi))
    resumed = pq.read_table(out / "clips.parquet").to_pylist()
    assert sorted(c["clip_id"] for c in resumed) == sorted(reference)
    assert [c["status"] for c in sorted(resumed, key=lambda c: c["clip_id"])] == \
        [reference[k]["status"] for k in sorted(reference)]
    assert not orphan.exists()
    keys = Counter()
    for t in (out / "shards").glob("*.tar"):
        with tarfile.open(t) as tf:
            keys.update(n.rsplit(".", 1)[0] for n in tf.getnames() if n.endswith(".mp4"))
    assert set(keys) == {k for k, c in reference.items() if c["shard"]} and max(keys.values()) == 1
    per_shard = Counter(c["work_shard"] for c in resumed if c["work_shard"])
    assert max(per_shard.values()) >= 2


class KillOnce(Stage):
    """Kills its worker (SIGKILL, as the OOM killer does) at the third clip of a video, once per build:
    the task's shard writer holds an open tar then. Writes down the open ``.tmp`` files it saw."""

    name = "kill_once"

    def __init__(self, marker: str, work_shards: str):
        self.marker, self.work_shards = Path(marker), Path(work_shards)

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=1)

    def process_row(self, row):
        if row["clip_index"] == 2 and not self.marker.exists():
            self.marker.write_text(json.dumps(sorted(p.name for p in self.work_shards.glob("*.tmp"))))
            os.kill(os.getpid(), signal.SIGKILL)
        return {}


@pytest.fixture
def by_value():
    from ray import cloudpickle

    # the stage classes below live in this test module, which Ray's workers cannot import
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def _with_clip_stage(monkeypatch, spec):
    from reelforge.curate import pipeline as pipeline_mod

    real_specs = pipeline_mod.stage_specs

    def with_stage(cfg, phase):
        specs = real_specs(cfg, phase)
        if phase == "clip":  # after transcode: the clips before it are in the task's open tar
            specs.insert(1, spec)
        return specs

    monkeypatch.setattr(pipeline_mod, "stage_specs", with_stage)


def test_a_writer_killed_mid_tar_is_redone_without_loss_or_duplicates(ray_local, raw, built, tiny_clip_overrides,
                                                                       tmp_path, monkeypatch, by_value):
    reference = {c["clip_id"]: c for c in pq.read_table(built[0] / "clips.parquet").to_pylist()}
    from reelforge.curate.runner import StageSpec

    out = tmp_path / "ds"
    marker = tmp_path / "killed.json"
    _with_clip_stage(monkeypatch, StageSpec(KillOnce, (str(marker), str(out / "_work" / "shards"))))
    # a shard holds several clips, so the kill lands with clips written to an open, uncommitted tar
    run_build([str(raw)], out, _cfg(tiny_clip_overrides + ["shards.target_bytes=200000"]))
    open_tars = json.loads(marker.read_text())
    assert open_tars and all(n.endswith(".tar.tmp") for n in open_tars)  # it died mid-tar
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    assert sorted(c["clip_id"] for c in clips) == sorted(reference)  # nothing lost
    assert {c["clip_id"]: c["status"] for c in clips} == {k: c["status"] for k, c in reference.items()}
    # nothing twice: each clip in one committed part and one work tar, no leftovers of the dead writer
    parts = Counter()
    for p in (out / "_work" / "clips").rglob("*.parquet"):
        parts.update(pq.read_table(p, columns=["clip_id"]).column("clip_id").to_pylist())
    assert set(parts) == set(reference) and max(parts.values()) == 1
    keys = Counter()
    for t in (out / "_work" / "shards").iterdir():
        assert t.suffix == ".tar", t  # the dead writer's .tmp is gone
        with tarfile.open(t) as tf:
            keys.update(n.rsplit(".", 1)[0] for n in tf.getnames() if n.endswith(".mp4"))
    assert max(keys.values()) == 1 and set(keys) == {c["clip_id"] for c in clips if c["work_shard"]}


class KillOnOneClip(Stage):
    """Kills its worker on every attempt at one clip (a decoder that always segfaults on it)."""

    name = "kill_on_one_clip"

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=2)

    def process_row(self, row):
        if row["video_path"].endswith("t_cuts.mp4") and row["clip_index"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return {}


def test_a_clip_that_always_kills_its_worker_costs_only_that_clip(ray_local, raw, built, tiny_clip_overrides,
                                                                    tmp_path, monkeypatch, by_value):
    from reelforge.curate.runner import StageSpec

    reference = {c["clip_id"]: c for c in pq.read_table(built[0] / "clips.parquet").to_pylist()}
    _with_clip_stage(monkeypatch, StageSpec(KillOnOneClip))
    out = tmp_path / "ds"
    run_build([str(raw)], out, _cfg(tiny_clip_overrides))
    clips = {c["clip_id"]: c for c in pq.read_table(out / "clips.parquet").to_pylist()}
    assert set(clips) == set(reference)
    killed = [c for c in clips.values() if c["video_path"].endswith("t_cuts.mp4") and c["clip_index"] == 1]
    assert len(killed) == 1 and killed[0]["status"] == "failed"
    assert killed[0]["reason"].startswith("transcode/scoring: worker died on this clip")
    others = {k: c["status"] for k, c in clips.items() if k != killed[0]["clip_id"]}
    assert others == {k: reference[k]["status"] for k in others}  # every other clip as without the crash
