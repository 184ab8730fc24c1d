"""A dataset on object storage (a moto S3 server): index, both readers and `shards verify` by URL."""
from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from reelforge import storage
from reelforge.shards.index import build_index, read_index
from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset
from reelforge.shards.stream import StreamConfig, StreamLoader, stream_dataset
from reelforge.shards.verify import verify_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))
from shard_fixtures import TEST_BUCKETS, write_captioned_dataset  # noqa: E402


@pytest.fixture(scope="module")
def local_ds(tmp_path_factory) -> Path:
    return write_captioned_dataset(tmp_path_factory.mktemp("ds") / "d", 6, 3, [4, 3, 2])


@pytest.fixture
def remote_ds(s3, bucket, local_ds) -> str:
    """The local dataset's shards and clips.parquet uploaded; the index is built on the bucket itself."""
    url = f"s3://{bucket}/ds"
    for tar in sorted((local_ds / "shards").glob("*.tar")):
        storage.write_bytes_atomic(f"{url}/shards/{tar.name}", tar.read_bytes())
    for name in ("clips.parquet", "captions.parquet"):
        storage.write_bytes_atomic(f"{url}/{name}", (local_ds / name).read_bytes())
    assert build_index(url, TEST_BUCKETS) == f"{url}/index.parquet"
    return url


def test_index_built_on_s3_equals_the_local_one(remote_ds, local_ds):
    remote, local = read_index(remote_ds), read_index(local_ds)
    assert remote.to_pylist() == local.to_pylist()


def test_indexed_reader_serves_the_same_batches_from_s3(remote_ds, local_ds, s3):
    def epoch(ds):
        return list(ShardLoader(VideoShardDataset(ds, ReaderConfig(), 0, 1, seed=3), num_workers=2))

    before = Counter(s3.requests())
    remote, local = epoch(remote_ds), epoch(local_ds)
    assert [b["clip_id"] for b in remote] == [b["clip_id"] for b in local] and len(remote) == 4
    for r, lo in zip(remote, local):
        assert torch.equal(r["video"], lo["video"]) and r["caption"] == lo["caption"] and not r["failed"]
    # members come by ranged GET at the index's offsets, one GET per sample (video, caption and JSON lie
    # together in the tar): no whole-shard download
    tar_gets = sum(n for k, n in (Counter(s3.requests()) - before).items() if k[0] == "GET" and k[1].endswith(".tar"))
    assert 0 < tar_gets <= sum(len(b["clip_id"]) for b in remote)


def test_caption_versions_from_the_store_on_s3(remote_ds):
    cfg = ReaderConfig(caption_version="v1")
    batches = list(ShardLoader(VideoShardDataset(remote_ds, cfg, 0, 1), num_workers=0))
    assert all(c == f"stored {i}" for b in batches for c, i in zip(b["caption"], b["clip_id"]))
    stream = StreamConfig(dataset_dir=remote_ds, resampled=False, shuffle_buffer=1, caption_version="v1")
    batch = next(iter(StreamLoader(stream_dataset(stream), num_workers=0)))
    assert batch["caption"] == [f"stored {i}" for i in batch["clip_id"]]


def test_stream_reader_streams_a_batch_from_s3(remote_ds, local_ds):
    def ids(cfg):
        return sorted(c for b in StreamLoader(stream_dataset(cfg), num_workers=0) for c in b["clip_id"])

    remote = ids(StreamConfig(dataset_dir=remote_ds, resampled=False, shuffle_buffer=1))
    local = ids(StreamConfig(dataset_dir=str(local_ds), resampled=False, shuffle_buffer=1))
    assert remote == local == sorted(r["clip_id"] for r in read_index(local_ds).to_pylist())
    cfg = StreamConfig(dataset_dir=remote_ds, batches_per_epoch=2, shuffle_buffer=4, shuffle_initial=2)
    batch = next(iter(StreamLoader(stream_dataset(cfg), num_workers=0)))
    bucket = TEST_BUCKETS[batch["bucket"]]
    assert batch["video"].shape == (bucket.batch_size, bucket.num_frames, 3, bucket.height, bucket.width)


def test_stats_and_export_from_s3(remote_ds, local_ds, tmp_path):
    from reelforge.shards.export import export_shards
    from reelforge.shards.stats import dataset_stats

    remote, local = dataset_stats(remote_ds), dataset_stats(local_ds)
    assert remote == local and remote["shards"] == 3
    out = export_shards(remote_ds, tmp_path / "sq", where="width = 40", caption_version="v1")
    assert out["samples"] == 6 and out["caption_version"] == "v1"
    assert verify_dataset(tmp_path / "sq").ok


def test_verify_by_url_passes_then_finds_a_missing_shard(remote_ds, capsys):
    from reelforge.cli import main

    report = verify_dataset(remote_ds)
    assert report.ok, report.errors
    assert (report.shards, report.samples) == (3, 9)
    assert main(["shards", "verify", remote_ds, "--fast"]) == 0
    storage.remove(f"{remote_ds}/shards/shard-000001.tar")
    report = verify_dataset(remote_ds)
    assert report.errors == ["shard-000001.tar: in the index (3 samples) but missing on disk"]
    assert main(["shards", "verify", remote_ds]) != 0
