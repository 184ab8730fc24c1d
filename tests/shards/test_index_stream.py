"""The index is built a batch at a time (issue 16): the same table as one batch of the whole dataset, and
memory bounded by the batch, not by the number of samples."""
from __future__ import annotations

import io
import json
import random
import tarfile
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from reelforge.shards import index_build as index
from reelforge.shards.index import build_index, read_index

from shard_fixtures import TEST_BUCKETS


def write_shards(root: Path, shards: list[list[dict]]) -> Path:
    """Tars of samples (no real media: the index never decodes). A sample is its JSON object, with
    ``_key`` (the tar key, default its clip_id) and ``_members`` (ext -> bytes, replacing the defaults)."""
    (root / "shards").mkdir(parents=True)
    for i, samples in enumerate(shards):
        with tarfile.open(root / "shards" / f"shard-{i:06d}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for s in samples:
                s = dict(s)
                key, extra = s.pop("_key", None) or s["clip_id"], s.pop("_members", {})
                members = {"mp4": b"\0" * 32, "json": json.dumps(s).encode(), "txt": b"a caption", **extra}
                for ext, data in members.items():
                    if data is None:
                        continue
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    return root


def index_of(root: Path, batch_rows: int, monkeypatch) -> pa.Table:
    monkeypatch.setattr(index, "BATCH_ROWS", batch_rows)
    build_index(root, TEST_BUCKETS)
    return pq.read_table(root / "index.parquet")


def same_as_one_batch(root: Path, monkeypatch) -> tuple[pa.Table, pa.Table]:
    whole = index_of(root, 10 ** 6, monkeypatch)
    assert pq.ParquetFile(root / "index.parquet").num_row_groups == 1
    streamed = index_of(root, 5, monkeypatch)
    assert pq.ParquetFile(root / "index.parquet").num_row_groups > 1
    assert streamed.schema.equals(whole.schema, check_metadata=True)
    assert streamed.equals(whole)
    return whole, streamed


def sample(i: int, **extra) -> dict:
    return {"clip_id": f"c{i:03d}", "width": 64, "height": 48, "num_frames": 12, "fps": 12.0, "aesthetic": 5.0,
            **extra}


def test_streamed_index_equals_one_batch(tmp_path, monkeypatch):
    """Fields whose kinds differ between batches, a cast that fails in one batch only, a clip id repeated
    in a later shard, a clips.parquet in another order and row groups, with a clip listed twice."""
    shards = []
    for s in range(9):
        rows = []
        for j in range(6):
            i = s * 6 + j
            extra = {"score": 1 if s < 4 else 1.5,                  # int64 early, float64 overall
                     "flag": True if s != 7 else 3,                 # bool, then an int: text
                     "mixed": 2 if s < 3 else 2.0 if s < 6 else "two",   # text: "2" stays "2", 2.0 stays "2.0"
                     "tag": str(i) if i != 50 else "fifty",         # clips.parquet's int64 "tag" cannot take "fifty"
                     "note": None}
            if s == 8:
                extra["late"] = i
            rows.append(sample(i, **extra))
        shards.append(rows)
    shards[5][2] = dict(shards[1][3])                     # c009 again, in a later shard: a duplicate
    shards[2][0]["_members"] = {"json": b"{not json"}     # bad JSON: failed
    shards[6][1]["_members"] = {"mp4": None}              # no media: failed
    root = write_shards(tmp_path / "d", shards)
    clips = [dict(sample(i), status="ok" if i % 7 else "filtered", reason=None if i % 7 else "aesthetic: low",
                  tag=i, aesthetic=float(i)) for i in range(54) if i not in (13, 40)]   # 13, 40: not listed
    random.Random(0).shuffle(clips)
    clips.append(dict(next(c for c in clips if c["clip_id"] == "c003"), aesthetic=-1.0))  # twice: the first counts
    pq.write_table(pa.Table.from_pylist(clips), root / "clips.parquet", row_group_size=7)

    whole, _ = same_as_one_batch(root, monkeypatch)
    rows = whole.to_pylist()
    by_id = {}
    for r in rows:
        by_id.setdefault(r["clip_id"], r)
    assert whole.schema.field("score").type == pa.float64() and whole.schema.field("flag").type == pa.string()
    assert {by_id["c000"]["mixed"], by_id["c020"]["mixed"], by_id["c040"]["mixed"]} == {"2", "2.0", "two"}
    assert by_id["c000"]["flag"] == "true" and by_id["c042"]["flag"] == "3"
    assert whole.schema.field("tag").type == pa.int64() and by_id["c013"]["tag"] is None  # no coalesce anywhere
    assert by_id["c003"]["aesthetic"] == 3.0 and by_id["c010"]["aesthetic"] == 10.0
    assert by_id["c013"]["status"] == "filtered" and by_id["c013"]["reason"] == "not in clips.parquet"
    assert by_id["c014"]["status"] == "filtered" and by_id["c014"]["reason"] == "aesthetic: low"
    assert by_id["c012"]["status"] == "failed" and "bad json" in by_id["c012"]["reason"]
    assert by_id["c037"]["status"] == "failed"
    dup = [r for r in rows if r["clip_id"] == "c009"]
    assert [(r["shard"], r["status"]) for r in dup] == [("shard-000001.tar", "ok"), ("shard-000005.tar", "filtered")]
    assert dup[1]["reason"] == "duplicate clip_id (first in shard-000001.tar)"
    assert [r["late"] for r in rows[-6:]] == list(range(48, 54)) and rows[0]["late"] is None
    assert read_index(root).num_rows == 54


def test_streamed_index_joins_members_and_finds_repeats_after_the_join(tmp_path, monkeypatch):
    """Imported shards: clips.parquet joins on (shard, key) and its clip_id wins, so two tar keys can become
    one clip id only after the join; without a clips.parquet every sample is ok."""
    shards = [[{"_key": f"{s}{j:04d}", "clip_id": f"{s}{j:04d}", "width": 40, "height": 40} for j in range(8)]
              for s in "ab"]
    root = write_shards(tmp_path / "d", shards)
    clips = [{"shard": f"shard-00000{k}.tar", "key": f"{s}{j:04d}", "clip_id": f"v{j:04d}" if j == 6 else f"{s}-{j}",
              "aesthetic": float(j)} for k, s in enumerate("ab") for j in range(8)]
    pq.write_table(pa.Table.from_pylist(clips[::-1]), root / "clips.parquet", row_group_size=3)
    whole, _ = same_as_one_batch(root, monkeypatch)
    rows = {(r["shard"], r["key"]): r for r in whole.to_pylist()}
    assert rows[("shard-000000.tar", "a0002")]["clip_id"] == "a-2"
    assert rows[("shard-000000.tar", "a0006")]["status"] == "ok"
    assert rows[("shard-000001.tar", "b0006")]["status"] == "filtered"
    assert rows[("shard-000001.tar", "b0006")]["reason"] == "duplicate clip_id (first in shard-000000.tar)"
    (root / "clips.parquet").unlink()
    whole, _ = same_as_one_batch(root, monkeypatch)
    assert set(whole["status"].to_pylist()) == {"ok"}


def _peak_index_bytes(root: Path) -> int:
    tracemalloc.start()
    try:
        build_index(root, TEST_BUCKETS)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_index_memory_is_bounded_by_a_batch(tmp_path, monkeypatch):
    """4x the samples, the same peak of Python memory: what is held is a batch (plus 8-16 bytes a row)."""
    fields = {f"score_{k}": 0.5 for k in range(20)}
    monkeypatch.setattr(index, "BATCH_ROWS", 100)
    roots = {}
    for n in (300, 1200):
        roots[n] = write_shards(tmp_path / f"d{n}", [[sample(s * 100 + j, **fields) for j in range(100)]
                                                     for s in range(n // 100)])
        pq.write_table(pa.Table.from_pylist([dict(sample(i), status="ok") for i in range(n)]),
                       roots[n] / "clips.parquet", row_group_size=256)
    build_index(roots[300], TEST_BUCKETS)  # warm: imports and caches are not the index's
    peaks = {n: _peak_index_bytes(root) for n, root in roots.items()}
    assert read_index(roots[1200]).num_rows == 1200
    # the whole-table build held every row as dicts: ~4.5 KB a sample here, +4 MB for 900 more (measured)
    assert peaks[1200] - peaks[300] < 200_000, peaks
