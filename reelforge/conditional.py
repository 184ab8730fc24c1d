"""Conditional writes on object storage, and the store's clock: what a lease on a remote output is made of.

A store that compares versions on the server lets two writers race and exactly one win. Three do, each
through the fsspec backend the project already opens it with:

- **S3** and its clones (s3fs): the version is the ETag; ``PUT`` with ``If-None-Match: *`` (create) or
  ``If-Match: <ETag>``, ``DELETE`` with ``If-Match``; a failed condition is a 412 (or a 409 when two
  conditional writes meet).
- **GCS** (gcsfs): the version is the object's generation; upload and delete with ``ifGenerationMatch``
  (``0``: only if there is no object). gcsfs's ``pipe_file`` knows only ``ifGenerationMatch=0``, so the
  upload is sent through its authenticated ``call`` to the JSON API's media upload; gcsfs turns the 412
  of a failed condition into ``FileExistsError``.
- **Azure Blob** (adlfs): the version is the ETag; ``upload_blob`` / ``delete_blob`` with ``etag`` and
  ``MatchConditions.IfNotModified`` (``If-Match``), ``overwrite=False`` for a create (``If-None-Match: *``);
  adlfs passes the keywords through to the SDK.

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
from urllib.parse import quote

from reelforge import storage
from reelforge.storage import StorageError, protocol

CLOCK_SLACK_S = 1.0   # the resolution of S3's and Azure's Last-Modified (an HTTP date): whole seconds

S3_PROTOCOLS = {"s3", "s3a"}
GCS_PROTOCOLS = {"gs", "gcs"}
AZURE_PROTOCOLS = {"az", "abfs", "abfss"}


@dataclass(frozen=True)
class Version:
    """One version of an object: ``tag`` is what :func:`put_if` compares (None where the store has no
    conditional writes); ``modified`` the store's time of that write, epoch seconds (None if unknown)."""
    tag: str | None
    modified: float | None


def supports(url: str | os.PathLike) -> bool:
    """True where :func:`put_if` works: the server compares versions atomically (S3, GCS, Azure Blob)."""
    return _backend(str(url)) is not None


def read_versioned(url: str | os.PathLike) -> tuple[bytes, Version]:
    """``(bytes, version)`` of the object at ``url``.

    The version is read BEFORE the bytes: if the object changes in between, the tag is the older one, so
    a ``put_if`` decided on these bytes fails instead of overwriting a version nobody read.
    FileNotFoundError when there is no object."""
    url = str(url)
    fs, path = storage.filesystem(url)
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
    fs, path = storage.filesystem(url)
    try:
        return backend.put(fs, path, data, tag)
    finally:
        fs.invalidate_cache(path)


def remove_if(url: str | os.PathLike, tag: str) -> bool:
    """Delete the object at ``url`` if it is still version ``tag``; False (nothing deleted) otherwise."""
    url = str(url)
    backend = _require(url)
    fs, path = storage.filesystem(url)
    try:
        return backend.remove(fs, path, tag)
    finally:
        fs.invalidate_cache(path)


def store_time(near: str | os.PathLike) -> float:
    """Now by the store's clock, epoch seconds: a scratch object is written beside ``near`` (an object
    URL), its stamp read back, and it is deleted. Three requests; OSError if the store gives no time."""
    url = f"{str(near).rstrip('/')}.now-{uuid.uuid4().hex}"
    fs, path = storage.filesystem(url)
    fs.pipe_file(path, b"")
    try:
        fs.invalidate_cache(path)
        stamp = modified_time(fs.info(path))
    finally:
        try:
            fs.rm_file(path)   # one DELETE (rm would list the path first)
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


class _GCS:
    """The JSON API through gcsfs's own session (its credentials, retries and error mapping)."""

    @staticmethod
    def tag(info: dict) -> str:
        return str(info["generation"])

    @staticmethod
    def _split(fs, path: str) -> tuple[str, str]:
        bucket, key, generation = fs.split_path(path)
        if generation:
            raise StorageError(f"gs://{path}: a conditional write names an object, not one of its generations")
        return bucket, key

    @staticmethod
    def put(fs, path: str, data: bytes, tag: str | None) -> str | None:
        bucket, key = _GCS._split(fs, path)
        _need(fs, ("call", "_location"), "gs", "gcsfs's authenticated call to the JSON API")
        try:
            out = fs.call("POST", f"{fs._location}/upload/storage/v1/b/{quote(bucket, safe='')}/o",
                          uploadType="media", name=key, ifGenerationMatch="0" if tag is None else tag,
                          headers={"Content-Type": "application/octet-stream"}, data=data, json_out=True)
        except (FileExistsError, FileNotFoundError):  # gcsfs: 412 (the generation differs), 404
            return None
        return str(out["generation"])

    @staticmethod
    def remove(fs, path: str, tag: str) -> bool:
        bucket, key = _GCS._split(fs, path)
        _need(fs, ("call",), "gs", "gcsfs's authenticated call to the JSON API")
        try:
            fs.call("DELETE", "b/{}/o/{}", bucket, key, ifGenerationMatch=tag)
        except (FileExistsError, FileNotFoundError):
            return False
        return True


class _Azure:
    """adlfs passes ``etag``/``match_condition`` through to azure-storage-blob's ``upload_blob``; the
    conditional delete goes to the SDK's blob client on adlfs's own loop."""

    @staticmethod
    def tag(info: dict) -> str:
        return info["etag"]

    @staticmethod
    def put(fs, path: str, data: bytes, tag: str | None) -> str | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            if tag is None:
                out = fs.pipe_file(path, data, mode="create")
            else:
                out = fs.pipe_file(path, data, overwrite=True, etag=tag,
                                   match_condition=MatchConditions.IfNotModified)
        except (FileExistsError, ResourceModifiedError, ResourceNotFoundError):
            return None
        except TypeError as exc:  # an adlfs that does not pass the keywords on: no conditional overwrite
            raise StorageError(f"az://{path}: this adlfs cannot write conditionally ({exc}); "
                               f"an adlfs whose pipe_file passes etag/match_condition on to upload_blob can") from None
        if not isinstance(out, dict) or not out.get("etag"):  # a success whose version we cannot hold on to
            raise StorageError(f"az://{path}: this adlfs returns no ETag for an upload, so a lock on it cannot "
                               f"be renewed conditionally")
        return out["etag"]

    @staticmethod
    def remove(fs, path: str, tag: str) -> bool:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
        from fsspec.asyn import sync

        _need(fs, ("service_client", "loop"), "az", "adlfs's Azure SDK client")
        container, blob, _ = fs.split_path(path)

        async def delete():
            async with fs.service_client.get_blob_client(container, blob) as client:
                await client.delete_blob(etag=tag, match_condition=MatchConditions.IfNotModified)
        try:
            sync(fs.loop, delete)
        except (ResourceModifiedError, ResourceNotFoundError):
            return False
        return True


def _need(fs, attrs: tuple[str, ...], proto: str, what: str) -> None:
    """Refuse, saying why, a backend that lacks what its conditional write is sent through."""
    missing = [a for a in attrs if not hasattr(fs, a)]
    if missing:
        raise StorageError(f"{proto}://: the installed {type(fs).__module__.split('.')[0]} lacks "
                           f"{', '.join(missing)} ({what}), so it cannot write conditionally")


def _backend(url: str):
    proto = protocol(url)
    if proto in S3_PROTOCOLS:
        return _S3
    if proto in GCS_PROTOCOLS:
        return _GCS
    if proto in AZURE_PROTOCOLS:
        return _Azure
    return None


def _require(url: str):
    backend = _backend(url)
    if backend is None:
        raise StorageError(f"{url}: {protocol(url)}:// has no conditional writes here (s3://, gs:// and az:// have)")
    return backend
