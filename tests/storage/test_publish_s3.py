"""Publishing training shards on object storage: the record is the commit point (no folder renames)."""
from __future__ import annotations

import io
import json
import tarfile

import pytest

from reelforge import storage
from reelforge.shards import publish as publishing
from reelforge.shards.writer import ShardWriter, ShardWriterConfig


def _work(root: str, n: int = 6) -> dict[str, str]:
    names = {}
    with ShardWriter(f"{root}/_work/shards", ShardWriterConfig(target_bytes=2048, prefix="work")) as w:
        for i in range(n):
            members = {"mp4": f"video-{i}".encode() * 50, "json": b'{"status": "ok"}'}
            if i % 2 == 0:
                members["txt"] = f"caption {i}".encode()
            names[f"clip{i}"] = w.write(f"clip{i}", members)
    return names


def _meta(row):
    return json.dumps({"clip_id": row["clip_id"], "status": "ok"}).encode()


def _published(root: str) -> dict[str, dict[str, bytes]]:
    out = {}
    for name in storage.listdir(f"{root}/shards"):
        with tarfile.open(fileobj=io.BytesIO(storage.read_bytes(f"{root}/shards/{name}"))) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = tar.extractfile(m).read()
    return out


def _publish(root, rows):
    return publishing.publish(root, f"{root}/_work/shards", rows, _meta, ShardWriterConfig(target_bytes=1024),
                              f"{root}/_work")


def test_publish_replace_and_skip_on_s3(s3, bucket):
    root = f"s3://{bucket}/ds"
    names = _work(root)
    rows = [{"clip_id": k, "work_shard": names[k]} for k in ("clip0", "clip3", "clip4")]
    res = _publish(root, rows)
    got = _published(root)
    assert set(got) == {"clip0", "clip3", "clip4"} == set(res.shard_of)
    assert got["clip3"]["mp4"] == b"video-3" * 50 and "txt" not in got["clip3"] and got["clip4"]["txt"] == b"caption 4"
    assert json.loads(got["clip0"]["json"]) == {"clip_id": "clip0", "status": "ok"}
    assert res.bytes == sum(storage.file_sizes(f"{root}/shards").values())
    assert _publish(root, rows).skipped
    again = _publish(root, rows[:1])
    assert not set(res.shards) & set(again.shards) and storage.listdir(f"{root}/shards") == again.shards
    assert set(_published(root)) == {"clip0"}
    record = json.loads(storage.read_bytes(f"{root}/_work/published.json"))
    assert record["shards"] == again.shards


def test_a_publish_killed_midway_leaves_the_current_set(s3, bucket, monkeypatch):
    root = f"s3://{bucket}/ds"
    names = _work(root)
    first = _publish(root, [{"clip_id": k, "work_shard": names[k]} for k in ("clip0", "clip1")])
    real = ShardWriter.write
    calls = []

    def dies(self, key, members):
        calls.append(key)
        if len(calls) == 4:
            raise KeyboardInterrupt  # killed after some new tars were uploaded
        return real(self, key, members)
    monkeypatch.setattr(ShardWriter, "write", dies)
    with pytest.raises(KeyboardInterrupt):
        _publish(root, [{"clip_id": f"clip{i}", "work_shard": names[f"clip{i}"]} for i in range(6)])
    assert storage.listdir(f"{root}/shards") == first.shards and set(_published(root)) == {"clip0", "clip1"}

    # a process killed outright leaves the uploaded tars without a record: recover removes them
    storage.write_bytes_atomic(f"{root}/shards/shard-000099.tar", b"half a set")
    publishing.recover(root)
    assert storage.listdir(f"{root}/shards") == first.shards
