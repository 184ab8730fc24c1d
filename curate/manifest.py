"""The build's record of every decision, written so a killed build resumes without losses or duplicates.

Layout under the dataset dir::

    _work/build.json                 the settings the work below was made with (curate/buildstate.py)
    _work/videos/part-NNNNNN.parquet video rows (probe + scene split), appended by the driver as videos
                                     finish; a later part wins for a path; reused on resume
    _work/shards/work-<S>-<T>-NNNNNN.tar
                                     work shards: every transcoded clip, whatever its status will be,
                                     written by the task of the video with content hash ``S`` (its first
                                     20 hex digits) in attempt ``T`` (a random token), so no two writers
                                     ever share a name; ``work-g<G>-<T>-NNNNNN.tar``: the one series
                                     a group of small videos shares (``curate/video_group.py``; ``G``
                                     hashes the group's paths)
    _work/clips/<S>/<tar>.parquet    the clip rows (scores, ``work_shard``) of content ``S`` committed
                                     together with work shard <tar>, written by the same task right
                                     after the tar's atomic rename (a group's tar: one part in each
                                     content's folder it holds clips of); ``tail-<T>-N.parquet`` for
                                     rows committed without a tar
    _work/clips/<S>/complete.json    every clip of content ``S`` is committed; holds the video row
                                     (its scene split), so an exact copy under another name reuses it
    _work/published.json             what DIR/shards was last published from (shards/publish.py)
    videos.parquet, clips.parquet, embeddings.parquet, shards/   final tables and training shards,
                                     rewritten by every finish (build end, --refilter)

A clip counts as done once its part file exists; a work tar without a part file (its writer was killed
between the two renames) is deleted before the next build's tasks start and its clips are redone (a
group's tar with some of its parts stays: the clips of the contents whose part is missing are redone
into a new tar, and their samples in this one are never read).
``clip_id`` is deterministic, so redone clips get the same ids, and a video's task skips the ids its
content already committed: nothing is duplicated. Clip records are grouped by content, so the driver
never lists every clip: it asks per video whether ``complete.json`` exists, and a task reads only its
own content's parts. Nothing here ever deletes DIR/shards: only a publish replaces it.

Every location is a local path or an fsspec URL, read and written through ``reelforge.storage``: writes
go through :func:`write_parquet_atomic` / :func:`write_json_atomic` (and the shard writer's commit), which
are tmp + fsync + rename on a disk and one PUT on object storage, so a part appears whole or not at all.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa

from reelforge import storage

# columns that hold bulk data: they go to the shards / embeddings file, never to clips.parquet
BULK_COLUMNS = ("mp4", "frames", "frame_times")
EMBEDDING_COLUMN = "clip_embedding"
COMPLETE_FILE = "complete.json"
CONTENT_KEY_LEN = 20   # hex digits of the source's sha256 naming its clip records (as in clip ids)


def clip_id_for(video_sha256: str, start_frame: int, end_frame: int) -> str:
    """Deterministic id from the source's content hash and the span (no '.', safe as a tar key)."""
    return f"{video_sha256[:CONTENT_KEY_LEN]}-{int(start_frame):07d}-{int(end_frame):07d}"


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
    storage.write_parquet(table, path)


def write_json_atomic(obj, path: str | Path) -> None:
    storage.write_bytes_atomic(path, json.dumps(obj, default=_plain).encode())


def concat_tables(tables: Iterable[pa.Table]) -> pa.Table | None:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    return pa.concat_tables(tables, promote_options="permissive")


class ContentWork:
    """The clip records of one source content (``sha256``): what a video's task reads and commits.

    Runs on a worker; only this content's folder is listed, however large the build."""

    def __init__(self, work_dir: str | Path, sha256: str):
        self.key = sha256[:CONTENT_KEY_LEN]
        self.dir = storage.join(work_dir, "clips", self.key)
        self.shards = storage.join(work_dir, "shards")

    def shard_prefix(self, token: str) -> str:
        return f"work-{self.key}-{token}"

    def path(self, name: str) -> str | Path:
        return storage.join(self.dir, name)

    def done_ids(self) -> set[str]:
        """Clip ids of this content committed by any earlier attempt, run or copy."""
        done: set[str] = set()
        for part in storage.glob(storage.join(self.dir, "*.parquet")):
            done.update(storage.read_parquet(part, columns=["clip_id"]).column("clip_id").to_pylist())
        return done

    def commit_part(self, name: str, rows: list[dict]) -> None:
        if rows:
            write_parquet_atomic(rows_to_table(rows), self.path(f"{name}.parquet"))

    def complete_row(self) -> dict | None:
        p = self.path(COMPLETE_FILE)
        return json.loads(storage.read_bytes(p)) if storage.exists(p) else None

    def mark_complete(self, video_row: dict) -> None:
        write_json_atomic(video_row, self.path(COMPLETE_FILE))


class Manifest:
    def __init__(self, out_dir: str | Path):
        self.out = out_dir if isinstance(out_dir, Path) or storage.is_remote(out_dir) else Path(out_dir)
        self.work = storage.join(self.out, "_work")
        self.parts = storage.join(self.work, "clips")
        storage.makedirs(self.parts)
        self.videos_dir = storage.join(self.work, "videos")
        self.work_shards = storage.join(self.work, "shards")
        self.shards_dir = storage.join(self.out, "shards")   # published training shards (shards/publish.py)
        self._next_video_part: int | None = None

    def content(self, sha256: str) -> ContentWork:
        return ContentWork(self.work, sha256)

    def _glob(self, base, pattern: str) -> list:
        return storage.glob(storage.join(base, pattern))

    def has_work(self) -> bool:
        return bool(self._glob(self.videos_dir, "*.parquet") or self._glob(self.parts, "**/*.parquet")
                    or self._glob(self.work_shards, "*.tar"))

    def reset(self, videos: bool) -> None:
        """Forget the clip work (parts, work shards, publish record) and, if ``videos``, phase 1 too."""
        storage.remove(self.parts, recursive=True)
        storage.makedirs(self.parts)
        storage.remove(self.work_shards, recursive=True)
        storage.remove(storage.join(self.work, "published.json"))
        if videos:
            storage.remove(self.videos_dir, recursive=True)

    # ---- videos ----------------------------------------------------------------------------------
    def load_videos(self) -> dict[str, dict]:
        """path -> its latest saved row, every row in memory (~7 KB a video as dicts): for small jobs and
        tools. The build reads them through :meth:`video_places` and :meth:`read_videos`."""
        rows: dict[str, dict] = {}
        for part in self._glob(self.videos_dir, "part-*.parquet"):  # sorted: later parts win
            for r in storage.read_parquet(part).to_pylist():
                rows[r["path"]] = r
        return rows

    def video_places(self, current: set[str] | None = None, columns: tuple[str, ...] = ()
                     ) -> tuple[list, dict[str, tuple]]:
        """Where each path's latest saved row lives, without reading the rows: the parts, and path ->
        (part number, row number, *the values of ``columns``), for the ``current`` paths only when given.
        Reads the ``path`` column (and ``columns``) of each part: ~250 bytes held a video, not its row."""
        parts = self._glob(self.videos_dir, "part-*.parquet")  # sorted: later parts win
        places: dict[str, tuple] = {}
        for i, part in enumerate(parts):
            names = set(storage.read_parquet_schema(part).names)
            t = storage.read_parquet(part, columns=["path"] + [c for c in columns if c in names])
            cols = [t.column(c).to_pylist() if c in names else [None] * t.num_rows for c in columns]
            for j, path in enumerate(t.column("path").to_pylist()):
                if current is None or path in current:
                    places[path] = (i, j, *(c[j] for c in cols))
        return parts, places

    def read_videos(self, parts: list, places: list[tuple]) -> list[dict]:
        """The saved rows at ``places`` (from :meth:`video_places`), in that order; each part read once."""
        want: dict[int, list[int]] = {}
        for k, (part, row, *_) in enumerate(places):
            want.setdefault(part, []).append(k)
        rows: list[dict | None] = [None] * len(places)
        for part, ks in want.items():
            t = storage.read_parquet(parts[part]).take(pa.array([places[k][1] for k in ks], pa.int64()))
            for k, r in zip(ks, t.to_pylist()):
                rows[k] = r
        return rows

    def save_videos(self, rows: list[dict]) -> None:
        """Append ``rows`` as a new part (they win over earlier rows of the same paths)."""
        if not rows:
            return
        if self._next_video_part is None:
            used = [int(storage.basename(p).split("-")[1].split(".")[0])
                    for p in self._glob(self.videos_dir, "part-*.parquet")]
            self._next_video_part = max(used) + 1 if used else 0
        write_parquet_atomic(rows_to_table(rows),
                             storage.join(self.videos_dir, f"part-{self._next_video_part:06d}.parquet"))
        self._next_video_part += 1

    def is_complete(self, sha256: str) -> bool:
        return storage.exists(self.content(sha256).path(COMPLETE_FILE))

    # ---- clips -----------------------------------------------------------------------------------
    def recover(self) -> int:
        """Before any task starts: delete work tars whose rows were never committed (their writer died
        between the tar's commit and its part) and every writer's leftover ``.tmp``; returns how many.
        (On object storage nothing is ever half-written: a tar or part is one PUT.)"""
        n = 0
        if not storage.is_remote(self.work):
            for p in self._glob(self.work_shards, "*.tmp") + self._glob(self.parts, "**/*.tmp"):
                storage.remove(p)
                n += 1
        parts = {storage.basename(p) for p in self._glob(self.parts, "*/work-*.parquet")}
        for tar in self._glob(self.work_shards, "*.tar"):
            if storage.basename(tar) + ".parquet" not in parts:
                storage.remove(tar)  # committed but never recorded: its clips will be redone
                n += 1
        return n

    def committed_clips(self) -> pa.Table | None:
        return concat_tables(storage.read_parquet(p) for p in self._glob(self.parts, "**/*.parquet"))
