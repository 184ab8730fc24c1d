"""Conditional writes on object storage, and the store's clock: what a lease on a remote output is made of.

A store that compares versions on the server lets two writers race and exactly one win:

- **S3** and its clones (s3fs): the version is the ETag; ``PUT`` with ``If-None-Match: *`` (create) or
  ``If-Match: <ETag>``, ``DELETE`` with ``If-Match``; a failed condition is a 412 (or a 409 when two
  conditional writes meet).

Any other protocol has no conditional write here: :func:`supports` is False and :func:`put_if` /
:func:`remove_if` raise :class:`StorageError` saying so, never a silent unconditional write.

The store's clock: each version carries the time the store stamped on it (S3 ``LastModified``, GCS
``updated``, Azure ``last_modified``, a local file's mtime), and :func:`store_time` reads "now" off the
same store, so a lease can be judged without comparing the wall clocks of different machines. Those
stamps are whole seconds on S3 and Azure (HTTP dates): compare them with :data:`CLOCK_SLACK_S` to spare.
"""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from reelforge.storage import StorageError, filesystem, protocol

CLOCK_SLACK_S = 1.0   # the resolution of S3's and Azure's Last-Modified (an HTTP date): whole seconds

S3_PROTOCOLS = {"s3", "s3a"}


@dataclass(frozen=True)
class Version:
    """One version of an object: ``tag`` is what :func:`put_if` compares (None where the store has no
    conditional writes); ``modified`` the store's time of that write, epoch seconds (None if unknown)."""
    tag: str | None
    modified: float | None


def supports(url: str | os.PathLike) -> bool:
    """True where :func:`put_if` works: the server compares versions atomically (S3 and its clones)."""
    return _backend(str(url)) is not None


def read_versioned(url: str | os.PathLike) -> tuple[bytes, Version]:
    """``(bytes, version)`` of the object at ``url``.

    The version is read BEFORE the bytes: if the object changes in between, the tag is the older one, so
    a ``put_if`` decided on these bytes fails instead of overwriting a version nobody read.
    FileNotFoundError when there is no object."""
    url = str(url)
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    info = fs.info(path)
    backend = _backend(url)
    version = Version(backend.tag(info) if backend else None, modified_time(info))
    return fs.cat_file(path), version


def put_if(url: str | os.PathLike, data: bytes, tag: str | None = None) -> str | None:
    """Write ``data`` at ``url`` in one request only if the object there is still version ``tag``
    (``None``: only if there is no object). Returns the new version's tag, or None when the condition
    failed (another writer got there first, or the object changed or vanished). The server decides
    atomically: of several callers holding the same ``tag`` exactly one succeeds."""
    url = str(url)
    backend = _require(url)
    fs, path = filesystem(url)
    try:
        return backend.put(fs, path, data, tag)
    finally:
        fs.invalidate_cache(path)


def remove_if(url: str | os.PathLike, tag: str) -> bool:
    """Delete the object at ``url`` if it is still version ``tag``; False (nothing deleted) otherwise."""
    url = str(url)
    backend = _require(url)
    fs, path = filesystem(url)
    try:
        return backend.remove(fs, path, tag)
    finally:
        fs.invalidate_cache(path)


def store_time(near: str | os.PathLike) -> float:
    """Now by the store's clock, epoch seconds: a scratch object is written beside ``near`` (an object
    URL), its stamp read back, and it is deleted. Three requests; OSError if the store gives no time."""
    url = f"{str(near).rstrip('/')}.now-{uuid.uuid4().hex}"
    fs, path = filesystem(url)
    fs.pipe_file(path, b"")
    try:
        fs.invalidate_cache(path)
        stamp = modified_time(fs.info(path))
    finally:
        try:
            fs.rm(path)
        except OSError:
            pass  # a stray empty scratch object costs nothing; the time is what was asked
    if stamp is None:
        raise OSError(f"{url}: the {protocol(url)}:// store gives its objects no modification time")
    return stamp


def modified_time(info: dict) -> float | None:
    """The store's stamp of an fsspec ``info`` entry, epoch seconds (S3 ``LastModified``, Azure
    ``last_modified``, gcsfs and local ``mtime``, GCS ``updated``, memory ``created``)."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    return None


# ---- the three stores --------------------------------------------------------------------------------

def _precondition_failed(exc: BaseException) -> bool:
    """s3fs turns S3's 412 PreconditionFailed into OSError(EINVAL, "...pre-conditions you specified did
    not hold"); a 409 ConditionalRequestConflict (a concurrent conditional write) means the same to us."""
    text = str(exc).lower().replace("-", "")
    return "precondition" in text or "conditionalrequestconflict" in text


class _S3:
    @staticmethod
    def tag(info: dict) -> str:
        return info["ETag"]

    @staticmethod
    def put(fs, path: str, data: bytes, tag: str | None) -> str | None:
        try:
            if tag is None:
                out = fs.pipe_file(path, data, mode="create")
            else:
                out = fs.pipe_file(path, data, IfMatch=tag)
        except FileNotFoundError:  # If-Match on an object that is gone
            return None
        except FileExistsError:
            return None
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
        return out["ETag"]

    @staticmethod
    def remove(fs, path: str, tag: str) -> bool:
        """A DELETE with If-Match where the server takes it; a server that refuses the header gets a
        look-then-delete (a window of one request between the two)."""
        bucket, key, _ = fs.split_path(path)
        try:
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=tag)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            fs.invalidate_cache(path)
            try:
                if fs.info(path)["ETag"] != tag:
                    return False
            except FileNotFoundError:
                return False
            fs.rm(path)
            return True


def _backend(url: str):
    proto = protocol(url)
    if proto in S3_PROTOCOLS:
        return _S3
    return None


def _require(url: str):
    backend = _backend(url)
    if backend is None:
        raise StorageError(f"{url}: {protocol(url)}:// has no conditional writes here (s3:// has)")
    return backend
