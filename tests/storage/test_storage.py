"""reelforge/storage.py: one code path for local disk and object storage (the s3 half on a moto server)."""
from __future__ import annotations

import os
import threading

import pytest

from reelforge import storage
from reelforge.storage import StorageError


# ---- local disk ----------------------------------------------------------------------------------------

def test_local_write_is_atomic_and_leaves_no_tmp(tmp_path):
    dest = tmp_path / "sub" / "x.parquet"
    storage.write_bytes_atomic(dest, b"one")
    storage.write_bytes_atomic(f"file://{dest}", b"two")
    assert dest.read_bytes() == b"two"
    assert sorted(os.listdir(dest.parent)) == ["x.parquet"]
    assert storage.read_bytes(dest, 1, 3) == b"wo"


def test_staged_write_commits_on_success_and_removes_tmp_on_error(tmp_path):
    dest = tmp_path / "a.tar"
    with pytest.raises(RuntimeError):
        with storage.staged_write(dest) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed mid-write")
    assert not os.listdir(tmp_path)  # neither the target nor its .tmp
    with storage.staged_write(dest) as tmp:
        open(tmp, "wb").write(b"whole")
    assert dest.read_bytes() == b"whole" and os.listdir(tmp_path) == ["a.tar"]


def test_join_parent_listdir_glob_remove_local(tmp_path):
    d = storage.join(tmp_path, "shards")
    storage.makedirs(d)
    for n in ("b.tar", "a.tar", "c.txt"):
        storage.write_bytes_atomic(storage.join(d, n), b"x")
    assert storage.listdir(d) == ["a.tar", "b.tar", "c.txt"]
    assert [storage.basename(p) for p in storage.glob(storage.join(d, "*.tar"))] == ["a.tar", "b.tar"]
    assert storage.parent(storage.join(d, "a.tar")) == str(tmp_path / "shards")
    storage.remove(storage.join(d, "a.tar"))
    storage.remove(storage.join(d, "missing"))  # missing_ok
    with pytest.raises(IsADirectoryError):
        storage.remove(d)
    storage.remove(d, recursive=True)
    assert not storage.exists(d) and storage.listdir(d) == []


def test_remote_names():
    assert storage.join("s3://b/ds", "shards", "x.tar") == "s3://b/ds/shards/x.tar"
    assert storage.join("s3://b/ds/", "x") == "s3://b/ds/x"
    assert storage.parent("s3://b/ds/shards/") == "s3://b/ds"
    assert storage.is_remote("s3://b/x") and storage.is_remote("memory://x")
    assert not storage.is_remote("/data/x") and not storage.is_remote("file:///data/x")
    assert storage.local_path("file:///data/x") == "/data/x"


def test_local_source_of_a_local_path_is_the_path(tmp_path):
    p = tmp_path / "v.mp4"
    p.write_bytes(b"v")
    with storage.local_source(f"file://{p}") as local:
        assert local == str(p)
    assert p.exists()


# ---- checks before work --------------------------------------------------------------------------------

@pytest.mark.parametrize("url, words", [
    ("nosuch://b/ds", "unknown URL scheme 'nosuch'"),
    ("https://example.com/ds", "read-only"),
    ("memory://ds", "lives in one process"),
    ("gcs://bucket/ds", "gcs:// filesystem is not installed"),
])
def test_bad_output_urls_fail_with_one_line(url, words):
    with pytest.raises(StorageError) as err:
        storage.check_output_url(url)
    assert words in str(err.value) and "\n" not in str(err.value) and url in str(err.value)


def test_good_local_and_input_urls_pass(tmp_path):
    storage.check_output_url(tmp_path / "new" / "ds")
    storage.check_input_url(f"@{tmp_path}/list.txt")
    storage.check_input_url("https://example.com/v.mp4")  # http can be read, and is not contacted here
    with pytest.raises(StorageError, match="unknown URL scheme"):
        storage.check_input_url("@nosuch://b/list.txt")


# ---- object storage (moto) -----------------------------------------------------------------------------

def test_s3_round_trip(s3, bucket):
    base = f"s3://{bucket}/ds"
    storage.check_output_url(base)
    storage.write_bytes_atomic(storage.join(base, "a.json"), b'{"a": 1}')
    src = s3.log_path.parent / "local.tar"
    src.write_bytes(b"t" * 5000)
    storage.commit_file(src, storage.join(base, "shards", "s-000000.tar"))
    assert not src.exists()  # uploaded, the local copy gone
    assert storage.listdir(base) == ["a.json", "shards"]
    assert storage.glob(f"{base}/shards/*.tar") == [f"{base}/shards/s-000000.tar"]
    assert storage.read_bytes(storage.join(base, "a.json")) == b'{"a": 1}'
    assert storage.read_bytes(f"{base}/shards/s-000000.tar", 10, 20) == b"t" * 10
    assert storage.size(f"{base}/shards/s-000000.tar") == 5000 and storage.isdir(f"{base}/shards")
    storage.remove(f"{base}/shards", recursive=True)
    assert not storage.exists(f"{base}/shards/s-000000.tar")


def test_s3_staged_write_that_fails_leaves_no_object(s3, bucket):
    dest = f"s3://{bucket}/ds/x.tar"
    with pytest.raises(RuntimeError):
        with storage.staged_write(dest) as tmp:
            open(tmp, "wb").write(b"half")
            raise RuntimeError("killed")
    assert not storage.exists(dest) and not os.path.exists(tmp)


def test_missing_bucket_is_a_clear_error_before_work(s3):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.check_output_url("s3://no-such-bucket/ds")
    with pytest.raises(StorageError, match="does not exist"):
        storage.check_input_url("s3://no-such-bucket/raw/")


def test_local_source_downloads_once_for_nested_and_concurrent_users(s3, bucket):
    url = f"s3://{bucket}/raw/v.mp4"
    storage.write_bytes_atomic(url, b"v" * 100_000)
    key = f"/{bucket}/raw/v.mp4"
    before = [r for r in s3.requests() if r == ("GET", key)]
    seen = []

    def use():
        with storage.local_source(url) as p:
            seen.append(p)

    with storage.local_source(url) as outer:
        assert os.path.getsize(outer) == 100_000
        with storage.local_source(url) as inner:
            assert inner == outer
        threads = [threading.Thread(target=use) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert os.path.exists(outer)  # the inner users leaving does not remove the outer's copy
    assert set(seen) == {outer} and not os.path.exists(outer)
    gets = [r for r in s3.requests() if r == ("GET", key)]
    assert len(gets) - len(before) == 1


def test_local_source_of_a_missing_object_raises_and_leaves_nothing(s3, bucket, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    with pytest.raises(FileNotFoundError):
        with storage.local_source(f"s3://{bucket}/raw/none.mp4"):
            pass
    assert not os.listdir(tmp_path)


def test_create_exclusive_local_and_s3(s3, bucket, tmp_path):
    for url in (str(tmp_path / "out" / ".lock"), f"s3://{bucket}/ds/.lock"):
        assert storage.create_exclusive(url, b"first")
        assert not storage.create_exclusive(url, b"second")
        assert storage.read_bytes(url) == b"first"
        storage.remove(url)
        assert storage.create_exclusive(url, b"third")


def test_cli_names_a_bad_url_in_one_line(capsys):
    from reelforge.cli import main

    assert main(["shards", "verify", "nosuch://b/ds"]) == 2
    err = capsys.readouterr().err
    assert err == "reelforge: input nosuch://b/ds: unknown URL scheme 'nosuch' (fsspec has no filesystem for " \
                  "it; use a local path or e.g. s3://bucket/prefix)\n"
