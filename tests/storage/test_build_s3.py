"""A build that reads its sources from and writes its dataset to object storage (a moto S3 server
started by the test); the readers and `shards verify` then take the dataset's URL.

Counts, from the server's own request log, that each remote source is downloaded once per video for
all of its stages (probe, scene split) and all of its clips (transcode, scoring)."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from reelforge import storage
from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig, run_build
from reelforge.samples import generate_samples
from reelforge.storage import StorageError

# the cheap stages only: the learned detectors add nothing to what storage has to do
OVERRIDES = ["ray.dashboard=false", "ray.progress_bars=false", "ray.num_cpus=2", "curate.split.min_seconds=0.5",
             "shards.target_bytes=60000", "curate.filters.text_overlay.enabled=false",
             "curate.filters.nsfw.enabled=false", "curate.filters.aesthetic.enabled=false"]
OUT_BUCKET = "reelforge-build-out"


def _cfg() -> BuildConfig:
    return load_config(BuildConfig, None, OVERRIDES)


@pytest.fixture(scope="module")
def raw_s3(s3, tmp_path_factory):
    """The "test" sample videos and one non-video uploaded to s3://<bucket>/raw/."""
    import s3fs

    local = tmp_path_factory.mktemp("raw")
    videos = generate_samples(local, preset="test")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir("reelforge-build-src")
    fs.mkdir(OUT_BUCKET)
    url = "s3://reelforge-build-src/raw"
    for v in videos:
        storage.write_bytes_atomic(f"{url}/{v.name}", v.read_bytes())
    storage.write_bytes_atomic(f"{url}/notes.mp4", b"not a video at all\n" * 100)
    return url, [v.name for v in videos]


def _gets(s3, since: Counter) -> Counter:
    return Counter({path: n for (method, path), n in (Counter(s3.requests()) - since).items() if method == "GET"})


@pytest.fixture(scope="module")
def built(ray_s3, s3, raw_s3, tmp_path_factory):
    """s3://…/raw/ -> s3://reelforge-build-out/ds; the GETs the server answered during the build."""
    url, _ = raw_s3
    out = f"s3://{OUT_BUCKET}/ds"
    before = Counter(s3.requests())
    cwd = Path.cwd()
    summary = run_build([url + "/"], out, _cfg())
    assert not list(cwd.glob("s3:*"))  # no local folder named after the URL
    return out, summary, _gets(s3, before)


def test_remote_sources_are_fetched_once_per_video(built, raw_s3):
    out, summary, gets = built
    url, names = raw_s3
    videos = {r["path"]: r for r in storage.read_parquet(f"{out}/videos.parquet").to_pylist()}
    assert set(videos) == {f"{url}/{n}" for n in names + ["notes.mp4"]}
    assert videos[f"{url}/notes.mp4"]["status"] == "failed"
    ok = [p for p, r in videos.items() if r["status"] == "ok"]
    assert len(ok) >= 3 and sum(videos[p]["num_clips"] for p in ok) > len(ok)  # several clips per video
    per_source = {p: gets.get(p.removeprefix("s3:/"), 0) for p in videos}
    assert per_source == {p: 1 for p in videos}, per_source


def test_the_dataset_on_s3_verifies_and_the_reader_streams_a_batch(built):
    from reelforge.shards.buckets import BucketConfig, BucketTable
    from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset
    from reelforge.shards.verify import verify_dataset

    out, summary, _ = built
    names = set(storage.listdir(out))
    assert {"videos.parquet", "clips.parquet", "index.parquet", "summary.json", "config.yaml", "shards",
            "_work"} <= names and ".lock" not in names
    assert summary["clips_ok"] > 0 and summary["shards"] == len(storage.listdir(f"{out}/shards"))
    report = verify_dataset(out)
    assert report.ok, report.errors
    assert report.samples == summary["clips_ok"]
    # tiny sources: a bucket table of tiny shapes (the default's smallest bucket is larger than any clip)
    buckets = BucketTable(buckets=[BucketConfig(32, 48, 4, 2, "tiny")], fps=8.0, max_upscale=1.0, min_crop_keep=0.3)
    batch = next(iter(ShardLoader(VideoShardDataset(out, ReaderConfig(buckets=buckets)), num_workers=0)))
    assert batch["video"].shape == (2, 4, 3, 32, 48) and not batch["failed"]


def test_the_build_writes_its_report_into_the_bucket(built):
    out, summary, _ = built
    record = json.loads(storage.read_bytes(f"{out}/report.json"))
    assert record["dataset"] == out and record["funnel"]["adds_up"]
    assert record["funnel"]["kept"] == summary["clips_ok"] and record["funnel"]["planned"] == summary["clips"]
    page = storage.read_bytes(f"{out}/report.html").decode()
    assert page.count("data:image/jpeg;base64,") >= min(summary["clips_ok"], 24)  # kept clips' thumbnails
    assert "not written for an object-storage output" not in page


def test_an_output_scheme_that_cannot_work_fails_before_any_work(ray_s3, s3, raw_s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # were the check missing, "nosuch://b/ds" would become a folder "nosuch:" here
    url, _ = raw_s3
    before = Counter(s3.requests())
    for bad, words in (("nosuch://b/ds", "unknown URL scheme"), ("https://example.com/ds", "read-only"),
                       ("s3://no-such-bucket/ds", "does not exist")):
        with pytest.raises(StorageError, match=words):
            run_build([url + "/"], bad, _cfg())
    assert not [p for p in _gets(s3, before) if p.startswith(url.removeprefix("s3:/") + "/")]  # no source read
    assert not list(tmp_path.iterdir())


def test_refilter_on_s3_republishes_and_back(built):
    from reelforge.curate.pipeline import run_refilter
    from reelforge.shards.verify import verify_dataset

    out, summary, _ = built

    def ok_ids():
        return {r["clip_id"] for r in storage.read_parquet(f"{out}/clips.parquet").to_pylist() if r["status"] == "ok"}
    before, shards = ok_ids(), storage.listdir(f"{out}/shards")
    removed = [name for name, n in summary["funnel"].items() if n]
    assert removed, summary["funnel"]
    # switching a filter off is a decision, not work: the refilter keeps more clips without decoding
    looser = load_config(BuildConfig, None, OVERRIDES + [f"curate.filters.{removed[0]}.enabled=false"])
    run_refilter(out, looser)
    assert ok_ids() > before
    assert not set(storage.listdir(f"{out}/shards")) & set(shards)  # a new set under new names, the old one gone
    assert verify_dataset(out).ok
    run_refilter(out, _cfg())
    assert ok_ids() == before and verify_dataset(out).ok


@pytest.mark.slow
def test_same_clips_as_a_local_build_and_a_rerun_resumes(built, raw_s3, s3, tmp_path):
    out, _, _ = built
    url, _ = raw_s3
    run_build([url + "/"], tmp_path / "ds", _cfg())

    def key(r):
        return r["clip_id"], r["status"]
    remote = sorted(map(key, storage.read_parquet(f"{out}/clips.parquet").to_pylist()))
    assert remote == sorted(map(key, pq.read_table(tmp_path / "ds" / "clips.parquet").to_pylist()))
    # the same command again: nothing redone, no source read, nothing duplicated, the shards unchanged
    shards = storage.listdir(f"{out}/shards")
    before = Counter(s3.requests())
    again = run_build([url + "/"], out, _cfg())
    assert again["build_tasks"]["todo"] == 0 and again["publish"]["unchanged"]
    assert not [p for p in _gets(s3, before) if p.startswith(url.removeprefix("s3:/") + "/")]
    assert sorted(map(key, storage.read_parquet(f"{out}/clips.parquet").to_pylist())) == remote
    assert storage.listdir(f"{out}/shards") == shards
