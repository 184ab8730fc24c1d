"""Publishing: the training shards ``DIR/shards/`` hold exactly the clips whose final status is ``ok``.

The build writes every transcoded clip to *work shards* (``DIR/_work/shards/``) while statuses are still
unknown. Once statuses are decided (end of a build, or ``--refilter``), :func:`publish` writes a new
training shard set by copying each kept clip's media members byte for byte out of its work shard
(no re-encoding) next to a ``<key>.json`` that states the clip's final status, and swaps it in:

1. the new set is written to ``DIR/shards.new/`` (each tar atomically, ``.tar.tmp`` → rename), numbered
   after the current set so no shard name is ever reused for other content;
2. ``DIR/shards`` → ``DIR/shards.old``, ``DIR/shards.new`` → ``DIR/shards`` (two renames);
3. ``DIR/shards.old`` is deleted.

:func:`recover` (run under the output lock before any build or refilter) undoes a publish killed between
those steps, so ``DIR/shards`` is always one complete set. Rejected clips never enter ``DIR/shards``;
they stay in the work shards, so a refilter can bring them back.

The copy is keyed by clip id, not by who wrote the work shard, so work shards written by cluster workers
(issue 16) publish the same way.

On object storage (``DIR`` a URL) there is no atomic rename of a folder, so the record is the commit
point instead: the new tars are uploaded straight into ``DIR/shards/`` under new names (numbered after the
current set, so they never collide), then ``_work/published.json`` is rewritten to list them (one PUT),
then the tars it no longer lists are deleted. :func:`recover` deletes every tar in ``DIR/shards`` that the
record does not list: the half-uploaded new set of a publish killed before its record, or the old set of
one killed after it. Each work shard is fetched once, scanned and copied from its local copy.

Streamed (:class:`Publication`): the build's finish hands the kept clips over a chunk at a time, and where
each one landed goes to the record's clip table (``_work/published-<digest>.parquet``) instead of a dict,
so the publish's memory does not grow with the clips. An unchanged set (same :class:`Digest`) is read
back from that table in step with the clips (:class:`RecordedClips`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from reelforge import storage
from reelforge.shards.spec import SHARDS_SUBDIR
from reelforge.shards.tarscan import scan_tar
from reelforge.shards.writer import ShardWriter, ShardWriterConfig

NEW_SUFFIX, OLD_SUFFIX = ".new", ".old"
RECORD_FILE = "published.json"   # in the work dir: what the current DIR/shards was published from


@dataclass
class PublishResult:
    shard_of: dict[str, str] = field(default_factory=dict)   # clip_id -> published shard name (list API only)
    shards: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    skipped: bool = False   # DIR/shards already held exactly this set: nothing written
    missing: dict[str, str] = field(default_factory=dict)   # clip_id -> why its media could not be copied
    clips: str = ""   # the record's clip table (work dir file name): clip_id, shard, missing, in publish order


# the record's per-clip table: where each clip given to the publish landed, or why it could not
CLIPS_SCHEMA = pa.schema([("clip_id", pa.string()), ("shard", pa.string()), ("missing", pa.string())])


class Digest:
    """What a publish is made of: the writer settings and, in order, each kept clip's id, work shard and
    JSON member. Equal digests mean byte-identical shard sets, so the second publish is skipped."""

    def __init__(self, cfg: ShardWriterConfig):
        self._h = hashlib.sha256(json.dumps([cfg.target_bytes, cfg.prefix]).encode())

    def add(self, row: dict, meta: bytes) -> None:
        self._h.update(row["clip_id"].encode() + b"\0" + str(row["work_shard"]).encode() + b"\0" + meta + b"\0")

    def hexdigest(self) -> str:
        return self._h.hexdigest()


WORK_SUBDIR = "_work"   # where a dataset keeps RECORD_FILE (curate/manifest.py)


def _read_record(record_path: str | Path) -> dict:
    return json.loads(storage.read_bytes(record_path)) if storage.exists(record_path) else {}


def recover(dataset_dir: str | Path) -> None:
    """Finish or undo a publish that was killed mid-way (call before anything reads or writes DIR/shards)."""
    if storage.is_remote(dataset_dir):
        live = storage.join(dataset_dir, SHARDS_SUBDIR)
        listed = set(_read_record(storage.join(dataset_dir, WORK_SUBDIR, RECORD_FILE)).get("shards", []))
        for name in storage.listdir(live):
            if name.endswith(".tar") and name not in listed:
                storage.remove(storage.join(live, name))
        return
    root = Path(dataset_dir)
    live, new, old = root / SHARDS_SUBDIR, root / (SHARDS_SUBDIR + NEW_SUFFIX), root / (SHARDS_SUBDIR + OLD_SUFFIX)
    if not live.exists() and old.exists():
        os.replace(old, live)  # killed between the two renames: the previous set is still whole
    for d in (new, old):
        if d.exists():
            shutil.rmtree(d)


def _next_index(live: Path | str, prefix: str) -> int:
    """Number the new set after the current one: a shard name never comes back with other content, so an
    index or clips.parquet of the previous set (a reader mid-epoch, a build killed before it rewrote them)
    finds its shards gone, never different bytes at its offsets."""
    names = [n for n in storage.listdir(live) if n.startswith(f"{prefix}-") and n.endswith(".tar")]
    used = [int(n[len(prefix) + 1:-4]) for n in names if n[len(prefix) + 1:-4].isdigit()]
    return max(used) + 1 if used else 0


def unchanged(dataset_dir: str | Path, work_dir: str | Path, digest: str) -> PublishResult | None:
    """The current set's result (``skipped``) when ``DIR/shards`` was published from ``digest`` and is still
    whole, else None. Its per-clip placement is read back with :class:`RecordedClips`."""
    record = _read_record(storage.join(work_dir, RECORD_FILE))
    live = storage.join(dataset_dir, SHARDS_SUBDIR)
    if record.get("digest") != digest or not record.get("clips") or not storage.isdir(live):
        return None  # a record of an older reelforge (no clip table) is republished once
    if sorted(n for n in storage.listdir(live) if n.endswith(".tar")) != sorted(record.get("shards", [])):
        return None
    if not storage.exists(storage.join(work_dir, record["clips"])):
        return None
    return PublishResult(shards=record["shards"], bytes=record["bytes"], skipped=True, clips=record["clips"])


class RecordMismatch(ValueError):
    """The record's clip table does not list the clips being re-published (edited or damaged by hand)."""


class RecordedClips:
    """The record's clip table read front to back, in step with the clips of an unchanged publish (same
    digest: the same clips in the same order), so no table of every clip is held in memory."""

    def __init__(self, work_dir: str | Path, result: PublishResult):
        self._path = storage.join(work_dir, result.clips)
        self._batches = None
        self._buf: list[tuple[str, str | None, str | None]] = []

    def take(self, clip_ids: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """(shard_of, missing) of the next ``len(clip_ids)`` clips; RecordMismatch when they differ."""
        if self._batches is None:
            self._batches = pq.ParquetFile(storage.open_file(self._path)).iter_batches(batch_size=65536)
        while len(self._buf) < len(clip_ids):
            batch = next(self._batches, None)
            if batch is None:
                raise RecordMismatch(f"{self._path}: lists fewer clips than the publish it records")
            self._buf.extend(zip(*[batch.column(c).to_pylist() for c in ("clip_id", "shard", "missing")]))
        got, self._buf = self._buf[:len(clip_ids)], self._buf[len(clip_ids):]
        if [g[0] for g in got] != list(clip_ids):
            raise RecordMismatch(f"{self._path}: lists other clips than the publish it records")
        return ({c: s for c, s, m in got if s is not None}, {c: m for c, s, m in got if m is not None})


class Publication:
    """One publish, streamed: :meth:`add` the kept clips a chunk at a time (all the clips of one work
    shard in one call: each work shard is scanned once), then :meth:`commit` (or :meth:`abort`).

    Holds one open training shard, one work shard's scan and the record's clip table being written;
    nothing per clip stays in memory, so a publish of millions of clips runs in the memory of a few.
    Local: the set is written to ``DIR/shards.new`` and swapped in by ``commit``. Object storage: the tars
    go straight into ``DIR/shards`` under new names and the record is the commit point.
    """

    def __init__(self, dataset_dir: str | Path, work_shards: str | Path, cfg: ShardWriterConfig,
                 work_dir: str | Path, skip_media: tuple[str, ...] = ("json",)):
        self.t0 = time.time()
        self.root, self.work_shards, self.work_dir = dataset_dir, work_shards, work_dir
        self.remote = storage.is_remote(dataset_dir)
        self.skip_media = skip_media
        self.live = storage.join(dataset_dir, SHARDS_SUBDIR)
        if self.remote:
            self.target = self.live
        else:
            self.target = Path(dataset_dir) / (SHARDS_SUBDIR + NEW_SUFFIX)
            if self.target.exists():
                shutil.rmtree(self.target)
        self.writer = ShardWriter(self.target, ShardWriterConfig(target_bytes=cfg.target_bytes, prefix=cfg.prefix,
                                                                 max_open_seconds=0),
                                  start_index=_next_index(self.live, cfg.prefix), remember_keys=False)
        fd, self._clips_tmp = tempfile.mkstemp(prefix="published-", suffix=".parquet.tmp",
                                               dir=None if self.remote else str(work_dir))
        os.close(fd)
        self._clips = pq.ParquetWriter(self._clips_tmp, CLIPS_SCHEMA)
        self.result = PublishResult()
        self.missing = 0

    def add(self, rows: list[dict], metas: list[bytes]) -> tuple[dict[str, str], dict[str, str]]:
        """Copy these kept clips (each with ``clip_id`` and ``work_shard``; ``metas``: their JSON members);
        returns ``(shard_of, missing)`` for them: the training shard of each clip copied, and why each
        other one could not be (its work shard gone, or no complete sample in it: not fatal)."""
        shard_of: dict[str, str] = {}
        missing: dict[str, str] = {}
        by_shard: dict[str, list[int]] = {}
        for i, r in enumerate(rows):
            by_shard.setdefault(str(r["work_shard"]), []).append(i)
        for shard in sorted(by_shard):  # each work shard is read front to back, once
            url = storage.join(self.work_shards, shard)
            keys = {rows[i]["clip_id"] for i in by_shard[shard]}
            if not storage.exists(url):
                missing.update({k: f"publish: work shard {url} is missing" for k in keys})
                continue
            with storage.local_source(url) as local:  # a remote work shard is fetched once
                where = {s.key: s.members for s in scan_tar(local).samples
                         if s.key in keys and not s.error and "mp4" in s.members}
                missing.update({k: f"publish: no complete sample {k} in work shard {url}"
                                for k in keys if k not in where})
                order = sorted((i for i in by_shard[shard] if rows[i]["clip_id"] in where),
                               key=lambda i: min(m.offset for m in where[rows[i]["clip_id"]].values()))
                with open(local, "rb") as f:
                    for i in order:
                        cid, out = rows[i]["clip_id"], {}
                        for ext, m in where[cid].items():
                            if ext in self.skip_media:
                                continue
                            out[ext] = os.pread(f.fileno(), m.size, m.offset)
                            if len(out[ext]) != m.size:
                                raise ValueError(f"{shard}:{m.name}: short read ({len(out[ext])} of {m.size} bytes)")
                        out["json"] = metas[i]
                        shard_of[cid] = self.writer.write(cid, out)
        ids = [r["clip_id"] for r in rows]
        self._clips.write_table(pa.table({"clip_id": ids, "shard": [shard_of.get(c) for c in ids],
                                          "missing": [missing.get(c) for c in ids]}, schema=CLIPS_SCHEMA))
        self.missing += len(missing)
        return shard_of, missing

    def commit(self, digest: str) -> PublishResult:
        """Make the set written so far ``DIR/shards`` and record it under ``digest``."""
        self.writer.close()
        self._clips.close()
        result = self.result
        result.shards = [s.name for s in self.writer.committed]
        result.clips = f"published-{digest[:20]}.parquet"
        storage.commit_file(self._clips_tmp, storage.join(self.work_dir, result.clips))
        record = storage.join(self.work_dir, RECORD_FILE)
        if self.remote:
            sizes = storage.file_sizes(self.live)
            result.bytes = sum(sizes.get(n, 0) for n in result.shards)
            previous = [n for n in sizes if n.endswith(".tar") and n not in result.shards]
            _write_record(record, digest, result)  # the commit point
            for name in previous:  # the previous set: the record no longer lists it
                storage.remove(storage.join(self.live, name))
        else:
            self.target.mkdir(parents=True, exist_ok=True)
            result.bytes = sum((self.target / n).stat().st_size for n in result.shards)
            live, old = Path(self.live), Path(self.root) / (SHARDS_SUBDIR + OLD_SUFFIX)
            if live.exists():
                os.replace(live, old)
            os.replace(self.target, live)
            shutil.rmtree(old, ignore_errors=True)
            _write_record(record, digest, result)
        for p in storage.glob(storage.join(self.work_dir, "published-*.parquet")):  # earlier records' tables
            if storage.basename(p) != result.clips:
                storage.remove(p)
        result.seconds = round(time.time() - self.t0, 3)
        return result

    def abort(self) -> None:
        """Drop what this publish wrote; the current set stays as it was."""
        self.writer.abort()
        try:
            self._clips.close()
        finally:
            if os.path.exists(self._clips_tmp):
                os.unlink(self._clips_tmp)
        if self.remote:
            for s in self.writer.committed:
                storage.remove(storage.join(self.live, s.name))
        else:
            shutil.rmtree(self.target, ignore_errors=True)


def _write_record(path: str | Path, digest: str, result: PublishResult) -> None:
    storage.write_bytes_atomic(path, json.dumps({"digest": digest, "shards": result.shards, "bytes": result.bytes,
                                                 "clips": result.clips}).encode())


def publish(dataset_dir: str | Path, work_shards: str | Path, rows: Iterable[dict],
            sample_json: Callable[[dict], bytes], cfg: ShardWriterConfig, work_dir: str | Path,
            skip_media: tuple[str, ...] = ("json",)) -> PublishResult:
    """Write ``rows`` (the ok clips, each with ``clip_id`` and ``work_shard``) as ``DIR/shards``, in one
    call (the build's finish streams them through :class:`Publication` instead).

    Members of a clip other than ``skip_media`` are copied from its work shard; the JSON member is
    ``sample_json(row)``. A clip whose media cannot be found in its work shard is left out and listed in
    ``missing`` with the reason (the caller records it as failed). When the set would be byte-identical to
    the one published last time (same rows, same JSON, same writer settings) nothing is written. A write
    error (disk full) leaves the current set as it was.
    """
    rows = list(rows)
    metas = [sample_json(r) for r in rows]
    digest = Digest(cfg)
    for r, m in zip(rows, metas):
        digest.add(r, m)
    digest = digest.hexdigest()
    same = unchanged(dataset_dir, work_dir, digest)
    if same is not None:
        try:
            same.shard_of, same.missing = RecordedClips(work_dir, same).take([r["clip_id"] for r in rows])
            return same
        except RecordMismatch:
            pass  # the record's table was edited by hand: publish again
    pub = Publication(dataset_dir, work_shards, cfg, work_dir, skip_media)
    try:
        pub.result.shard_of, pub.result.missing = pub.add(rows, metas)
        return pub.commit(digest)
    except BaseException:
        pub.abort()
        raise
