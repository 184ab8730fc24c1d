"""Tar header scanning: where every member's bytes live, without reading them.

The index stores (offset, size) for each member so a reader can fetch one sample with a single
``pread`` and a query can select samples without opening the tars. Grouping follows WebDataset: the
key is the member name up to the first ``.`` of its base name, the extension is the rest, and a
sample is a run of consecutive members with the same key.
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class TarMember:
    name: str
    key: str
    ext: str
    offset: int   # byte offset of the member's data in the tar file
    size: int


@dataclass
class TarSample:
    key: str
    members: dict[str, TarMember] = field(default_factory=dict)   # ext -> member


@dataclass
class TarScan:
    path: Path
    file_size: int
    samples: list[TarSample]
    error: str | None = None   # set when the tar is unreadable or truncated past some header


def split_name(name: str) -> tuple[str, str]:
    """``'a/b/000123.latent.npy'`` -> ``('a/b/000123', 'latent.npy')`` (WebDataset's key/extension rule)."""
    head, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, ext if dot else ""


def scan_tar(path: str | Path) -> TarScan:
    """Read member headers of one tar. Truncation is reported in ``error``, never raised."""
    path = Path(path)
    file_size = os.path.getsize(path)
    samples: list[TarSample] = []
    error = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = split_name(info.name)
                if info.offset_data + info.size > file_size:
                    error = f"truncated: member {info.name} ends at {info.offset_data + info.size} > file size {file_size}"
                    break
                if not samples or samples[-1].key != key:
                    samples.append(TarSample(key))
                if ext in samples[-1].members:
                    error = f"duplicate member {info.name}"
                    continue
                samples[-1].members[ext] = TarMember(info.name, key, ext, info.offset_data, info.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        error = f"unreadable tar: {type(exc).__name__}: {exc}"
    if error is None:
        error = _check_end_marker(path, samples, file_size)
    return TarScan(path, file_size, samples, error)


def _check_end_marker(path: Path, samples: list[TarSample], file_size: int) -> str | None:
    """A tar cut at a header boundary reads as a shorter valid tar; only the missing end-of-archive
    marker (two zero blocks after the last member) gives it away."""
    end = 0
    for s in samples:
        for m in s.members.values():
            end = max(end, m.offset + (m.size + 511) // 512 * 512)
    with open(path, "rb") as f:
        tail = os.pread(f.fileno(), 1024, end)
    if len(tail) < 1024 or tail.strip(b"\0"):
        return f"truncated: no end-of-archive marker after byte {end} (file size {file_size})"
    return None


def read_member(path: str | Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), size, offset)
    if len(data) != size:
        raise OSError(f"{path}: short read at {offset} ({len(data)} of {size} bytes)")
    return data
