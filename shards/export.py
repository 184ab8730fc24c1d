"""Write a bucket-grouped training shard set from an index query (``reelforge shards export``).

Output: ``OUT/shards/<bucket>-NNNNNN.tar`` (one bucket per shard, so a rank reads one bucket at a time),
``OUT/clips.parquet`` (the selected rows) and ``OUT/index.parquet``. Each sample's JSON is the source JSON
updated with the index row's scalar metadata (scores computed after the build included) and the format
id, so imported samples come out spec-conformant.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelforge.shards.access import ShardFiles, read_sample
from reelforge.shards.buckets import BucketTable
from reelforge.shards.index import OWN_COLUMNS, assign_buckets, build_index, index_buckets, resolve_index, select
from reelforge.shards.spec import CLIPS_FILE, DEFAULT_TARGET_BYTES, FORMAT_ID, META_EXT, SHARDS_SUBDIR
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
    meta_cols = [c for c in table.column_names if c not in _NOT_IN_JSON]
    out_rows, files = [], ShardFiles()
    writers: dict[str, ShardWriter] = {}
    try:
        for row in table.to_pylist():
            bucket = row["bucket"]
            if bucket not in writers:
                writers[bucket] = ShardWriter(out / SHARDS_SUBDIR, ShardWriterConfig(target_bytes, prefix=bucket))
            members = read_sample(index_path.parent, row, files=files)
            obj = json.loads(members[META_EXT]) if META_EXT in members else {}
            obj.update({c: row[c] for c in meta_cols if row[c] is not None})
            obj["format"] = FORMAT_ID
            members[META_EXT] = json.dumps(obj).encode()
            shard = writers[bucket].write(row["clip_id"], members)
            out_rows.append({**{c: row[c] for c in meta_cols}, "shard": shard, "status": "ok", "reason": None})
    finally:
        files.close()
    for w in writers.values():
        w.close()
    if not out_rows:
        raise ValueError(f"the query selected no bucketed sample (where={where!r}, {unbucketed} unbucketed)")
    pq.write_table(pa.Table.from_pylist(out_rows), out / CLIPS_FILE)
    build_index(out, buckets)
    return {"samples": len(out_rows), "unbucketed_skipped": unbucketed,
            "shards": sum(len(w.committed) for w in writers.values()),
            "buckets": dict(Counter(r["bucket"] for r in table.to_pylist())), "index": str(out / "index.parquet")}
