"""``reelforge shards stats``: what a dataset holds, from the index alone (no tar is opened)."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pyarrow.compute as pc

from reelforge import storage
from reelforge.shards.buckets import BucketTable
from reelforge.shards.index import dataset_root, index_buckets, read_index, resolve_index
from reelforge.shards.spec import SHARDS_SUBDIR

# Numeric columns that describe the clip rather than score it.
_NOT_SCORES = {"start_s", "end_s", "start_frame", "end_frame", "num_frames", "fps", "width", "height"}


def dataset_stats(dataset: str | Path, buckets: BucketTable | None = None) -> dict:
    """Counts by status/kind/bucket, batches per epoch per bucket, hours, caption coverage, numeric summaries.

    Buckets default to the table the index was built with; pass another table to preview a re-bucketing.
    """
    index_path = resolve_index(dataset)
    table = read_index(index_path)
    if buckets is not None:
        from reelforge.shards.index import assign_buckets
        table = table.set_column(table.column_names.index("bucket"), "bucket", assign_buckets(table, buckets))
    buckets = buckets or index_buckets(index_path)
    ok = table.filter(pc.field("status") == "ok")
    on_disk = storage.file_sizes(storage.join(dataset_root(index_path), SHARDS_SUBDIR))  # one listing on s3
    shard_bytes = [on_disk[s] for s in set(table["shard"].to_pylist()) if s in on_disk]
    per_bucket = Counter(ok["bucket"].to_pylist())
    out = {
        "samples": table.num_rows,
        "status": dict(Counter(table["status"].to_pylist())),
        "reasons": dict(Counter(r for r in table["reason"].to_pylist() if r).most_common(10)),
        "kind": dict(Counter(ok["kind"].to_pylist())),
        "shards": len(shard_bytes),
        "shard_mb": {"min": min(shard_bytes, default=0) / 2**20, "mean": sum(shard_bytes) / max(1, len(shard_bytes)) / 2**20,
                     "max": max(shard_bytes, default=0) / 2**20},
        "hours_ok": (pc.sum(ok["duration_s"]).as_py() or 0.0) / 3600 if "duration_s" in ok.column_names else None,
        "captioned_ok": pc.sum(ok["has_caption"].cast("int64")).as_py() or 0,
        "unbucketed_ok": per_bucket.pop(None, 0),
        # batches per epoch over all ranks: "batches" with the reader's default remainder=pad, "full" with drop
        "buckets": {name: {"samples": n, "batch_size": buckets[name].batch_size if name in buckets else None,
                           "batches": -(-n // buckets[name].batch_size) if name in buckets else None,
                           "full_batches": n // buckets[name].batch_size if name in buckets else None}
                    for name, n in sorted(per_bucket.items())},
        "numeric": {},  # min/mean/max of every numeric column of ok samples (scores and measurements)
    }
    for field in ok.schema:
        if field.name in _NOT_SCORES or field.name.endswith(("_offset", "_size")):
            continue
        if str(field.type) in ("double", "float", "int64", "int32"):
            col = ok[field.name].cast("double")
            valid = [v for v in col.to_pylist() if v is not None and not math.isnan(v)]
            if valid:
                out["numeric"][field.name] = {"n": len(valid), "min": min(valid), "mean": sum(valid) / len(valid),
                                             "max": max(valid)}
    return out
