"""Write a bucket-grouped training shard set from an index query (``reelforge shards export``).

Output: ``OUT/shards/<bucket>-NNNNNN.tar`` (one bucket per shard, so a rank reads one bucket at a time),
``OUT/clips.parquet`` (the selected rows) and ``OUT/index.parquet``. Each sample's JSON is the source JSON
updated with the index row's scalar metadata (scores computed after the build included) and the format
id, so imported samples come out spec-conformant.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelforge.shards.buckets import BucketTable
from reelforge.shards.index import OWN_COLUMNS, assign_buckets, build_index, index_buckets, resolve_index, select
from reelforge.shards.spec import (CLIPS_FILE, DEFAULT_TARGET_BYTES, FORMAT_ID, INDEXED_EXTS, META_EXT,
                                   SHARDS_SUBDIR, member_column)
from reelforge.shards.writer import ShardWriter, ShardWriterConfig

_NOT_IN_JSON = OWN_COLUMNS | {"status", "reason", "source_status"}


def export_shards(dataset: str | Path, out_dir: str | Path, where: str | None = None,
                  buckets: BucketTable | None = None, target_bytes: int = DEFAULT_TARGET_BYTES) -> dict:
    index_path = resolve_index(dataset)
    out = Path(out_dir)
    if out.resolve() == index_path.parent.resolve():
        raise ValueError("export must write to a new dataset dir, not the source")
    if (out / SHARDS_SUBDIR).exists() and any((out / SHARDS_SUBDIR).iterdir()):
        raise FileExistsError(f"{out / SHARDS_SUBDIR} is not empty")
    buckets = buckets or index_buckets(index_path)
    table = select(index_path, where)
    table = table.set_column(table.column_names.index("bucket"), "bucket", assign_buckets(table, buckets))
    unbucketed = table.filter(pc.is_null(table["bucket"])).num_rows
    table = table.filter(pc.is_valid(table["bucket"])).sort_by([("bucket", "ascending"), ("clip_id", "ascending")])
    src_dir = index_path.parent / SHARDS_SUBDIR
    meta_cols = [c for c in table.column_names if c not in _NOT_IN_JSON]
    out_rows, files = [], {}
    writers: dict[str, ShardWriter] = {}
    try:
        for row in table.to_pylist():
            bucket = row["bucket"]
            if bucket not in writers:
                writers[bucket] = ShardWriter(out / SHARDS_SUBDIR, ShardWriterConfig(target_bytes, prefix=bucket))
            if row["shard"] not in files:
                files[row["shard"]] = os.open(src_dir / row["shard"], os.O_RDONLY)
            fd = files[row["shard"]]
            members = {}
            for ext in INDEXED_EXTS:
                col = member_column(ext)
                if row[f"{col}_offset"] is not None:
                    members[ext] = os.pread(fd, row[f"{col}_size"], row[f"{col}_offset"])
            obj = json.loads(members[META_EXT]) if META_EXT in members else {}
            obj.update({c: row[c] for c in meta_cols if row[c] is not None})
            obj["format"] = FORMAT_ID
            members[META_EXT] = json.dumps(obj).encode()
            shard = writers[bucket].write(row["clip_id"], members)
            out_rows.append({**{c: row[c] for c in meta_cols}, "shard": shard, "status": "ok", "reason": None})
    finally:
        for fd in files.values():
            os.close(fd)
    for w in writers.values():
        w.close()
    if not out_rows:
        raise ValueError(f"the query selected no bucketed sample (where={where!r}, {unbucketed} unbucketed)")
    pq.write_table(pa.Table.from_pylist(out_rows), out / CLIPS_FILE)
    build_index(out, buckets)
    return {"samples": len(out_rows), "unbucketed_skipped": unbucketed,
            "shards": sum(len(w.committed) for w in writers.values()),
            "buckets": dict(Counter(r["bucket"] for r in table.to_pylist())), "index": str(out / "index.parquet")}
