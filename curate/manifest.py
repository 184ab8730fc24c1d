"""The build's record of every decision, written so a killed build resumes without losses or duplicates.

Layout under the dataset dir::

    _work/build.json              the settings the work below was made with (curate/buildstate.py)
    _work/videos.parquet          phase 1 result: one row per input (probe + scene split), reused on resume
    _work/shards/work-NNNNNN.tar  work shards: every transcoded clip, whatever its status will be
    _work/clips/<shard>.parquet   the clip rows (scores, ``work_shard``) committed together with work shard
                                  <shard> (and any dropped/failed clips seen since the previous commit),
                                  written right after the tar's atomic rename; ``tail-*.parquet`` for rows
                                  committed without a shard
    _work/published.json          what DIR/shards was last published from (shards/publish.py)
    videos.parquet, clips.parquet, embeddings.parquet, shards/   final tables and training shards,
                                  rewritten by every finish (build end, --refilter)

A clip counts as done once its part file exists; a work tar without a part file (killed between the two
renames) is deleted on resume and its clips are redone. ``clip_id`` is deterministic, so redone clips
get the same ids and nothing is duplicated. Nothing here ever deletes DIR/shards: only a publish
replaces it.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

# columns that hold bulk data: they go to the shards / embeddings file, never to clips.parquet
BULK_COLUMNS = ("mp4", "frames", "frame_times")
EMBEDDING_COLUMN = "clip_embedding"


def clip_id_for(video_sha256: str, start_frame: int, end_frame: int) -> str:
    """Deterministic id from the source's content hash and the span (no '.', safe as a tar key)."""
    return f"{video_sha256[:20]}-{int(start_frame):07d}-{int(end_frame):07d}"


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def rows_to_table(rows: list[dict]) -> pa.Table:
    """Rows (possibly with differing keys) to a table; nested values become JSON strings."""
    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    cols = {}
    for k in keys:
        vals = [_plain(r.get(k)) for r in rows]
        if any(isinstance(v, (dict, list)) for v in vals) and k != EMBEDDING_COLUMN:
            vals = [None if v is None else json.dumps(v) for v in vals]
        try:
            cols[k] = pa.array(vals)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            cols[k] = pa.array([None if v is None else str(v) for v in vals])
    return pa.table(cols)


def write_parquet_atomic(table: pa.Table, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def concat_tables(tables: Iterable[pa.Table]) -> pa.Table | None:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


class Manifest:
    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.work = self.out / "_work"
        self.parts = self.work / "clips"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.work_shards = self.work / "shards"
        self.shards_dir = self.out / "shards"   # published training shards (shards/publish.py)

    def has_work(self) -> bool:
        return (self.work / "videos.parquet").exists() or any(self.parts.glob("*.parquet")) or \
            any(self.work_shards.glob("*.tar"))

    def reset(self, videos: bool) -> None:
        """Forget the clip work (parts, work shards, publish record) and, if ``videos``, phase 1 too."""
        for p in self.parts.glob("*.parquet"):
            p.unlink()
        if self.work_shards.exists():
            shutil.rmtree(self.work_shards)
        (self.work / "published.json").unlink(missing_ok=True)
        if videos:
            (self.work / "videos.parquet").unlink(missing_ok=True)

    # ---- phase 1: videos -------------------------------------------------------------------------
    def load_videos(self) -> dict[str, dict]:
        p = self.work / "videos.parquet"
        if not p.exists():
            return {}
        return {r["path"]: r for r in pq.read_table(p).to_pylist()}

    def save_videos(self, rows: list[dict]) -> None:
        write_parquet_atomic(rows_to_table(rows), self.work / "videos.parquet")

    # ---- phase 2: clips --------------------------------------------------------------------------
    def recover(self) -> set[str]:
        """Drop uncommitted work shards; return the clip ids already committed."""
        if self.work_shards.exists():
            for tar in self.work_shards.glob("*.tar"):
                if not (self.parts / (tar.name + ".parquet")).exists():
                    tar.unlink()  # renamed but never recorded: its clips will be redone
        done: set[str] = set()
        for part in self.parts.glob("*.parquet"):
            done.update(pq.read_table(part, columns=["clip_id"]).column("clip_id").to_pylist())
        return done

    def commit_part(self, name: str, rows: list[dict]) -> None:
        if rows:
            write_parquet_atomic(rows_to_table(rows), self.parts / f"{name}.parquet")

    def committed_clips(self) -> pa.Table | None:
        return concat_tables(pq.read_table(p) for p in sorted(self.parts.glob("*.parquet")))
