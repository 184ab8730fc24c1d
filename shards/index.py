"""The sample index: one parquet row per sample in a dataset's shards, and its readers.

``build_index`` (``shards/index_build.py``, re-exported here) reads tar headers (member offsets and sizes)
and each sample's small JSON member, joins the build's ``clips.parquet`` (authoritative for ``status``,
``reason`` and scores), assigns a bucket, and writes ``DIR/index.parquet``. ``select`` filters it with a
SQL-ish ``where`` so a subset can be chosen, or exported as a new shard set, without opening a tar.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from reelforge import storage
from reelforge.shards.buckets import BucketTable, assign_buckets  # noqa: F401 (imported from here by users)
from reelforge.shards.index_build import build_index, write_index  # noqa: F401 (the build, in its own file)
from reelforge.shards.query import parse_where
from reelforge.shards.spec import INDEX_FILE, INDEX_FORMAT_ID, OWN_COLUMNS, SHARDS_SUBDIR  # noqa: F401


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
