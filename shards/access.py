"""One way to read a sample's members: by the byte offsets in ``index.parquet``.

Every tool that fetches member bytes of an indexed dataset (the readers, export, verify, the report's
contact sheet, the captioning job) goes through ``open_member`` / ``read_sample``, so there is one place
that knows how offsets, sizes, short reads and open file handles work. Reading a tar front to back
(``tarscan``, import, index building) is a different job and stays in ``shards/tarscan.py``.

File handles are cached per process (an LRU of ``os.open`` descriptors keyed by path). The cache notices
a fork (another pid) and starts empty there, so DataLoader workers and Ray workers never share a
descriptor's file position (``pread`` does not use it anyway, but a closed-in-parent fd would be stale).

On object storage there are two ways to fetch, chosen by the caller who knows its order of reads:
random access (the default: one ranged GET per sample, its members together) for the trainer's reader,
whose plan shuffles samples across the dataset, so a read-ahead would fetch blocks it never uses; and
``sequential=True`` for a caller that walks tars front to back in index order (export): one open file per
tar with fsspec's read-ahead, a few large GETs per tar instead of one per sample.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from reelforge import storage
from reelforge.shards.spec import INDEXED_EXTS, SHARDS_SUBDIR, member_column


SPAN_CACHE_BYTES = 64 << 20
READ_BLOCK = 16 << 20   # bytes per ranged GET of a sequential read of a tar on object storage


class ShardFiles:
    """An LRU of read-only file descriptors (``max_open`` at most), valid in the process that opened them.

    ``sequential``: remote tars are read through one open file at a time with a read-ahead of
    :data:`READ_BLOCK` (for callers reading tars front to back; see the module docstring)."""

    def __init__(self, max_open: int = 64, sequential: bool = False):
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = max_open
        self.sequential = sequential
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._pid = os.getpid()
        # remote samples read whole, (url, start) -> bytes, newest last: a batch reads every caption, then
        # every video, so one entry would miss; bounded by SPAN_CACHE_BYTES
        self._spans: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._stream: tuple[str, object] | None = None   # sequential: (url, its open fsspec file)

    def _forked(self) -> None:
        if self._pid != os.getpid():  # the parent's descriptors and connections are not ours to reuse or close
            self._fds, self._stream, self._pid = OrderedDict(), None, os.getpid()

    def fd(self, path: str | Path) -> int:
        self._forked()
        key = str(path)
        fd = self._fds.get(key)
        if fd is not None:
            self._fds.move_to_end(key)
            return fd
        fd = os.open(key, os.O_RDONLY)
        self._fds[key] = fd
        if len(self._fds) > self.max_open:
            os.close(self._fds.popitem(last=False)[1])
        return fd

    def pread(self, path: str | Path, size: int, offset: int) -> bytes:
        """Exactly ``size`` bytes at ``offset`` of ``path``; OSError on a short read (truncated shard).
        On object storage (a URL) this is one ranged GET; nothing is held open."""
        if storage.is_remote(path) and self.sequential:
            data = self._sequential_read(str(path), size, offset)
        elif storage.is_remote(path):
            data = storage.read_bytes(path, offset, offset + size)
        else:
            data = os.pread(self.fd(path), size, offset)
        if len(data) != size:
            raise OSError(f"{storage.basename(path)}: short read at {offset} ({len(data)} of {size} bytes)")
        return data

    def _sequential_read(self, url: str, size: int, offset: int) -> bytes:
        """Read through the open file of ``url`` (opened here, the previous tar's closed): its read-ahead
        serves the next members from the block it already fetched."""
        self._forked()
        if self._stream is None or self._stream[0] != url:
            self._close_stream()
            fs, path = storage.filesystem(url)
            self._stream = (url, fs.open(path, "rb", block_size=READ_BLOCK, cache_type="readahead"))
        f = self._stream[1]
        f.seek(offset)
        return f.read(size)

    def _close_stream(self) -> None:
        if self._stream is not None:
            stream, self._stream = self._stream[1], None
            stream.close()

    def pread_span(self, path: str, size: int, offset: int, span: tuple[int, int]) -> bytes:
        """``pread`` of a member on object storage that fetches the whole ``span`` (its sample's members,
        contiguous in the tar) with one ranged GET and serves the sample's other members from it."""
        key = (str(path), span[0])
        data = self._spans.get(key)
        if data is None or offset + size > span[0] + len(data):
            data = self._spans[key] = self.pread(path, span[1] - span[0], span[0])
            while sum(len(v) for v in self._spans.values()) > SPAN_CACHE_BYTES and len(self._spans) > 1:
                self._spans.popitem(last=False)
        self._spans.move_to_end(key)
        return data[offset - span[0]:offset - span[0] + size]

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._close_stream()
        self._fds.clear()
        self._spans.clear()
        self._stream = None

    def __getstate__(self):  # pickled into workers: descriptors and open remote files stay behind
        return {"max_open": self.max_open, "sequential": self.sequential}

    def __setstate__(self, state):
        self.__init__(state["max_open"], state.get("sequential", False))

    def __del__(self):
        self.close()


_DEFAULT = ShardFiles()


def shard_dir(dataset: str | Path) -> Path | str:
    """A dataset dir, an ``index.parquet`` path or a shards dir -> the folder holding the tars (a URL
    string on object storage, where a location named ``shards`` is taken as the shards dir itself)."""
    if storage.is_remote(dataset):
        url = str(dataset).rstrip("/")
        if url.endswith(".parquet"):
            url = storage.parent(url)
        return url if storage.basename(url) == SHARDS_SUBDIR else storage.join(url, SHARDS_SUBDIR)
    p = Path(dataset)
    if p.suffix == ".parquet":
        p = p.parent
    return p if p.name == SHARDS_SUBDIR and not (p / SHARDS_SUBDIR).is_dir() else p / SHARDS_SUBDIR


def has_member(row: Mapping, ext: str) -> bool:
    return row.get(f"{member_column(ext)}_offset") is not None


def open_member(dataset: str | Path, row: Mapping, ext: str, files: ShardFiles | None = None) -> bytes:
    """The bytes of member ``<key>.<ext>`` of the sample an index row describes.

    ``row`` needs ``shard`` and ``<col>_offset``/``<col>_size`` (an ``index.parquet`` row). Raises KeyError
    when the sample has no such member and OSError when the shard is missing or truncated.
    """
    col = member_column(ext)
    offset, size = row.get(f"{col}_offset"), row.get(f"{col}_size")
    if offset is None or size is None:
        raise KeyError(f"sample {row.get('clip_id', row.get('key'))} has no {ext} member")
    path, offset, size = storage.join(shard_dir(dataset), row["shard"]), int(offset), int(size)
    files = files or _DEFAULT
    if storage.is_remote(path) and not files.sequential:
        span = _sample_span(row)
        # one GET for the sample (video + caption + JSON) unless other members would dwarf this one
        if span[0] <= offset and offset + size <= span[1] and span[1] - span[0] <= 2 * size + (1 << 20):
            return files.pread_span(path, size, offset, span)
    return files.pread(path, size, offset)


def _sample_span(row: Mapping) -> tuple[int, int]:
    """``[start, end)`` of all the members an index row lists."""
    spans = []
    for ext in INDEXED_EXTS:
        offset, size = row.get(f"{member_column(ext)}_offset"), row.get(f"{member_column(ext)}_size")
        if offset is not None and size is not None:
            spans.append((int(offset), int(offset) + int(size)))
    return min(s for s, _ in spans), max(e for _, e in spans)


def read_sample(dataset: str | Path, row: Mapping, exts: tuple[str, ...] = INDEXED_EXTS,
                files: ShardFiles | None = None) -> dict[str, bytes]:
    """``{ext: bytes}`` of every member in ``exts`` the sample has (absent members are left out), in
    ``exts`` order. Members are fetched in tar order, so a sequential read never seeks back."""
    present = [ext for ext in exts if has_member(row, ext)]
    got = {ext: open_member(dataset, row, ext, files)
           for ext in sorted(present, key=lambda e: int(row[f"{member_column(e)}_offset"]))}
    return {ext: got[ext] for ext in present}
