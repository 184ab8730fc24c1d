"""The shard writer with an object-storage output: each shard one upload, nothing half-written visible."""
from __future__ import annotations

import os
import tempfile

import pytest

from reelforge import storage
from reelforge.shards.tarscan import scan_tar
from reelforge.shards.writer import ShardWriter, ShardWriterConfig


def test_shards_appear_whole_numbering_resumes_and_an_abort_leaves_nothing(s3, bucket, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the open shard lives before its upload
    out = f"s3://{bucket}/ds/_work/shards"
    committed = []
    with ShardWriter(out, ShardWriterConfig(target_bytes=4096, max_open_seconds=0), on_commit=committed.append) as w:
        for i in range(5):
            w.write(f"k{i}", {"bin": os.urandom(1500), "json": b"{}"})
    names = [c.name for c in committed]
    assert storage.listdir(out) == names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    with storage.local_source(f"{out}/shard-000000.tar") as local:
        scan = scan_tar(local)
    assert scan.error is None and [s.key for s in scan.samples] == ["k0", "k1"]

    w = ShardWriter(out, ShardWriterConfig(target_bytes=10 ** 6))
    assert w.current_name() == "shard-000003.tar"  # numbered after what the bucket holds
    w.write("k9", {"bin": b"x"})
    w.abort()  # a worker killed mid-shard
    assert storage.listdir(out) == names and not os.listdir(tmp_path)


def test_an_upload_that_fails_is_a_one_line_write_error(s3, bucket, tmp_path, monkeypatch):
    from reelforge.shards.writer import ShardWriteError

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    w = ShardWriter(f"s3://{bucket}/ds/shards", ShardWriterConfig(target_bytes=10 ** 6))
    w.write("a", {"bin": b"x"})

    def refuse(*a, **k):
        raise PermissionError(13, "Access Denied")
    monkeypatch.setattr(storage, "commit_file", refuse)
    with pytest.raises(ShardWriteError, match=r"cannot write .*shard-000000\.tar.*Access Denied; committed before it: "
                                              r"0 shard\(s\), 0 sample\(s\)"):
        w.flush()
    assert not os.listdir(tmp_path) and storage.listdir(f"s3://{bucket}/ds/shards") == []
