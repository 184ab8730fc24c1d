"""Atomic, size-targeted WebDataset tar writer.

A shard is written to ``<name>.tar.tmp`` and renamed to ``<name>.tar`` only when complete, so a killed
job never leaves a half-written tar under a final name. ``on_commit`` is called with the shard name and
the keys it holds right after the rename: the manifest records a sample as landed only then.

A shard is committed when it reaches ``target_bytes`` or, after a write, when it has been open for
``max_open_seconds``: a slow build still commits its progress about once a minute, so a kill loses at most
that much work. A writer refuses a key it already wrote (two samples with one key would be one sample to
WebDataset and an ambiguous row in the index).

``out_dir`` may be a URL (``s3://b/ds/_work/shards``): the open shard is then a file in this process's
temp dir and the commit is one upload (``reelforge.storage.commit_file``), so an object appears whole or
not at all, as a renamed tar does on disk.
"""
from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from reelforge import storage
from reelforge.shards.spec import DEFAULT_TARGET_BYTES, SHARD_PATTERN


@dataclass
class ShardWriterConfig:
    target_bytes: int = DEFAULT_TARGET_BYTES
    prefix: str = "shard"
    max_open_seconds: float = 60.0   # commit an open shard after a write once it is this old (0 = never)

    def __post_init__(self):
        if self.target_bytes < 1024:
            raise ValueError(f"target_bytes must be >= 1024, got {self.target_bytes}")
        if self.max_open_seconds < 0:
            raise ValueError(f"max_open_seconds must be >= 0, got {self.max_open_seconds}")


@dataclass
class CommittedShard:
    name: str
    keys: list[str] = field(default_factory=list)   # empty when the writer does not remember keys
    bytes: int = 0
    samples: int = 0


class ShardWriteError(OSError):
    """The output cannot be written (disk full, read-only, over quota). ``str()`` is one line naming the
    path, the OS error and what the writer had committed before it; the open shard's ``.tmp`` is gone,
    so a resume redoes exactly the uncommitted samples."""

    def __init__(self, path: Path | str, cause: OSError, shards: int, samples: int):
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.shards, self.samples = shards, samples
        self.message = (f"cannot write {path}: {cause.strerror or cause}; committed before it: {shards} "
                        f"shard(s), {samples} sample(s); the unfinished shard was removed")

    def __str__(self) -> str:
        return self.message


class ShardWriter:
    def __init__(self, out_dir: str | Path, cfg: ShardWriterConfig | None = None,
                 on_commit: Callable[[CommittedShard], None] | None = None, start_index: int | None = None,
                 known_keys: set[str] | None = None, remember_keys: bool = True):
        """``known_keys``: keys committed by earlier runs into the same place (a resumed build), refused too.
        ``remember_keys=False``: keep no per-sample state (no repeated-key check, empty ``keys``), for a
        caller that writes each key once by construction and may write millions (the publish)."""
        self.cfg = cfg or ShardWriterConfig()
        self.remote = storage.is_remote(out_dir)
        self.out_dir = str(out_dir) if self.remote else Path(storage.local_path(out_dir))
        storage.makedirs(self.out_dir)
        self.on_commit = on_commit
        self.index = start_index if start_index is not None else self._next_free_index()
        self._tar: tarfile.TarFile | None = None
        self._tmp_path: Path | None = None
        self._current: CommittedShard | None = None
        self.committed: list[CommittedShard] = []
        self._keys: set[str] = set(known_keys or ())
        self.remember_keys = remember_keys
        self._opened_at = 0.0
        # a crash leaves *.tmp files behind: they were never committed, so remove them (on object
        # storage the open shard was never there: it lived in the dead process's temp dir)
        if not self.remote:
            for stale in self.out_dir.glob(f"{self.cfg.prefix}-*.tar.tmp"):
                stale.unlink()

    def _next_free_index(self) -> int:
        stems = [storage.basename(p)[:-len(".tar")]
                 for p in storage.glob(storage.join(self.out_dir, f"{self.cfg.prefix}-*.tar"))]
        used = [int(s.rsplit("-", 1)[1]) for s in stems if s.rsplit("-", 1)[1].isdigit()]
        return max(used) + 1 if used else 0

    def current_name(self) -> str:
        return SHARD_PATTERN.format(prefix=self.cfg.prefix, index=self.index)

    def _open(self) -> None:
        name = self.current_name()
        if self.remote:
            fd, tmp = tempfile.mkstemp(prefix="reelforge-shard-", suffix=f"-{name}.tmp")
            os.close(fd)
            self._tmp_path = Path(tmp)
        else:
            self._tmp_path = self.out_dir / (name + ".tmp")
        self._tar = tarfile.open(self._tmp_path, "w", format=tarfile.USTAR_FORMAT)
        self._current = CommittedShard(name=name)
        self._opened_at = time.monotonic()

    def write(self, key: str, members: dict[str, bytes]) -> str:
        """Add one sample; returns the name of the shard it will land in."""
        if "." in key or "/" in key:
            raise ValueError(f"sample key must not contain '.' or '/': {key!r}")
        if key in self._keys:
            raise ValueError(f"sample key {key!r} was already written by this writer")
        try:
            if self._tar is None:
                self._open()
            now = time.time()
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                info.mtime = now
                info.mode = 0o644
                self._tar.addfile(info, io.BytesIO(data))
                self._current.bytes += len(data) + 512
            # tarfile keeps a TarInfo per member added; a write-only tar never reads them back, and a
            # shard of tiny clips would otherwise hold ~100k of them until it is committed
            self._tar.members.clear()
        except OSError as exc:
            raise self._failed(exc) from exc
        self._current.samples += 1
        if self.remember_keys:
            self._current.keys.append(key)
            self._keys.add(key)
        name = self._current.name
        too_old = self.cfg.max_open_seconds and time.monotonic() - self._opened_at >= self.cfg.max_open_seconds
        if self._current.bytes >= self.cfg.target_bytes or too_old:
            self.flush()
        return name

    def flush(self) -> CommittedShard | None:
        """Close and commit the open shard (if any)."""
        if self._tar is None:
            return None
        final = storage.join(self.out_dir, self._current.name)
        try:
            self._tar.close()
            storage.commit_file(self._tmp_path, final)  # fsync + rename on disk, one upload on object storage
        except OSError as exc:
            raise self._failed(exc) from exc
        shard = self._current
        self.committed.append(shard)
        self._tar, self._tmp_path, self._current = None, None, None
        self.index += 1
        if self.on_commit:
            self.on_commit(shard)
        return shard

    def close(self) -> None:
        self.flush()

    def _failed(self, exc: OSError) -> ShardWriteError:
        """Drop the open shard after a failed write and say what had been committed before it."""
        path = self._tmp_path or self.out_dir
        try:
            self.abort()
        except OSError:  # closing a tar on a full disk fails again; its .tmp is unlinked regardless
            pass
        return ShardWriteError(path, exc, len(self.committed), sum(s.samples for s in self.committed))

    def abort(self) -> None:
        """Drop the open shard (its ``.tmp``): nothing uncommitted is left under any name."""
        if self._tar is not None:
            try:
                self._tar.close()
            finally:
                self._tmp_path.unlink(missing_ok=True)
                self._tar, self._tmp_path, self._current = None, None, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            self.close()
        else:  # failed mid-shard: leave nothing under a final name
            self.abort()
