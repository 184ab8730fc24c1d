"""Tar header scanning: where every member's bytes live, without reading them.

The index stores (offset, size) for each member so a reader can fetch one sample with a single
``pread`` and a query can select samples without opening the tars. Grouping follows WebDataset: the
key is the member name up to the first ``.`` of its base name, the extension is the rest, and a
sample is a run of consecutive members with the same key.

Problems are pinned on the sample they belong to (``TarSample.error``), never on a neighbour: a member
whose name is absolute or climbs out with ``..``, a symlink or hard link, a fifo or device, a member
that repeats within its sample, a key that repeats later in the tar, and the member the tar breaks off
in. Such a member is refused (not listed); its sample is kept, with the reason, so it gets a row.
``TarScan.error`` is for the tar as a whole (unreadable, truncated).
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
    error: str | None = None   # why this sample is bad (a refused, repeated or truncated member)

    def fail(self, reason: str) -> None:
        self.error = reason if self.error is None else f"{self.error}; {reason}"


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


def refusal(info: tarfile.TarInfo) -> str | None:
    """Why a member may not be a sample's member (its name or its type), or None."""
    name = info.name
    if name.startswith("/"):
        return f"refused member {name!r}: absolute name (a tool extracting it would write outside its folder)"
    if ".." in name.split("/"):
        return f"refused member {name!r}: '..' in the name (path traversal out of the extraction folder)"
    if info.issym():
        return f"refused member {name!r}: a symlink to {info.linkname!r} (its bytes are not in the tar)"
    if info.islnk():
        return f"refused member {name!r}: a hard link to {info.linkname!r} (its bytes are not in the tar)"
    if not info.isfile():
        return f"refused member {name!r}: not a regular file (tar type {info.type!r})"
    return None


def scan_tar(path: str | Path) -> TarScan:
    """Read member headers of one tar. Truncation is reported in ``error``, never raised."""
    path = Path(path)
    file_size = os.path.getsize(path)
    samples: list[TarSample] = []
    first_at: dict[str, int] = {}   # key -> index of its first sample
    end = 0                         # where the last member read (refused ones included) ends
    error = None
    try:
        with tarfile.open(path, "r:") as tar:
            for info in tar:
                end = max(end, info.offset_data + (info.size + 511) // 512 * 512 if info.isreg() else info.offset_data)
                if info.isdir():  # folder entries some tools write: no sample of their own
                    continue
                key, ext = split_name(info.name)
                if not samples or samples[-1].key != key:
                    samples.append(TarSample(key))
                    if key in first_at:  # WebDataset would yield two samples with one key
                        samples[-1].fail(f"key {key!r} repeats: sample #{len(samples) - 1} of the tar, "
                                         f"first seen as sample #{first_at[key]}")
                    first_at.setdefault(key, len(samples) - 1)
                sample = samples[-1]
                why = refusal(info)
                if why:
                    sample.fail(why)
                    continue
                if info.offset_data + info.size > file_size:
                    error = f"truncated: member {info.name} ends at {info.offset_data + info.size} > file size {file_size}"
                    sample.fail(error)
                    break
                if ext in sample.members:
                    sample.fail(f"duplicate member {info.name!r} (the first copy is kept)")
                    continue
                sample.members[ext] = TarMember(info.name, key, ext, info.offset_data, info.size)
    except (tarfile.TarError, EOFError, OSError) as exc:
        error = f"unreadable tar: {type(exc).__name__}: {exc}"
    if error is None:
        error = _check_end_marker(path, end, file_size)
    return TarScan(path, file_size, samples, error)


def _check_end_marker(path: Path, end: int, file_size: int) -> str | None:
    """A tar cut at a header boundary reads as a shorter valid tar; only the missing end-of-archive
    marker (two zero blocks after the last member) gives it away."""
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
