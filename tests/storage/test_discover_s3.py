"""Discovering inputs on object storage: a prefix, a glob and a list file on a moto S3 server."""
from __future__ import annotations

import pytest

from reelforge import storage
from reelforge.curate.discover import discover_inputs
from reelforge.storage import StorageError


@pytest.fixture
def raw(bucket) -> str:
    url = f"s3://{bucket}/raw"
    for name in ("a.mp4", "a.txt", ".hidden.mp4", "sub/b.mkv", "sub/c.mp4", "notes.bin"):
        storage.write_bytes_atomic(f"{url}/{name}", b"x")
    return url


def test_prefix_glob_and_list_file(raw, bucket, tmp_path):
    found = discover_inputs([raw + "/"])
    assert found.paths == [f"{raw}/a.mp4", f"{raw}/notes.bin", f"{raw}/sub/b.mkv", f"{raw}/sub/c.mp4"]
    assert not found.skipped
    assert discover_inputs([f"{raw}/sub/*.mp4"]).paths == [f"{raw}/sub/c.mp4"]

    local = tmp_path / "v.mp4"
    local.write_bytes(b"v")
    listing = f"s3://{bucket}/lists/inputs.txt"
    storage.write_bytes_atomic(listing, "\n".join([f"{raw}/a.mp4", f"{raw}/gone.mp4", "nosuch://b/x.mp4",
                                                   str(local), "# a comment"]).encode())
    found = discover_inputs([f"@{listing}"])
    assert found.paths == sorted([f"{raw}/a.mp4", str(local)])
    reasons = {s["path"]: s["reason"] for s in found.skipped}
    assert reasons[f"{raw}/gone.mp4"].startswith("discover: not found (listed in")
    assert "unknown URL scheme 'nosuch'" in reasons["nosuch://b/x.mp4"]


def test_an_input_that_cannot_work_stops_before_listing(s3, bucket):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        discover_inputs([f"s3://{bucket}/raw/", "s3://no-such-bucket/raw/"])
    with pytest.raises(StorageError, match="unknown URL scheme"):
        discover_inputs(["nosuch://b/raw/"])
