"""One truth for every clip: after a build and after --refilter, clips.parquet, the training tars (read by a
plain WebDataset and by `tar`), every <key>.json, index.parquet, both readers, summary.json, config.yaml and
the report agree on which clips train. Plus: an exact duplicate input is one set of clips, and a fresh
build passes `shards verify`.

One real build on an embedded Ray over the generated `test` videos plus a byte copy of one of them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tarfile

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig, run_build, run_refilter
from reelforge.samples import generate_samples
from reelforge.shards.buckets import BucketConfig, BucketTable
from reelforge.shards.index import read_index
from reelforge.shards.reader import ReaderConfig, VideoShardDataset
from reelforge.shards.stream import StreamConfig, StreamDataset
from reelforge.shards.verify import verify_dataset

BASE = ["ray.dashboard=false", "ray.progress_bars=false", "ray.num_cpus=2", "curate.split.min_seconds=0.5",
        "shards.target_bytes=40000", "curate.filters.basic.min_duration_s=0.5",
        "curate.filters.motion.max_jitter=0",
        # the refilter re-decides motion: the model stages score what motion removes (else "not scored")
        "curate.filters.motion.score_removed=true"]
# the build keeps the moving clips and removes the still ones; the refilter turns that around
BUILD_MOTION = ["curate.filters.motion.min_motion=0.05", "curate.filters.motion.max_motion=0"]
REFILTER_MOTION = ["curate.filters.motion.min_motion=0", "curate.filters.motion.max_motion=0.05"]
# one small bucket every clip fits, so the readers' selection is about status, not shape
TINY_BUCKETS = BucketTable(buckets=[BucketConfig(height=32, width=32, num_frames=2, batch_size=1)],
                           min_crop_keep=0.1)


def _cfg(extra=()):
    return load_config(BuildConfig, None, BASE + list(extra))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("raw")
    videos = generate_samples(d, preset="test")
    shutil.copy(videos[0], d / "zz_copy_of_first.mp4")  # same bytes, another name
    (d / "zzz_folder.mp4").mkdir()  # named like a video: an input row saying why it was skipped
    (d / "zzz_folder.mp4" / "notes.txt").write_text("not a video")
    return d


@pytest.fixture(scope="module")
def built(ray_local, raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    run_build([str(raw)], out, _cfg(BUILD_MOTION))
    return out


def _clips(out):
    return {c["clip_id"]: c for c in pq.read_table(out / "clips.parquet").to_pylist()}


def _tar_samples(out):
    """key -> parsed JSON for every sample a plain WebDataset reader yields from OUT/shards/*.tar."""
    urls = sorted(str(p) for p in (out / "shards").glob("*.tar"))
    seen = {}
    for s in wds.WebDataset(urls, shardshuffle=False):
        assert s["__key__"] not in seen, f"two samples with key {s['__key__']}"
        seen[s["__key__"]] = json.loads(s["json"])
    return seen


def _reader_ids(out):
    indexed = set(VideoShardDataset(out, ReaderConfig(buckets=TINY_BUCKETS)).table["clip_id"].to_pylist())
    streams = []
    for index in (str(out / "index.parquet"), None):  # with the index, and from the JSON members alone
        urls = sorted(str(p) for p in (out / "shards").glob("*.tar"))
        ds = StreamDataset(StreamConfig(urls=urls, index=index, buckets=TINY_BUCKETS, handler="raise",
                                        resampled=False))
        streams.append({p["clip_id"] for p in map(ds.prepare, wds.WebDataset(urls, shardshuffle=False)) if p})
    return indexed, streams


def _assert_one_truth(out, thresholds: dict):
    clips = _clips(out)
    ok = {k for k, c in clips.items() if c["status"] == "ok"}
    removed = {k for k, c in clips.items() if c["status"] == "filtered"}
    assert ok and removed, "the fixture must keep some clips and remove others"

    # the training tars: exactly the ok clips, each JSON stating its final status
    samples = _tar_samples(out)
    assert set(samples) == ok
    for key, meta in samples.items():
        assert meta["status"] == "ok" and meta["reason"] is None and meta["clip_id"] == key
        assert "work_shard" not in meta and "shard" not in meta
        for col in ("motion_mean", "duration_s", "num_frames"):
            assert meta[col] == clips[key][col]
    for key in ok:
        assert clips[key]["shard"] and (out / "shards" / clips[key]["shard"]).is_file()
    assert all(clips[k]["shard"] is None for k in removed)
    listed = set()
    for tar in (out / "shards").glob("*.tar"):
        names = subprocess.run(["tar", "tf", str(tar)], capture_output=True, text=True, check=True).stdout.split()
        listed |= {n.split(".", 1)[0] for n in names}
    assert listed == ok

    # removed clips stay in the work shards (a refilter can bring them back), never in the training set
    work = set()
    for tar in (out / "_work" / "shards").glob("*.tar"):
        with tarfile.open(tar) as tf:
            work |= {n.split(".", 1)[0] for n in tf.getnames()}
    assert ok | {k for k in removed if clips[k]["work_shard"]} <= work

    # the index and both readers
    index = read_index(out).to_pylist()
    assert {r["clip_id"] for r in index} == ok and all(r["status"] == "ok" for r in index)
    indexed, (streamed_with_index, streamed_from_json) = _reader_ids(out)
    assert indexed == streamed_with_index == streamed_from_json == ok

    # summary, config and report tell the same story
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == len(clips) and summary["clips_ok"] == len(ok)
    assert summary["funnel"]["motion"] == sum(c["reason"].startswith("motion:") for c in clips.values()
                                              if c["status"] == "filtered")
    assert summary["shards"] == len(list((out / "shards").glob("*.tar")))
    config = yaml.safe_load((out / "config.yaml").read_text())
    for key, value in thresholds.items():
        assert config["curate"]["filters"]["motion"][key] == value
    report = json.loads((out / "report.json").read_text())
    assert report["funnel"]["adds_up"], report["funnel"]["warnings"]
    assert report["funnel"]["kept"] == len(ok)
    assert verify_dataset(out).ok


def test_build_serves_exactly_the_ok_clips(built):
    _assert_one_truth(built, {"min_motion": 0.05, "max_motion": 0.0})
    summary = json.loads((built / "summary.json").read_text())
    assert "aesthetic" in summary["skipped_stages"] and "caption_match" in summary["skipped_stages"]
    html = (built / "report.html").read_text()
    assert "did not run" in html
    # the contact sheet shows removed clips too, decoded from the work shards
    sheet = json.loads((built / "report.json").read_text())["contact_sheet"]
    assert any(group.startswith("filtered") for group in sheet)
    assert html.count("data:image/jpeg") == sum(len(ids) for ids in sheet.values())


def test_refilter_moves_clips_both_ways_everywhere(built, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(built, out)
    before = _clips(out)
    videos_before = pq.read_table(out / "videos.parquet").to_pylist()
    inputs_before = json.loads((out / "summary.json").read_text())["inputs"]
    summary = run_refilter(out, _cfg(REFILTER_MOTION))
    # every input row survives the refilter, the skipped folder included
    videos_after = pq.read_table(out / "videos.parquet").to_pylist()
    assert [(v["path"], v["status"]) for v in videos_after] == [(v["path"], v["status"]) for v in videos_before]
    assert any(v["path"].endswith("zzz_folder.mp4") and v["status"] == "failed" for v in videos_after)
    assert summary["inputs"] == inputs_before
    after = _clips(out)
    newly_kept = {k for k in after if after[k]["status"] == "ok" and before[k]["status"] != "ok"}
    newly_removed = {k for k in after if before[k]["status"] == "ok" and after[k]["status"] != "ok"}
    assert newly_kept and newly_removed, "the thresholds must move clips both ways"
    for k in newly_removed:
        assert after[k]["reason"].startswith("motion: motion_mean=") and "> max" in after[k]["reason"]
    _assert_one_truth(out, {"min_motion": 0.0, "max_motion": 0.05})
    assert summary["publish"]["unchanged"] is False
    # the same thresholds again: nothing to re-publish, same tars
    tars = {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.tar")}
    assert run_refilter(out, _cfg(REFILTER_MOTION))["publish"]["unchanged"] is True
    assert {p.name: p.stat().st_mtime_ns for p in (out / "shards").glob("*.tar")} == tars


def test_exact_duplicate_is_one_set_of_clips(built, raw):
    videos = {v["path"].rsplit("/", 1)[1]: v for v in pq.read_table(built / "videos.parquet").to_pylist()}
    original = sorted(p.name for p in raw.iterdir() if p.is_file() and p.suffix in (".mp4", ".mkv", ".webm"))[0]
    copy = videos["zz_copy_of_first.mp4"]
    assert copy["status"] == "filtered" and copy["duplicate_of"].endswith(original)
    assert copy["reason"].startswith("duplicate: same bytes as ") and original in copy["reason"]
    assert copy["num_clips"] == 0 and videos[original]["num_clips"] > 0
    clips = pq.read_table(built / "clips.parquet").to_pylist()
    assert len({c["clip_id"] for c in clips}) == len(clips)
    assert not any(c["video_path"].endswith("zz_copy_of_first.mp4") for c in clips)
    summary = json.loads((built / "summary.json").read_text())
    assert summary["videos_duplicate"] == 1
    assert verify_dataset(built).ok  # a fresh build with duplicate content verifies
