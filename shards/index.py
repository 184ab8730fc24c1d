"""The sample index: one parquet row per sample in a dataset's shards.

``build_index`` reads tar headers (member offsets and sizes) and each sample's small JSON member, joins
the build's ``clips.parquet`` (authoritative for ``status``, ``reason`` and scores), assigns a bucket,
and writes ``DIR/index.parquet``. ``select`` filters it with a SQL-ish ``where`` so a subset can be
chosen, or exported as a new shard set, without opening a tar.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelforge import storage
from reelforge.shards.buckets import BucketTable
from reelforge.shards.query import parse_where
from reelforge.shards.spec import (CAPTION_EXT, CAPTIONS_FIELD, CLIPS_FILE, IMAGE_EXT,
                                   INDEX_FILE, INDEX_FORMAT_ID, INDEXED_EXTS, KIND_IMAGE, KIND_VIDEO, META_EXT,
                                   SHARDS_SUBDIR, VIDEO_EXT, member_column)
from reelforge.shards.tarscan import scan_tar

log = logging.getLogger(__name__)

# Columns the index owns; a JSON field or clips.parquet column of the same name never overrides them.
OWN_COLUMNS = {"key", "shard", "kind", "bucket", "caption_versions", "has_caption"} | {
    f"{member_column(e)}_{s}" for e in INDEXED_EXTS for s in ("offset", "size")}
_IGNORED_JSON = {"status", "reason", "error_message", "format", CAPTIONS_FIELD}


def resolve_index(path: str | Path) -> Path | str:
    """A dataset dir or an index file -> the index file path (a ``Path``; a URL string on object storage,
    where ``*.parquet`` names the index and anything else the dataset)."""
    if storage.is_remote(path):
        url = str(path).rstrip("/")
        return url if url.endswith(".parquet") else storage.join(url, INDEX_FILE)
    p = Path(storage.local_path(path))
    return p / INDEX_FILE if p.is_dir() else p


def dataset_root(index_path: str | Path) -> Path | str:
    """The dataset dir an index (or dataset) path belongs to: a ``Path``, or a URL string."""
    index = resolve_index(index_path)
    return storage.parent(index) if isinstance(index, str) else index.parent


def shard_path(index_path: str | Path, shard: str) -> Path | str:
    root = dataset_root(index_path)
    return storage.join(root, SHARDS_SUBDIR, shard) if isinstance(root, str) else root / SHARDS_SUBDIR / shard


def _column(values: list) -> pa.Array:
    """JSON values of one field across samples -> one typed column (mixed types become JSON text)."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64())
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values],
                    pa.string())


def _sample_row(f, shard: str, sample) -> dict:
    row = {"key": sample.key, "shard": shard, "_status": "ok", "_reason": None, "_json": {}}
    for ext in INDEXED_EXTS:
        m = sample.members.get(ext)
        col = member_column(ext)
        row[f"{col}_offset"] = m.offset if m else None
        row[f"{col}_size"] = m.size if m else None
    row["kind"] = KIND_VIDEO if VIDEO_EXT in sample.members else KIND_IMAGE if IMAGE_EXT in sample.members else None
    row["has_caption"] = CAPTION_EXT in sample.members
    if row["kind"] is None:
        row["_status"], row["_reason"] = "failed", f"no {VIDEO_EXT} or {IMAGE_EXT} member"
    meta = sample.members.get(META_EXT)
    captions: dict = {}
    if meta is not None:
        try:
            obj = json.loads(os.pread(f.fileno(), meta.size, meta.offset).decode("utf-8"))
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            captions = obj.get(CAPTIONS_FIELD) if isinstance(obj.get(CAPTIONS_FIELD), dict) else {}
            row["_json"] = {k: v for k, v in obj.items() if k not in _IGNORED_JSON and k not in OWN_COLUMNS
                            and (v is None or isinstance(v, (str, int, float, bool)))}
        except (ValueError, UnicodeDecodeError) as exc:
            row["_status"], row["_reason"] = "failed", f"bad {META_EXT} member: {exc}"
    row["caption_versions"] = ",".join(sorted(captions)) or None
    return row


def _scan_rows(shard_files: list[Path | str]) -> tuple[list[dict], list[str]]:
    """Rows of every sample in ``shard_files`` (paths, or URLs: each remote tar is fetched once to scan)."""
    rows, errors = [], []
    for shard in shard_files:
        name = storage.basename(shard)
        with storage.local_source(shard) as local:
            scan = scan_tar(local)
            with open(local, "rb") as f:
                shard_rows = [_sample_row(f, name, s) for s in scan.samples]
        for row, sample in zip(shard_rows, scan.samples):
            if sample.error:  # a refused, repeated or truncated member: pinned on its own sample by the scan
                row["_status"], row["_reason"] = "failed", sample.error[:500]
        if scan.error:
            errors.append(f"{name}: {scan.error}")
            log.warning("%s: %s", name, scan.error)
            if shard_rows and not scan.samples[-1].error:  # the tar broke off after it: it may lack members
                shard_rows[-1]["_status"], shard_rows[-1]["_reason"] = "failed", f"shard error: {scan.error}"
        rows.extend(shard_rows)
    return rows, errors


def _rows_to_table(rows: list[dict]) -> pa.Table:
    json_keys: list[str] = []
    for r in rows:
        json_keys.extend(k for k in r["_json"] if k not in json_keys)
    cols = {}
    for name in ["key", "shard", "kind", "has_caption", "caption_versions"] + [
            f"{member_column(e)}_{s}" for e in INDEXED_EXTS for s in ("offset", "size")]:
        cols[name] = _column([r[name] for r in rows]) if rows else pa.array([], pa.string())
    for k in json_keys:
        cols[k] = _column([r["_json"].get(k) for r in rows])
    cols["_status"] = pa.array([r["_status"] for r in rows], pa.string())
    cols["_reason"] = pa.array([r["_reason"] for r in rows], pa.string())
    table = pa.table(cols)
    if "clip_id" not in table.column_names:
        table = table.append_column("clip_id", table["key"])
    else:
        table = table.set_column(table.column_names.index("clip_id"), "clip_id",
                                 pc.coalesce(table["clip_id"].cast(pa.string()), table["key"]))
    for ext in INDEXED_EXTS:  # offsets/sizes are integers even when every sample lacks the member
        for s in ("offset", "size"):
            name = f"{member_column(ext)}_{s}"
            table = table.set_column(table.column_names.index(name), name, table[name].cast(pa.int64()))
    return table


def _join_clips(table: pa.Table, clips: pa.Table) -> pa.Table:
    """Left-join clips.parquet; clips columns win where both have a value.

    The join is on ``clip_id``, or on (``shard``, ``key``) when clips.parquet has a ``key`` column
    (imported shards, whose tar keys need not be unique across shards); then its clip_id wins too.
    Done with ``take`` rather than a hash join so columns of any type (lists, binary) come along.
    """
    by_member = "key" in clips.column_names and "shard" in clips.column_names
    keys = ["shard", "key"] if by_member else ["clip_id"]
    clips = clips.drop_columns([c for c in clips.column_names if c in OWN_COLUMNS and c not in keys])
    first: dict[tuple, int] = {}
    for i, k in enumerate(zip(*[clips[c].cast(pa.string()).to_pylist() for c in keys])):
        first.setdefault(k, i)  # a clip listed twice: the first row counts
    take = [first.get(k) for k in zip(*[table[c].to_pylist() for c in keys])]
    matched = clips.drop_columns([c for c in keys if c != "clip_id"]).take(pa.array(take, pa.int64()))
    out = table
    for name in matched.column_names:
        col = matched[name]
        if pa.types.is_null(col.type):
            continue
        if name in out.column_names:
            try:
                col = pc.coalesce(col, out[name].cast(col.type))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass  # types disagree: clips.parquet is authoritative
            out = out.set_column(out.column_names.index(name), name, col)
        else:
            out = out.append_column(name, col)
    return out.append_column("_in_clips", pa.array([t is not None for t in take], pa.bool_()))


def _finish_status(table: pa.Table, has_clips: bool) -> pa.Table:
    n = table.num_rows
    status = table["status"].to_pylist() if "status" in table.column_names else ["ok"] * n
    reason = table["reason"].to_pylist() if "reason" in table.column_names else [None] * n
    in_clips = table["_in_clips"].to_pylist() if "_in_clips" in table.column_names else [True] * n
    own_s, own_r = table["_status"].to_pylist(), table["_reason"].to_pylist()
    seen: dict[str, str] = {}
    for i, (cid, shard) in enumerate(zip(table["clip_id"].to_pylist(), table["shard"].to_pylist())):
        if own_s[i] != "ok":  # the shard itself is broken for this sample
            status[i], reason[i] = own_s[i], own_r[i]
        elif has_clips and not in_clips[i]:
            status[i], reason[i] = "filtered", "not in clips.parquet"
        elif status[i] is None:
            status[i] = "ok"
        if cid in seen and status[i] == "ok":
            status[i], reason[i] = "filtered", f"duplicate clip_id (first in {seen[cid]})"
        seen.setdefault(cid, shard)
    drop = [c for c in ("status", "reason", "_status", "_reason", "_in_clips") if c in table.column_names]
    return table.drop_columns(drop).append_column("status", pa.array(status, pa.string())).append_column(
        "reason", pa.array(reason, pa.string()))


def assign_buckets(table: pa.Table, buckets: BucketTable) -> pa.Array:
    def col(name):
        return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows
    return pa.array([buckets.assign(k, w, h, n, f) for k, w, h, n, f in zip(
        col("kind"), col("width"), col("height"), col("num_frames"), col("fps"))], pa.string())


def write_index(table: pa.Table, path: str | Path, buckets: BucketTable) -> Path:
    """Write atomically with the format id and bucket table in the parquet metadata."""
    meta = dict(table.schema.metadata or {})
    meta.update({b"reelforge.format": INDEX_FORMAT_ID.encode(), b"reelforge.buckets": json.dumps(buckets.to_dict()).encode()})
    with storage.staged_write(path) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)
    return storage.as_path_or_url(path)


def build_index(dataset_dir: str | Path, buckets: BucketTable | None = None) -> Path | str:
    """Scan ``DIR/shards/*.tar`` + join ``DIR/clips.parquet`` (when present) -> ``DIR/index.parquet``.

    Every sample found in a tar gets a row. ``status`` is "failed" for samples the shard cannot serve
    (bad JSON, no media member, truncated tar), otherwise clips.parquet's status ("filtered" for samples
    not listed there), or "ok" when there is no clips.parquet (imported shards).
    """
    root = str(dataset_dir)
    buckets = buckets or BucketTable()
    shard_files = storage.glob(storage.join(root, SHARDS_SUBDIR, "*.tar"))
    if not shard_files:
        raise FileNotFoundError(f"no shards under {storage.join(root, SHARDS_SUBDIR)}")
    rows, _ = _scan_rows(shard_files)
    table = _rows_to_table(rows)
    clips_path = storage.join(root, CLIPS_FILE)
    has_clips = storage.exists(clips_path)
    if has_clips:
        table = _join_clips(table, storage.read_parquet(clips_path))
    table = _finish_status(table, has_clips)
    table = table.append_column("bucket", assign_buckets(table, buckets))
    front = ["clip_id", "key", "shard", "kind", "status", "reason", "bucket"]
    table = table.select(front + [c for c in table.column_names if c not in front])
    return write_index(table, storage.join(root, INDEX_FILE), buckets)


def read_index(index_path: str | Path) -> pa.Table:
    path = resolve_index(index_path)
    if not storage.exists(path):
        raise FileNotFoundError(f"no index at {path} (run `reelforge shards index DIR` or build_index)")
    table = storage.read_parquet(path)
    fmt = (table.schema.metadata or {}).get(b"reelforge.format", b"").decode()
    if fmt != INDEX_FORMAT_ID:
        raise ValueError(f"{path}: index format {fmt!r}, expected {INDEX_FORMAT_ID!r}")
    return table


def index_buckets(index_path: str | Path) -> BucketTable:
    """The bucket table the index was built with."""
    meta = storage.read_parquet_schema(resolve_index(index_path)).metadata or {}
    return BucketTable(**json.loads(meta[b"reelforge.buckets"]))


def select(index_path: str | Path, where: str | None = None, status: str | None = "ok") -> pa.Table:
    """Rows of the index matching ``where`` (SQL-ish, see shards/query.py) and ``status`` (None: any)."""
    table = read_index(index_path)
    if status is not None:
        table = table.filter(pc.field("status") == status)
    if where:
        table = table.filter(parse_where(where, set(table.column_names)))
    return table
