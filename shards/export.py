"""Write a bucket-grouped training shard set from an index query (``reelforge shards export``).

``DATASET`` and ``OUT`` may be local paths or URLs (``s3://…``): the selected samples are read source tar
by source tar, front to back at the index's offsets (on object storage each tar is streamed once, in
read-ahead blocks, not fetched with a GET per sample); each shard and table is written in one atomic step
(``reelforge.storage``). Within a bucket, samples keep their source order.

Output: ``OUT/shards/<bucket>-NNNNNN.tar`` (one bucket per shard, so a rank reads one bucket at a time),
``OUT/clips.parquet`` (the selected rows) and ``OUT/index.parquet``. Each sample's JSON is the source JSON
updated with the index row's scalar metadata (scores computed after the build included) and the format
id, so imported samples come out spec-conformant.

Captions: with a caption store (``captions.parquet``), ``<key>.txt`` is ``caption_version`` (default: the
dataset's default version), the JSON ``captions`` object holds every ok version of the clip and
``caption_source`` names the one in ``.txt``; a clip without that version gets no ``.txt`` (counted in
``missing_caption_version``, never another version in its place). The store's rows of the exported clips
go along to ``OUT/captions.parquet`` with that version as default. Without a store the sample's own
captions (``.txt`` under its ``caption_source``, JSON ``captions``) are the versions to choose from.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from reelforge import storage
from reelforge.shards.access import ShardFiles, read_sample
from reelforge.shards import captions as store
from reelforge.shards.buckets import BucketTable
from reelforge.shards.index import (OWN_COLUMNS, assign_buckets, build_index, dataset_root, index_buckets, resolve_index,
                                   select)
from reelforge.shards.spec import (CAPTION_EXT, CAPTION_SOURCE_FIELD, CAPTIONS_FIELD, CLIPS_FILE, DEFAULT_TARGET_BYTES,
                                   FORMAT_ID, META_EXT, SHARDS_SUBDIR)
from reelforge.shards.writer import ShardWriter, ShardWriterConfig

_NOT_IN_JSON = OWN_COLUMNS | {"status", "reason", "source_status"}


def export_shards(dataset: str | Path, out_dir: str | Path, where: str | None = None,
                  buckets: BucketTable | None = None, target_bytes: int = DEFAULT_TARGET_BYTES,
                  caption_version: str | None = None) -> dict:
    storage.check_input_url(dataset)
    storage.check_output_url(out_dir)   # a scheme or bucket that cannot work stops before anything is read
    index_path = resolve_index(dataset)
    src = dataset_root(index_path)   # a local dir or a URL: samples are read by index offset either way
    by_clip = store.captions_by_clip(src) if store.has_store(src) else None
    if by_clip is not None:
        known = store.versions(src)
        caption_version = caption_version or store.default_version(src)
        if caption_version is not None and caption_version not in known:
            raise ValueError(f"no caption version {caption_version!r} in {src} (have {sorted(known)})")
    out = storage.as_path_or_url(out_dir)   # a Path, or a URL: shards, tables and captions go through storage
    if storage.same_location(out, src):
        raise ValueError("export must write to a new dataset dir, not the source")
    if storage.listdir(storage.join(out, SHARDS_SUBDIR)):
        raise FileExistsError(f"{storage.join(out, SHARDS_SUBDIR)} is not empty")
    buckets = buckets or index_buckets(index_path)
    table = select(index_path, where)
    table = table.set_column(table.column_names.index("bucket"), "bucket", assign_buckets(table, buckets))
    unbucketed = table.filter(pc.is_null(table["bucket"])).num_rows
    table = table.filter(pc.is_valid(table["bucket"]))
    # each source tar once, front to back (the index lists a tar's samples in tar order): one writer per
    # bucket stays open meanwhile
    table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64())).sort_by(
        [("shard", "ascending"), ("_row", "ascending")]).drop_columns(["_row"])
    meta_cols = [c for c in table.column_names if c not in _NOT_IN_JSON]
    # tars front to back: on object storage each is read through one file with read-ahead, a few large
    # GETs per tar instead of one per sample
    out_rows, files, missing_caption = [], ShardFiles(sequential=True), 0
    writers: dict[str, ShardWriter] = {}
    try:
        for row in table.to_pylist():
            bucket = row["bucket"]
            if bucket not in writers:
                writers[bucket] = ShardWriter(storage.join(out, SHARDS_SUBDIR),
                                              ShardWriterConfig(target_bytes, prefix=bucket))
            members = read_sample(src, row, files=files)
            obj = json.loads(members[META_EXT]) if META_EXT in members else {}
            obj.update({c: row[c] for c in meta_cols if row[c] is not None})
            obj["format"] = FORMAT_ID
            if caption_version is not None:
                caps = by_clip.get(row["clip_id"], {}) if by_clip is not None else _own_captions(obj, members, row)
                members.pop(CAPTION_EXT, None)
                if caption_version in caps:
                    members[CAPTION_EXT] = caps[caption_version].encode("utf-8")
                else:
                    missing_caption += 1
                obj[CAPTIONS_FIELD] = caps
                obj[CAPTION_SOURCE_FIELD] = caption_version if caption_version in caps else None
            members[META_EXT] = json.dumps(obj).encode()
            shard = writers[bucket].write(row["clip_id"], members)
            out_rows.append({**{c: row[c] for c in meta_cols}, "shard": shard, "status": "ok", "reason": None})
    finally:
        files.close()
    for w in writers.values():
        w.close()
    if not out_rows:
        raise ValueError(f"the query selected no bucketed sample (where={where!r}, {unbucketed} unbucketed)")
    storage.write_parquet(pa.Table.from_pylist(out_rows), storage.join(out, CLIPS_FILE))
    if by_clip is not None:
        exported = {r["clip_id"] for r in out_rows}
        rows = [r for r in store.all_rows(src) if r["clip_id"] in exported]
        for version in sorted({r["version"] for r in rows}):
            store.write_part(out, version, [r for r in rows if r["version"] == version])
        store.merge(out, default=caption_version)
    index = build_index(out, buckets)
    return {"samples": len(out_rows), "unbucketed_skipped": unbucketed,
            "shards": sum(len(w.committed) for w in writers.values()),
            "buckets": dict(Counter(r["bucket"] for r in table.to_pylist())), "index": str(index),
            "caption_version": caption_version, "missing_caption_version": missing_caption}


def _own_captions(obj: dict, members: dict, row: dict) -> dict[str, str]:
    """A sample's caption versions when the dataset has no store: JSON ``captions`` and ``.txt``."""
    caps = {k: v for k, v in (obj.get(CAPTIONS_FIELD) or {}).items() if isinstance(v, str)}
    if CAPTION_EXT in members:
        caps.setdefault(row.get(CAPTION_SOURCE_FIELD) or "txt", members[CAPTION_EXT].decode("utf-8", "replace"))
    return caps
