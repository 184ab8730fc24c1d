"""End to end: generated videos + bad files → `run_build` on an embedded Ray → parquet, tars, resume."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from collections import Counter

import decord
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig, run_build
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


def test_rerun_is_idempotent(built, raw, tiny_clip_overrides):
    out, summary = built
    before = pq.read_table(out / "clips.parquet").to_pylist()
    tars = sorted(p.name for p in (out / "shards").glob("*.tar"))
    again = run_build([str(raw)], out, _cfg(tiny_clip_overrides))
    after = pq.read_table(out / "clips.parquet").to_pylist()
    assert sorted(c["clip_id"] for c in after) == sorted(c["clip_id"] for c in before)
    assert sorted(p.name for p in (out / "shards").glob("*.tar")) == tars
    assert again["clips"] == summary["clips"]


def test_killed_build_resumes_without_loss_or_duplicates(ray_local, raw, built, tiny_clip_overrides, tmp_path, monkeypatch):
    reference = {c["clip_id"]: c for c in pq.read_table(built[0] / "clips.parquet").to_pylist()}
    from reelforge.shards import writer as writer_mod

    real_flush = writer_mod.ShardWriter.flush
    calls = {"n": 0}

    def dying_flush(self):
        shard = real_flush(self)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("killed right after the first shard")
        return shard

    monkeypatch.setattr(writer_mod.ShardWriter, "flush", dying_flush)
    out = tmp_path / "ds"
    # shards of several clips each: the clip that fills a shard must be recorded with that shard
    multi = tiny_clip_overrides + ["shards.target_bytes=30000"]
    with pytest.raises(KeyboardInterrupt):
        run_build([str(raw)], out, _cfg(multi))
    assert not (out / "clips.parquet").exists() and not (out / "shards").exists()  # nothing published yet
    # a work tar renamed but not recorded (killed between the two) must not survive the resume
    orphan = out / "_work" / "shards" / "work-009999.tar"
    shutil.copy(sorted((out / "_work" / "shards").glob("*.tar"))[0], orphan)

    monkeypatch.setattr(writer_mod.ShardWriter, "flush", real_flush)
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
