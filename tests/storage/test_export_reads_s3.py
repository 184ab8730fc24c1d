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


def test_sequential_shard_files_read_a_tar_in_one_get_whatever_its_member_order(s3, bucket, tmp_path):
    """Members are fetched in tar order: a tar another tool wrote JSON first still costs one GET, and the
    sequential mode survives pickling into a worker."""
    import io
    import pickle

    from reelforge.shards.access import ShardFiles, read_sample
    from reelforge.shards.tarscan import scan_tar

    members = [("json", b'{"clip_id": "a"}'), ("mp4", b"\1" * 3000), ("txt", b"a caption")]
    tar = tmp_path / "shard-000000.tar"
    with tarfile.open(tar, "w", format=tarfile.USTAR_FORMAT) as tf:
        for key in ("a", "b"):
            for ext, data in members:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    rows = []
    for s in scan_tar(tar).samples:
        row = {"shard": tar.name, "key": s.key}
        for ext in ("mp4", "jpg", "json", "txt", "latent.npy"):
            m = s.members.get(ext)
            row[f"{ext.split('.')[0]}_offset"], row[f"{ext.split('.')[0]}_size"] = (m.offset, m.size) if m else (None, None)
        rows.append(row)
    storage.write_bytes_atomic(f"s3://{bucket}/ds/shards/{tar.name}", tar.read_bytes())
    files = pickle.loads(pickle.dumps(ShardFiles(sequential=True)))
    before = len(s3.requests())
    try:
        got = [read_sample(f"s3://{bucket}/ds", row, files=files) for row in rows]
    finally:
        files.close()
    assert got == [{"mp4": b"\1" * 3000, "json": b'{"clip_id": "a"}', "txt": b"a caption"}] * 2
    assert list(got[0]) == ["mp4", "json", "txt"]   # in the caller's order, whatever the tar's
    gets = [p for m, p in s3.requests()[before:] if m == "GET"]
    assert gets == [f"/{bucket}/ds/shards/{tar.name}"], gets
