"""Building the sample index: ``DIR/shards/*.tar`` (+ ``DIR/clips.parquet``) -> ``DIR/index.parquet``.

``build_index`` reads tar headers (member offsets and sizes) and each sample's small JSON member, joins
the build's ``clips.parquet`` (authoritative for ``status``, ``reason`` and scores), assigns a bucket,
and writes the index a row group at a time. What the index is and how it is read: ``shards/index.py``
(which re-exports ``build_index``).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelforge import storage
from reelforge.curate.malloc import release_arrow
from reelforge.shards.buckets import BucketTable, assign_buckets
from reelforge.shards.spec import (CAPTION_EXT, CAPTIONS_FIELD, CLIPS_FILE, IMAGE_EXT, INDEX_FILE, INDEX_FORMAT_ID,
                                   INDEXED_EXTS, KIND_IMAGE, KIND_VIDEO, META_EXT, OWN_COLUMNS, SHARDS_SUBDIR,
                                   VIDEO_EXT, member_column)
from reelforge.shards.tarscan import scan_tar

log = logging.getLogger(__name__)

_IGNORED_JSON = {"status", "reason", "error_message", "format", CAPTIONS_FIELD}
# the columns every sample has before its JSON fields, typed the same in every batch
_BASE = ["key", "shard", "kind", "has_caption", "caption_versions"] + [
    f"{member_column(e)}_{s}" for e in INDEXED_EXTS for s in ("offset", "size")]
_SCAN_SCHEMA = pa.schema([(c, pa.bool_() if c == "has_caption" else pa.int64() if c.endswith(("_offset", "_size"))
                           else pa.string()) for c in _BASE] + [
    ("_status", pa.string()), ("_reason", pa.string()), ("_json", pa.string())])
_FRONT = ["clip_id", "key", "shard", "kind", "status", "reason", "bucket"]
# samples per batch: the index build's working set, and one row group of index.parquet (read when called,
# so a test can make it small)
BATCH_ROWS = 1024


def _kind(v) -> str | None:
    """The ``_column`` kind of one JSON value (None for a null)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "text"


def _merge(a: str | None, b: str | None) -> str | None:
    """The kind of a column holding values of kinds ``a`` and ``b``: the same rule ``_column`` applies to
    all of them at once, so a dataset's kinds can be merged a batch at a time."""
    if a is None or a == b:
        return b
    if b is None:
        return a
    return "float" if {a, b} == {"int", "float"} else "text"


def _column(values: list, kind: str | None = None) -> pa.Array:
    """JSON values of one field across samples -> one typed column: all bools -> bool, all integers ->
    int64, numbers -> float64, anything else (mixed) -> text with non-strings as JSON. ``kind`` (from
    ``_merge`` over the whole dataset) overrides what these values alone would give."""
    if kind is None:
        for v in values:
            kind = _merge(kind, _kind(v))
    if kind == "bool":
        return pa.array(values, pa.bool_())
    if kind == "int":
        return pa.array(values, pa.int64())
    if kind == "float":
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


def _shard_rows(shard: Path | str) -> Iterator[list[dict]]:
    """The rows of one tar's samples, ``BATCH_ROWS`` at a time (a remote tar is fetched once to scan)."""
    name = storage.basename(shard)
    with storage.local_source(shard) as local:
        scan = scan_tar(local)
        if scan.error:
            log.warning("%s: %s", name, scan.error)
        with open(local, "rb") as f:
            for lo in range(0, len(scan.samples), BATCH_ROWS):
                samples = scan.samples[lo:lo + BATCH_ROWS]
                rows = [_sample_row(f, name, s) for s in samples]
                for row, sample in zip(rows, samples):
                    if sample.error:  # a refused, repeated or truncated member: pinned on its own sample by the scan
                        row["_status"], row["_reason"] = "failed", sample.error[:500]
                last = lo + BATCH_ROWS >= len(scan.samples)
                if last and scan.error and not samples[-1].error:  # the tar broke off after it: it may lack members
                    rows[-1]["_status"], rows[-1]["_reason"] = "failed", f"shard error: {scan.error}"
                yield rows


def _rows_to_table(rows: list[dict], json_keys: list[str] | None = None,
                   kinds: dict[str, str | None] | None = None) -> pa.Table:
    """Rows -> the index's columns before the join. ``json_keys``/``kinds``: the JSON fields of the whole
    dataset in first-seen order and their kinds, so every batch gets the same columns and types."""
    if json_keys is None:
        json_keys = []
        for r in rows:
            json_keys.extend(k for k in r["_json"] if k not in json_keys)
    kinds = kinds or {}
    cols = {}
    for name in _BASE:  # typed alike in every batch (an all-null offset column is cast below)
        cols[name] = _column([r[name] for r in rows]) if rows else pa.array([], pa.string())
    for k in json_keys:
        cols[k] = _column([r["_json"].get(k) for r in rows], kinds.get(k))
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


# ---------------------------------------------------------------------------------------------- streaming
# The index is built in three passes over bounded batches, so the process holds one batch of rows, not the
# dataset (issue 16): 1. scan the tars into a scratch file (each sample's JSON fields kept as JSON text,
# their kinds merged), 2. type each batch with the dataset's kinds (and learn which JSON columns clips.parquet
# can coalesce into, and which clip ids repeat), 3. join clips.parquet, decide statuses and buckets, and
# write index.parquet a row group per batch. What stays whole: 16 bytes per clips.parquet row (a sorted
# 64-bit hash of its join key and its row number) and 8 bytes per sample (its clip id's hash) while the
# repeated ids are found.

class _Scan:
    """Pass 1's result: the scratch file of raw rows, the JSON fields in first-seen order and their kinds."""

    def __init__(self, path: Path):
        self.path = path
        self.json_keys: dict[str, str | None] = {}   # insertion order = first seen
        self.rows = 0
        self.writer: pq.ParquetWriter | None = None

    def add(self, rows: list[dict]) -> None:
        release_arrow()
        for r in rows:
            for k, v in r["_json"].items():
                self.json_keys[k] = _merge(self.json_keys.get(k), _kind(v))
        cols = {name: pa.array([r[name] for r in rows], _SCAN_SCHEMA.field(name).type) for name in _BASE}
        cols["_status"] = pa.array([r["_status"] for r in rows], pa.string())
        cols["_reason"] = pa.array([r["_reason"] for r in rows], pa.string())
        # JSON text round-trips every value exactly (ints stay ints, 1.0 stays a float) and keeps key order
        cols["_json"] = pa.array([json.dumps(r["_json"]) for r in rows], pa.string())
        if self.writer is None:
            self.writer = pq.ParquetWriter(str(self.path), _SCAN_SCHEMA)
        self.writer.write_table(pa.table(cols, schema=_SCAN_SCHEMA))
        self.rows += len(rows)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def batches(self) -> Iterator[list[dict]]:
        if not self.rows:
            return
        f = pq.ParquetFile(str(self.path))
        for g in range(f.num_row_groups):
            rows = f.read_row_group(g).to_pylist()
            for r in rows:
                r["_json"] = json.loads(r["_json"])
            yield rows


def _scan(shard_files: list[Path | str], path: Path) -> _Scan:
    scan, buf = _Scan(path), []
    try:
        for shard in shard_files:
            for rows in _shard_rows(shard):
                buf.extend(rows)
                if len(buf) >= BATCH_ROWS:
                    scan.add(buf)
                    buf = []
        if buf:
            scan.add(buf)
    finally:
        scan.close()
    return scan


def _hashes(values: Iterable) -> np.ndarray:
    """Python's hash of each value (stable within this process, which is all the passes need)."""
    return np.fromiter((hash(v) for v in values), np.int64)


class _Clips:
    """clips.parquet, looked up by join key without holding it: each row's key hash and row number, sorted
    (16 bytes a row); the rows a batch needs are read a row group at a time (kept while the next batch
    wants the same group: a built dataset's shards follow clips.parquet's order).

    The join is on ``clip_id``, or on (``shard``, ``key``) when clips.parquet has a ``key`` column
    (imported shards, whose tar keys need not be unique across shards); then its clip_id wins too. A key
    listed twice: the first row counts.
    """

    def __init__(self, path: str | Path):
        self.file = storage.open_file(path) if storage.is_remote(path) else None
        self.pf = pq.ParquetFile(self.file if self.file is not None else storage.local_path(path))
        names = self.pf.schema_arrow.names
        self.by_member = "key" in names and "shard" in names
        self.keys = ["shard", "key"] if self.by_member else ["clip_id"]
        if "clip_id" not in names and not self.by_member:
            raise ValueError(f"{path}: clips.parquet has no clip_id column (nor shard and key)")
        # the columns the index takes: not the ones it owns, nor the member keys (clip_id does come along)
        self.columns = [c for c in names if not (c in OWN_COLUMNS and c not in self.keys)
                        and not (c in self.keys and c != "clip_id")]
        self.types = {c: self.pf.schema_arrow.field(c).type for c in self.columns}
        sizes = [self.pf.metadata.row_group(g).num_rows for g in range(self.pf.num_row_groups)]
        self.starts = np.cumsum([0] + sizes)
        h = np.concatenate([_hashes(self._key_tuples(self.pf.read_row_group(g, columns=self.keys)))
                            for g in range(self.pf.num_row_groups)] or [np.zeros(0, np.int64)])
        order = np.argsort(h, kind="stable")   # equal hashes stay in row order: the first row comes first
        self.hash, self.row = h[order], order
        del h, order
        # hashes shared by several rows (a key listed twice, or two keys colliding): their exact keys
        repeated = np.unique(self.hash[1:][self.hash[1:] == self.hash[:-1]])
        self.repeated: dict[int, list[tuple[tuple, int]]] = {}
        if repeated.size:
            for g in range(self.pf.num_row_groups):
                keys = self._key_tuples(self.pf.read_row_group(g, columns=self.keys))
                hit = np.isin(_hashes(keys), repeated)
                for i in np.flatnonzero(hit):
                    self.repeated.setdefault(hash(keys[i]), []).append((keys[i], int(self.starts[g] + i)))
        self._group: tuple[int, pa.Table] | None = None

    def _key_tuples(self, t: pa.Table) -> list[tuple]:
        return list(zip(*[t.column(c).cast(pa.string()).to_pylist() for c in self.keys]))

    def _read(self, g: int) -> pa.Table:
        if self._group is None or self._group[0] != g:
            self._group = (g, self.pf.read_row_group(g, columns=self.columns + [c for c in self.keys
                                                                                 if c not in self.columns]))
        return self._group[1]

    def match(self, table: pa.Table) -> tuple[pa.Table, list[bool]]:
        """clips.parquet's row for each row of ``table`` (nulls where none) and whether there was one."""
        keys = list(zip(*[table.column(c).to_pylist() for c in self.keys]))
        h = _hashes(keys)
        pos = np.minimum(np.searchsorted(self.hash, h), max(len(self.hash) - 1, 0))
        found = (self.hash[pos] == h) if len(self.hash) else np.zeros(len(h), bool)
        want = np.where(found, self.row[pos] if len(self.hash) else 0, -1)
        for i in np.flatnonzero(found):
            if int(h[i]) in self.repeated:
                want[i] = next((r for k, r in self.repeated[int(h[i])] if k == keys[i]), -1)
        rows = np.unique(want[want >= 0])
        parts = []
        for g in np.unique(np.searchsorted(self.starts, rows, side="right") - 1):
            local = rows[(rows >= self.starts[g]) & (rows < self.starts[g + 1])] - self.starts[g]
            parts.append(self._read(int(g)).take(pa.array(local, pa.int64())))
        fetched = (pa.concat_tables(parts) if parts else
                   pa.schema([(c, self.pf.schema_arrow.field(c).type) for c in self.columns + [
                       k for k in self.keys if k not in self.columns]]).empty_table())
        at = {int(r): i for i, r in enumerate(rows)}
        got = self._key_tuples(fetched)
        take = []
        for i, r in enumerate(want):
            j = at.get(int(r)) if r >= 0 else None
            take.append(j if j is not None and got[j] == keys[i] else None)  # a hash collision is no match
        matched = fetched.select(self.columns).take(pa.array(take, pa.int64()))
        return matched, [t is not None for t in take]

    def close(self) -> None:
        self._group = None
        if self.file is not None:
            self.file.close()


def _merge_clips(table: pa.Table, matched: pa.Table, in_clips: list[bool], no_coalesce: set[str]) -> pa.Table:
    """clips.parquet's columns onto ``table``; clips columns win where both have a value. ``no_coalesce``:
    the index columns that cannot be cast to the clips column's type anywhere in the dataset (then the
    clips column alone is taken, for every batch alike)."""
    out = table
    for name in matched.column_names:
        col = matched[name]
        if pa.types.is_null(col.type):
            continue
        if name in out.column_names:
            if name not in no_coalesce:
                try:
                    col = pc.coalesce(col, out[name].cast(col.type))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                    pass  # types disagree: clips.parquet is authoritative
            out = out.set_column(out.column_names.index(name), name, col)
        else:
            out = out.append_column(name, col)
    return out.append_column("_in_clips", pa.array(in_clips, pa.bool_()))


def _finish_status(table: pa.Table, has_clips: bool, repeated: np.ndarray | None = None,
                   seen: dict[str, str] | None = None) -> pa.Table:
    """Each row's final status and reason. A clip id seen before (in scan order) is a duplicate:
    ``repeated`` holds the hashes of the ids that occur more than once in the dataset, and ``seen`` (kept
    across batches) where each of those was first, so only repeated ids are remembered."""
    n = table.num_rows
    status = table["status"].to_pylist() if "status" in table.column_names else ["ok"] * n
    reason = table["reason"].to_pylist() if "reason" in table.column_names else [None] * n
    in_clips = table["_in_clips"].to_pylist() if "_in_clips" in table.column_names else [True] * n
    own_s, own_r = table["_status"].to_pylist(), table["_reason"].to_pylist()
    ids = table["clip_id"].to_pylist()
    maybe = np.isin(_hashes(ids), repeated) if repeated is not None else np.ones(n, bool)
    seen = {} if seen is None else seen
    for i, (cid, shard) in enumerate(zip(ids, table["shard"].to_pylist())):
        if own_s[i] != "ok":  # the shard itself is broken for this sample
            status[i], reason[i] = own_s[i], own_r[i]
        elif has_clips and not in_clips[i]:
            status[i], reason[i] = "filtered", "not in clips.parquet"
        elif status[i] is None:
            status[i] = "ok"
        if not maybe[i]:  # the only row with this id
            continue
        if cid in seen and status[i] == "ok":
            status[i], reason[i] = "filtered", f"duplicate clip_id (first in {seen[cid]})"
        seen.setdefault(cid, shard)
    drop = [c for c in ("status", "reason", "_status", "_reason", "_in_clips") if c in table.column_names]
    return table.drop_columns(drop).append_column("status", pa.array(status, pa.string())).append_column(
        "reason", pa.array(reason, pa.string()))


def _index_meta(buckets: BucketTable, meta: dict | None = None) -> dict:
    meta = dict(meta or {})
    meta.update({b"reelforge.format": INDEX_FORMAT_ID.encode(), b"reelforge.buckets": json.dumps(buckets.to_dict()).encode()})
    return meta


def write_index(table: pa.Table, path: str | Path, buckets: BucketTable) -> Path:
    """Write atomically with the format id and bucket table in the parquet metadata."""
    with storage.staged_write(path) as tmp:
        pq.write_table(table.replace_schema_metadata(_index_meta(buckets, table.schema.metadata)), tmp)
    return storage.as_path_or_url(path)


def build_index(dataset_dir: str | Path, buckets: BucketTable | None = None) -> Path | str:
    """Scan ``DIR/shards/*.tar`` + join ``DIR/clips.parquet`` (when present) -> ``DIR/index.parquet``.

    Every sample found in a tar gets a row, in tar order. ``status`` is "failed" for samples the shard
    cannot serve (bad JSON, no media member, truncated tar), otherwise clips.parquet's status ("filtered"
    for samples not listed there), or "ok" when there is no clips.parquet (imported shards).

    Streamed (see above): index.parquet is written a row group of ``BATCH_ROWS`` samples at a time, through
    a temporary file committed when complete, with the same columns, types and rows as one table of the
    whole dataset would have.
    """
    root = str(dataset_dir)
    buckets = buckets or BucketTable()
    shard_files = storage.glob(storage.join(root, SHARDS_SUBDIR, "*.tar"))
    if not shard_files:
        raise FileNotFoundError(f"no shards under {storage.join(root, SHARDS_SUBDIR)}")
    clips_path = storage.join(root, CLIPS_FILE)
    has_clips = storage.exists(clips_path)
    scratch = Path(tempfile.mkdtemp(prefix="reelforge-index-"))
    clips = None
    try:
        scan = _scan(shard_files, scratch / "scan.parquet")                                   # pass 1
        clips = _Clips(clips_path) if has_clips else None
        keys, kinds = list(scan.json_keys), scan.json_keys
        typed, no_coalesce, ids = scratch / "typed.parquet", set(), []
        writer = None
        try:
            for rows in scan.batches():                                                      # pass 2
                t = _rows_to_table(rows, keys, kinds)
                del rows
                release_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(str(typed), t.schema)
                writer.write_table(t)
                ids.append(_hashes(t["clip_id"].to_pylist()))
                for name, typ in (clips.types.items() if clips else ()):
                    if name in t.column_names and name not in no_coalesce and not pa.types.is_null(typ):
                        try:
                            t[name].cast(typ)
                        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                            no_coalesce.add(name)   # as one table: clips.parquet's column alone, everywhere
        finally:
            if writer is not None:
                writer.close()
        def joined(t: pa.Table) -> pa.Table:
            return _merge_clips(t, *clips.match(t), no_coalesce) if clips is not None else t

        def typed_batches() -> Iterator[pa.Table]:
            if not scan.rows:  # no sample at all: the empty table (typed as one table of no rows is)
                yield _rows_to_table([])
                return
            f = pq.ParquetFile(str(typed))
            for g in range(f.num_row_groups):
                yield f.read_row_group(g)

        if clips is not None and "clip_id" in clips.types and (
                clips.by_member or clips.types["clip_id"] != pa.string()):
            # clips.parquet's clip_id wins (or changes type): the ids that repeat are the joined ones
            ids = [_hashes(joined(t)["clip_id"].to_pylist()) for t in typed_batches()]
        h = np.sort(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
        del ids
        repeated = np.unique(h[1:][h[1:] == h[:-1]])
        del h
        seen: dict[str, str] = {}
        path = storage.join(root, INDEX_FILE)
        with storage.staged_write(path) as tmp:
            out = None
            try:
                for t in typed_batches():                                                    # pass 3
                    t = _finish_status(joined(t), has_clips, repeated, seen)
                    t = t.append_column("bucket", assign_buckets(t, buckets))
                    t = t.select(_FRONT + [c for c in t.column_names if c not in _FRONT])
                    if out is None:
                        out = pq.ParquetWriter(tmp, t.schema.with_metadata(_index_meta(buckets)))
                    elif not t.schema.equals(out.schema):
                        t = t.cast(out.schema)  # the same types by construction; a cast, were one to drift
                    out.write_table(t)
                    release_arrow()
            finally:
                if out is not None:
                    out.close()
        return storage.as_path_or_url(path)
    finally:
        if clips is not None:
            clips.close()
        shutil.rmtree(scratch, ignore_errors=True)
