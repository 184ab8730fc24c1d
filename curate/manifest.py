"""The build's record of every decision, written so a killed build resumes without losses or duplicates.

Layout under the dataset dir::

    _work/build.json                 the settings the work below was made with (curate/buildstate.py)
    _work/videos/part-NNNNNN.parquet video rows (probe + scene split), appended by the driver as videos
                                     finish; a later part wins for a path; reused on resume
    _work/shards/work-<S>-<T>-NNNNNN.tar
                                     work shards: every transcoded clip, whatever its status will be,
                                     written by the task of the video with content hash ``S`` (its first
                                     20 hex digits) in attempt ``T`` (a random token), so no two writers
                                     ever share a name
    _work/clips/<S>/<tar>.parquet    the clip rows (scores, ``work_shard``) committed together with work
                                     shard <tar>, written by the same task right after the tar's atomic
                                     rename; ``tail-<T>-N.parquet`` for rows committed without a tar
    _work/clips/<S>/complete.json    every clip of content ``S`` is committed; holds the video row
                                     (its scene split), so an exact copy under another name reuses it
    _work/published.json             what DIR/shards was last published from (shards/publish.py)
    videos.parquet, clips.parquet, embeddings.parquet, shards/   final tables and training shards,
                                     rewritten by every finish (build end, --refilter)

A clip counts as done once its part file exists; a work tar without a part file (its writer was killed
between the two renames) is deleted before the next build's tasks start and its clips are redone.
``clip_id`` is deterministic, so redone clips get the same ids, and a video's task skips the ids its
content already committed: nothing is duplicated. Clip records are grouped by content, so the driver
never lists every clip: it asks per video whether ``complete.json`` exists, and a task reads only its
own content's parts. Nothing here ever deletes DIR/shards: only a publish replaces it.

Every write goes through :func:`write_parquet_atomic` or :func:`write_json_atomic` (and the shard
writer's commit): the places that decide how "atomic" is done on a given storage.
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json_atomic(obj, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, default=_plain))
    os.replace(tmp, path)


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
        self.dir = Path(work_dir) / "clips" / self.key
        self.shards = Path(work_dir) / "shards"

    def shard_prefix(self, token: str) -> str:
        return f"work-{self.key}-{token}"

    def done_ids(self) -> set[str]:
        """Clip ids of this content committed by any earlier attempt, run or copy."""
        done: set[str] = set()
        for part in self.dir.glob("*.parquet"):
            done.update(pq.read_table(part, columns=["clip_id"]).column("clip_id").to_pylist())
        return done

    def commit_part(self, name: str, rows: list[dict]) -> None:
        if rows:
            write_parquet_atomic(rows_to_table(rows), self.dir / f"{name}.parquet")

    def complete_row(self) -> dict | None:
        p = self.dir / COMPLETE_FILE
        return json.loads(p.read_text()) if p.is_file() else None

    def mark_complete(self, video_row: dict) -> None:
        write_json_atomic(video_row, self.dir / COMPLETE_FILE)


class Manifest:
    def __init__(self, out_dir: str | Path):
        self.out = Path(out_dir)
        self.work = self.out / "_work"
        self.parts = self.work / "clips"
        self.parts.mkdir(parents=True, exist_ok=True)
        self.videos_dir = self.work / "videos"
        self.work_shards = self.work / "shards"
        self.shards_dir = self.out / "shards"   # published training shards (shards/publish.py)
        self._next_video_part: int | None = None

    def content(self, sha256: str) -> ContentWork:
        return ContentWork(self.work, sha256)

    def has_work(self) -> bool:
        return any(self.videos_dir.glob("*.parquet")) or any(self.parts.rglob("*.parquet")) or \
            any(self.work_shards.glob("*.tar"))

    def reset(self, videos: bool) -> None:
        """Forget the clip work (parts, work shards, publish record) and, if ``videos``, phase 1 too."""
        shutil.rmtree(self.parts, ignore_errors=True)
        self.parts.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.work_shards, ignore_errors=True)
        (self.work / "published.json").unlink(missing_ok=True)
        if videos:
            shutil.rmtree(self.videos_dir, ignore_errors=True)

    # ---- videos ----------------------------------------------------------------------------------
    def load_videos(self) -> dict[str, dict]:
        """path -> its latest saved row."""
        rows: dict[str, dict] = {}
        for part in sorted(self.videos_dir.glob("part-*.parquet")):
            for r in pq.read_table(part).to_pylist():
                rows[r["path"]] = r
        return rows

    def save_videos(self, rows: list[dict]) -> None:
        """Append ``rows`` as a new part (they win over earlier rows of the same paths)."""
        if not rows:
            return
        if self._next_video_part is None:
            used = [int(p.stem.split("-")[1]) for p in self.videos_dir.glob("part-*.parquet")]
            self._next_video_part = max(used) + 1 if used else 0
        write_parquet_atomic(rows_to_table(rows), self.videos_dir / f"part-{self._next_video_part:06d}.parquet")
        self._next_video_part += 1

    def is_complete(self, sha256: str) -> bool:
        return (self.content(sha256).dir / COMPLETE_FILE).is_file()

    # ---- clips -----------------------------------------------------------------------------------
    def recover(self) -> int:
        """Before any task starts: delete work tars whose rows were never committed (their writer died
        between the tar's rename and its part) and every writer's leftover ``.tmp``; returns how many."""
        n = 0
        for p in list(self.work_shards.glob("*.tmp")) + list(self.parts.rglob("*.tmp")):
            p.unlink(missing_ok=True)
            n += 1
        for tar in self.work_shards.glob("*.tar"):
            key = tar.name.split("-")[1] if tar.name.count("-") >= 3 else ""
            if not (self.parts / key / (tar.name + ".parquet")).exists():
                tar.unlink()  # renamed but never recorded: its clips will be redone
                n += 1
        return n

    def committed_clips(self) -> pa.Table | None:
        return concat_tables(pq.read_table(p) for p in sorted(self.parts.rglob("*.parquet")))
