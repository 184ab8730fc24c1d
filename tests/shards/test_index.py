from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from reelforge.shards.index import build_index, index_buckets, read_index, select
from reelforge.shards.query import QueryError, parse_where
from reelforge.shards.tarscan import read_member, scan_tar

from shard_fixtures import TEST_BUCKETS, clip_row, write_dataset


def test_index_has_every_sample_with_offsets(tiny_dataset):
    t = read_index(tiny_dataset)
    assert t.num_rows == 12 + 9 + 8
    rows = {r["clip_id"]: r for r in t.to_pylist()}
    # offsets point at the member bytes
    r = rows["sq03"]
    data = read_member(tiny_dataset / "shards" / r["shard"], r["mp4_offset"], r["mp4_size"])
    assert data[4:8] == b"ftyp"
    txt = read_member(tiny_dataset / "shards" / r["shard"], r["txt_offset"], r["txt_size"])
    assert txt == b"caption of sq03"
    assert rows["im02"]["kind"] == "image" and rows["im02"]["mp4_offset"] is None and rows["im02"]["jpg_size"] > 0
    assert {rows[c]["bucket"] for c in rows if c.startswith("sq")} == {"sq"}
    assert {rows[c]["bucket"] for c in rows if c.startswith("wd")} == {"wide"}
    assert {rows[c]["bucket"] for c in rows if c.startswith("im")} == {"img"}
    assert index_buckets(tiny_dataset).to_dict() == TEST_BUCKETS.to_dict()


def test_select_queries(tiny_dataset):
    assert select(tiny_dataset / "index.parquet", "kind = 'image'").num_rows == 8
    assert select(tiny_dataset, "fps >= 16 AND duration_s BETWEEN 0.5 AND 1").num_rows == 9
    assert select(tiny_dataset, "bucket IN ('sq', 'img') AND NOT clip_id = 'sq00'").num_rows == 19
    with pytest.raises(QueryError, match="unknown column"):
        select(tiny_dataset, "nope > 1")
    with pytest.raises(QueryError):
        parse_where("aesthetic >=")


def test_clips_status_wins_and_orphans_are_filtered(tmp_path):
    clips = [clip_row("a", 48, 48, 12, 8), clip_row("b", 48, 48, 12, 8, status="filtered"),
             clip_row("c", 48, 48, 12, 8)]
    root = write_dataset(tmp_path / "d", clips)
    # drop 'c' from clips.parquet: it is in a shard but the build never listed it
    t = pq.read_table(root / "clips.parquet")
    pq.write_table(t.slice(0, 2), root / "clips.parquet")
    build_index(root, TEST_BUCKETS)
    status = {r["clip_id"]: (r["status"], r["reason"]) for r in read_index(root).to_pylist()}
    assert status["a"] == ("ok", None)
    assert status["b"][0] == "filtered"
    assert status["c"] == ("filtered", "not in clips.parquet")
    assert [r["clip_id"] for r in select(root).to_pylist()] == ["a"]


def test_index_without_clips_parquet_uses_json(tmp_path):
    root = write_dataset(tmp_path / "d", [clip_row("a", 64, 40, 12, 16)])
    (root / "clips.parquet").unlink()
    build_index(root, TEST_BUCKETS)
    (row,) = read_index(root).to_pylist()
    assert (row["width"], row["height"], row["num_frames"], row["status"], row["bucket"]) == (64, 40, 12, "ok", "wide")


def test_truncated_tar_is_reported_not_raised(tmp_path):
    root = write_dataset(tmp_path / "d", [clip_row(f"c{i}", 48, 48, 12, 8) for i in range(3)])
    tar = root / "shards" / "shard-000000.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    scan = scan_tar(tar)
    assert scan.error and "truncated" in scan.error
    build_index(root, TEST_BUCKETS)
    rows = read_index(root).to_pylist()
    assert rows and rows[-1]["status"] == "failed"


def test_clips_columns_of_any_type_are_carried(tmp_path):
    import pyarrow as pa

    from reelforge.shards.cli import main
    root = write_dataset(tmp_path / "d", [clip_row("a", 40, 40, 12, 8), clip_row("b", 40, 40, 12, 8)])
    t = pq.read_table(root / "clips.parquet")
    t = t.append_column("tags", pa.array([["x", "y"], []], pa.list_(pa.string())))
    t = t.append_column("thumb", pa.array([b"\x00\x01", None], pa.binary()))
    t = t.set_column(t.column_names.index("aesthetic"), "aesthetic", pa.array([7.5, 3.0]))
    pq.write_table(t, root / "clips.parquet")
    assert main(["shards", "index", str(root)]) == 0
    rows = {r["clip_id"]: r for r in read_index(root).to_pylist()}
    assert rows["a"]["tags"] == ["x", "y"] and rows["a"]["thumb"] == b"\x00\x01"
    assert rows["b"]["aesthetic"] == 3.0  # clips.parquet wins over the JSON member's 5.0
    assert [r["clip_id"] for r in select(root, "aesthetic >= 5").to_pylist()] == ["a"]
