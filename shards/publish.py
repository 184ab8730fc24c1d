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
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from reelforge import storage
from reelforge.shards.spec import SHARDS_SUBDIR
from reelforge.shards.tarscan import scan_tar
from reelforge.shards.writer import ShardWriter, ShardWriterConfig

NEW_SUFFIX, OLD_SUFFIX = ".new", ".old"
RECORD_FILE = "published.json"   # in the work dir: what the current DIR/shards was published from


@dataclass
class PublishResult:
    shard_of: dict[str, str] = field(default_factory=dict)   # clip_id -> published shard name
    shards: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    skipped: bool = False   # DIR/shards already held exactly this set: nothing written
    missing: dict[str, str] = field(default_factory=dict)   # clip_id -> why its media could not be copied


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


def publish(dataset_dir: str | Path, work_shards: Path, rows: Iterable[dict], sample_json: Callable[[dict], bytes],
            cfg: ShardWriterConfig, work_dir: Path, skip_media: tuple[str, ...] = ("json",)) -> PublishResult:
    """Write ``rows`` (the ok clips, each with ``clip_id`` and ``work_shard``) as ``DIR/shards``.

    Members of a clip other than ``skip_media`` are copied from its work shard; the JSON member is
    ``sample_json(row)``. A clip whose media cannot be found in its work shard is left out and listed in
    ``missing`` with the reason (the caller records it as failed). When the set would be byte-identical to
    the one published last time (same rows, same JSON, same writer settings) nothing is written. A write
    error (disk full) leaves the current set as it was.
    """
    t0 = time.time()
    rows = list(rows)
    metas = [sample_json(r) for r in rows]
    digest = hashlib.sha256(json.dumps([cfg.target_bytes, cfg.prefix]).encode())
    for r, m in zip(rows, metas):
        digest.update(r["clip_id"].encode() + b"\0" + str(r["work_shard"]).encode() + b"\0" + m + b"\0")
    digest = digest.hexdigest()
    record_path = storage.join(work_dir, RECORD_FILE)
    record = _read_record(record_path)
    live_names = sorted(n for n in storage.listdir(storage.join(dataset_dir, SHARDS_SUBDIR)) if n.endswith(".tar"))
    if record.get("digest") == digest and storage.isdir(storage.join(dataset_dir, SHARDS_SUBDIR)) and \
            live_names == sorted(record.get("shards", [])):
        return PublishResult(shard_of=record["shard_of"], shards=record["shards"], bytes=record["bytes"],
                             skipped=True)
    if storage.is_remote(dataset_dir):
        result = _publish_remote(str(dataset_dir), str(work_shards), rows, metas, cfg, skip_media)
        storage.write_bytes_atomic(record_path, json.dumps({
            "digest": digest, "shards": result.shards, "bytes": result.bytes, "shard_of": result.shard_of}).encode())
        for name in live_names:  # the previous set: the record no longer lists it
            if name not in result.shards:
                storage.remove(storage.join(dataset_dir, SHARDS_SUBDIR, name))
        result.seconds = round(time.time() - t0, 3)
        return result
    root = Path(dataset_dir)
    live = root / SHARDS_SUBDIR
    record_path = Path(record_path)

    # where each needed sample lives in its work shard; every work shard is scanned once. A clip whose
    # media is gone (a work tar deleted or cut short by hand) is reported, not published, not fatal.
    needed: dict[str, set[str]] = {}
    for r in rows:
        needed.setdefault(r["work_shard"], set()).add(r["clip_id"])
    where: dict[str, tuple[Path, dict]] = {}
    result = PublishResult()
    for shard, keys in needed.items():
        path = Path(work_shards) / str(shard)
        if not path.is_file():
            result.missing.update({k: f"publish: work shard {path} is missing" for k in keys})
            continue
        scan = scan_tar(path)
        for s in scan.samples:
            if s.key in keys and not s.error and "mp4" in s.members:
                where[s.key] = (path, s.members)
        result.missing.update({k: f"publish: no complete sample {k} in work shard {path}"
                               for k in keys if k not in where})

    staging = root / (SHARDS_SUBDIR + NEW_SUFFIX)
    if staging.exists():
        shutil.rmtree(staging)

    def position(i: int) -> tuple[str, int]:  # read each work shard front to back
        members = where.get(rows[i]["clip_id"], (None, {}))[1]
        return str(rows[i]["work_shard"]), min((m.offset for m in members.values()), default=0)

    order = sorted(range(len(rows)), key=position)
    writer = ShardWriter(staging, ShardWriterConfig(target_bytes=cfg.target_bytes, prefix=cfg.prefix,
                                                    max_open_seconds=0), start_index=_next_index(live, cfg.prefix))
    handles: dict[Path, int] = {}
    try:
        for i in order:
            r, meta = rows[i], metas[i]
            if r["clip_id"] not in where:
                continue  # in result.missing
            path, members = where[r["clip_id"]]
            fd = handles.get(path)
            if fd is None:
                fd = handles[path] = os.open(path, os.O_RDONLY)
            out = {}
            for ext, m in members.items():
                if ext in skip_media:
                    continue
                data = os.pread(fd, m.size, m.offset)
                if len(data) != m.size:
                    raise ValueError(f"{path.name}:{m.name}: short read ({len(data)} of {m.size} bytes)")
                out[ext] = data
            out["json"] = meta
            result.shard_of[r["clip_id"]] = writer.write(r["clip_id"], out)
        writer.close()
    except BaseException:
        writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        for fd in handles.values():
            os.close(fd)
    if not staging.exists():
        staging.mkdir(parents=True)
    result.shards = [s.name for s in writer.committed]
    result.bytes = sum((staging / n).stat().st_size for n in result.shards)

    old = root / (SHARDS_SUBDIR + OLD_SUFFIX)
    if live.exists():
        os.replace(live, old)
    os.replace(staging, live)
    shutil.rmtree(old, ignore_errors=True)
    tmp = record_path.with_name(record_path.name + ".tmp")
    tmp.write_text(json.dumps({"digest": digest, "shards": result.shards, "bytes": result.bytes,
                               "shard_of": result.shard_of}))
    os.replace(tmp, record_path)
    result.seconds = round(time.time() - t0, 3)
    return result


def _publish_remote(root: str, work_shards: str, rows: list[dict], metas: list[bytes], cfg: ShardWriterConfig,
                    skip_media: tuple[str, ...]) -> PublishResult:
    """:func:`publish` on object storage, up to the record (the caller writes it): each work shard, in name
    order, is fetched once, scanned, and its kept clips copied in tar order straight into ``DIR/shards``
    under new names. A failure removes the tars this call uploaded; the current set stays listed."""
    live = storage.join(root, SHARDS_SUBDIR)
    result = PublishResult()
    by_shard: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_shard.setdefault(str(r["work_shard"]), []).append(i)
    writer = ShardWriter(live, ShardWriterConfig(target_bytes=cfg.target_bytes, prefix=cfg.prefix, max_open_seconds=0),
                         start_index=_next_index(live, cfg.prefix))
    try:
        for shard in sorted(by_shard):
            url = storage.join(work_shards, shard)
            keys = {rows[i]["clip_id"] for i in by_shard[shard]}
            if not storage.exists(url):
                result.missing.update({k: f"publish: work shard {url} is missing" for k in keys})
                continue
            with storage.local_source(url) as local:
                where = {s.key: s.members for s in scan_tar(local).samples
                         if s.key in keys and not s.error and "mp4" in s.members}
                result.missing.update({k: f"publish: no complete sample {k} in work shard {url}"
                                       for k in keys if k not in where})
                order = sorted((i for i in by_shard[shard] if rows[i]["clip_id"] in where),
                               key=lambda i: min(m.offset for m in where[rows[i]["clip_id"]].values()))
                with open(local, "rb") as f:
                    for i in order:
                        cid, out = rows[i]["clip_id"], {}
                        for ext, m in where[cid].items():
                            if ext in skip_media:
                                continue
                            out[ext] = os.pread(f.fileno(), m.size, m.offset)
                            if len(out[ext]) != m.size:
                                raise ValueError(f"{shard}:{m.name}: short read ({len(out[ext])} of {m.size} bytes)")
                        out["json"] = metas[i]
                        result.shard_of[cid] = writer.write(cid, out)
        writer.close()
    except BaseException:
        writer.abort()
        for s in writer.committed:
            storage.remove(storage.join(live, s.name))
        raise
    result.shards = [s.name for s in writer.committed]
    sizes = storage.file_sizes(live)
    result.bytes = sum(sizes.get(n, 0) for n in result.shards)
    return result
