"""`reelforge shards export` from object storage reads each source tar once, front to back, not one
ranged GET per sample (issue 16)."""
from __future__ import annotations

import sys
import tarfile
from pathlib import Path

from reelforge import storage
from reelforge.shards.export import export_shards
from reelforge.shards.index import build_index, read_index
from reelforge.shards.verify import verify_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))
from shard_fixtures import TEST_BUCKETS, clip_row, write_dataset  # noqa: E402


def test_export_from_s3_gets_each_tar_once(s3, bucket, tmp_path):
    clips = [clip_row(f"sq{i:02d}", 40, 40, 8, 8) if i % 3 else clip_row(f"wd{i:02d}", 64, 40, 8, 16)
             for i in range(12)]
    local = write_dataset(tmp_path / "d", clips, shard_sizes=[5, 4, 3])
    build_index(local, TEST_BUCKETS)
    src = f"s3://{bucket}/src"
    for f in sorted(local.rglob("*")):
        if f.is_file():
            storage.write_bytes_atomic(f"{src}/{f.relative_to(local).as_posix()}", f.read_bytes())
    before = len(s3.requests())
    out = tmp_path / "out"
    summary = export_shards(src, out, buckets=TEST_BUCKETS)
    gets = [p for m, p in s3.requests()[before:] if m == "GET" and "/src/shards/" in p]
    assert summary["samples"] == 12 and verify_dataset(out).ok
    assert sorted(gets) == sorted(f"/{bucket}/src/shards/shard-{i:06d}.tar" for i in range(3)), gets
    # each bucket's samples in source order; every member the same bytes as the local export's
    ref = tmp_path / "ref"
    export_shards(local, ref, buckets=TEST_BUCKETS)
    got, source = read_index(out), read_index(local)
    assert got["clip_id"].to_pylist() == read_index(ref)["clip_id"].to_pylist()
    for b in ("sq", "wide"):
        in_bucket = [r["clip_id"] for r in got.to_pylist() if r["bucket"] == b]
        assert in_bucket == [r["clip_id"] for r in source.to_pylist() if r["bucket"] == b]
    def members(tar):
        with tarfile.open(tar) as tf:
            return [(m.name, tf.extractfile(m).read()) for m in tf.getmembers()]

    names = sorted(p.name for p in (ref / "shards").glob("*.tar"))
    assert names == sorted(p.name for p in (out / "shards").glob("*.tar"))
    for name in names:
        assert members(out / "shards" / name) == members(ref / "shards" / name)
