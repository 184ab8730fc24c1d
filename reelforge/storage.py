"""Where a build reads and writes: local paths and fsspec URLs (``s3://``, ``gs://``, …) through one module.

Every file the build, the shard tools and the readers touch outside their own temp dirs goes through
these functions, so "local disk, a shared mount or object storage" is one code path with two cases:

- **local** (a plain path or ``file://``): writes are atomic the POSIX way, a ``.tmp`` beside the target,
  ``fsync``, ``os.replace``, as the shard writer has always done;
- **remote** (any other protocol): writes are one object PUT (``pipe_file``/``put_file``; s3fs switches
  to a multipart upload for large files, which is also all-or-nothing), so an object appears whole or
  not at all, and nothing is ever renamed (object stores have no atomic rename).

Connection settings are fsspec's and the cloud SDK's own: for S3 (s3fs, botocore) the standard
``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``,
``AWS_PROFILE`` variables, and any fsspec storage option as ``FSSPEC_S3_<OPTION>`` or ``FSSPEC_S3='{json}'``
(fsspec reads them at import, in every process that inherits the environment, Ray workers included).

What cannot work is said before any work starts: :func:`check_input_url` / :func:`check_output_url`
raise :class:`StorageError` (one line) for an unknown protocol, a protocol whose package is missing,
an output on a read-only or per-process protocol (``http``, ``memory``), or a bucket that cannot be
reached.

Locking (curate/buildstate.py ``OutputLock``): a local output is locked with ``fcntl.flock``; on object
storage the lock is an object with a lease, built on the server's conditional writes and its clock
(``reelforge/conditional.py``: S3 ``If-Match``/``If-None-Match``, GCS ``ifGenerationMatch``, Azure
``If-Match``), so two drivers racing for a lock or for the take-over of an expired one cannot both win.
"""
from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import fsspec

# protocols that can only be read (or whose writes other processes never see) are no output
READ_ONLY_PROTOCOLS = {"http", "https", "zip", "tar", "github", "git", "libarchive", "reference", "dbfs"}
PER_PROCESS_PROTOCOLS = {"memory"}   # a Ray worker writing to memory:// writes into its own process
LOCAL_PROTOCOLS = {"file", "local"}


class StorageError(ValueError):
    """A URL that cannot be used as asked; ``str()`` is one line naming the URL and what to do."""


# ---- naming ------------------------------------------------------------------------------------------

def protocol(url: str | os.PathLike) -> str:
    """``s3://b/k`` -> ``s3``; a plain path or ``file://`` -> ``file``."""
    url = str(url)
    if "://" not in url:
        return "file"
    proto = url.split("://", 1)[0].lower()
    return "file" if proto in LOCAL_PROTOCOLS else proto


def is_remote(url: str | os.PathLike) -> bool:
    """True for any fsspec URL that is not the local disk (``s3://``, ``gs://``, ``memory://``, ``http://``)."""
    return protocol(url) != "file"


def local_path(url: str | os.PathLike) -> str:
    """A local URL as a plain path (``file:///x`` -> ``/x``); remote URLs are refused."""
    url = str(url)
    if is_remote(url):
        raise StorageError(f"{url} is not on the local disk")
    return url.split("://", 1)[1] if "://" in url else url


def join(base: str | os.PathLike, *parts: str) -> str | Path:
    """``join("s3://b/ds", "shards", "x.tar")`` -> ``s3://b/ds/shards/x.tar``; local paths join as paths
    (a ``Path`` base gives a ``Path``, so code that holds local locations as ``Path`` keeps them)."""
    if isinstance(base, Path):
        return base.joinpath(*parts)
    base = str(base)
    if not is_remote(base):
        return os.path.join(local_path(base), *parts)
    return posixpath.join(base.rstrip("/") if not base.endswith("://") else base, *parts)


def parent(url: str | os.PathLike) -> str:
    url = str(url)
    if not is_remote(url):
        return os.path.dirname(os.path.abspath(local_path(url)))
    proto, rest = url.split("://", 1)
    return f"{proto}://{posixpath.dirname(rest.rstrip('/'))}"


def basename(url: str | os.PathLike) -> str:
    return str(url).rstrip("/").rsplit("/", 1)[-1]


def same_location(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name the same folder (local: after resolving links and ``..``)."""
    if is_remote(a) or is_remote(b):
        return str(a).rstrip("/") == str(b).rstrip("/")
    return Path(local_path(a)).resolve() == Path(local_path(b)).resolve()


def filesystem(url: str | os.PathLike):
    """``(fs, path)`` for ``url`` (an fsspec filesystem and the protocol-less path it takes)."""
    from fsspec.core import url_to_fs

    url = str(url)
    if not is_remote(url):
        return fsspec.filesystem("file"), os.path.abspath(local_path(url))
    _check_protocol(url, "")  # an unknown scheme or a missing package: StorageError, one line
    return url_to_fs(url)


def _unstrip(fs, path: str, like: str) -> str:
    """fsspec paths have no protocol; give a remote one back the protocol of ``like``."""
    return f"{protocol(like)}://{path}" if is_remote(like) else path


# ---- checks before work ------------------------------------------------------------------------------

def _check_protocol(url: str, role: str) -> None:
    proto = protocol(url)
    if proto == "file":
        return
    from fsspec.registry import known_implementations, registry

    what = f"{role} {url}" if role else url
    if proto not in known_implementations and proto not in registry:
        raise StorageError(f"{what}: unknown URL scheme {proto!r} (fsspec has no filesystem for it; "
                           f"use a local path or e.g. s3://bucket/prefix)")
    try:
        fsspec.get_filesystem_class(proto)
    except ImportError as exc:
        hint = known_implementations.get(proto, {}).get("err", "")
        raise StorageError(f"{what}: the {proto}:// filesystem is not installed ({hint or exc})") from None


def _check_reachable(url: str, role: str) -> None:
    """For bucket stores: the bucket exists and the credentials can list it (one request)."""
    proto = protocol(url)
    if proto not in ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"):
        return
    fs, path = filesystem(url)
    bucket = path.split("/", 1)[0]
    try:
        fs.ls(bucket, detail=False, refresh=True)
    except FileNotFoundError:
        raise StorageError(f"{role} {url}: bucket {bucket!r} does not exist "
                           f"(endpoint: {os.environ.get('AWS_ENDPOINT_URL') or 'default'})") from None
    except Exception as exc:  # noqa: BLE001 (credentials, endpoint, network: the SDK's own words)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StorageError(f"{role} {url}: cannot reach bucket {bucket!r}: {type(exc).__name__}: {msg} "
                           f"(endpoint: {os.environ.get('AWS_ENDPOINT_URL') or 'default'})") from None


def check_input_url(url: str | os.PathLike) -> None:
    """Raise :class:`StorageError` if ``url`` (a path, glob, URL, or ``@list`` file) can never be read:
    unknown scheme, its fsspec package missing, its bucket unreachable. A missing *file* is not an error
    here: discovery records it as a failed input."""
    url = str(url)
    if url.startswith("@"):
        url = url[1:]
    _check_protocol(url, "input")
    _check_reachable(url, "input")


def check_output_url(url: str | os.PathLike) -> None:
    """Raise :class:`StorageError` if a dataset cannot be written at ``url``: unknown scheme, package
    missing, a read-only (``http``) or per-process (``memory``) protocol, an unreachable bucket."""
    url = str(url)
    _check_protocol(url, "output")
    proto = protocol(url)
    if proto in READ_ONLY_PROTOCOLS:
        raise StorageError(f"output {url}: {proto}:// is read-only; write to a local path or object storage "
                           f"(s3://bucket/prefix)")
    if proto in PER_PROCESS_PROTOCOLS:
        raise StorageError(f"output {url}: {proto}:// lives in one process; Ray workers could not write to it")
    _check_reachable(url, "output")


# ---- reading -----------------------------------------------------------------------------------------

class _Fetched:
    def __init__(self):
        self.path: str | None = None
        self.error: BaseException | None = None
        self.users = 0
        self.ready = threading.Event()


_fetched: dict[str, _Fetched] = {}
_fetched_lock = threading.Lock()


@contextlib.contextmanager
def local_source(url: str | os.PathLike) -> Iterator[str]:
    """A local path holding the bytes of ``url`` for the duration of the ``with``.

    A local path is yielded as it is (``file://`` stripped). A remote file is downloaded ONCE (one
    streaming GET) into a fresh dir under this worker's temp dir (``TMPDIR``) and removed when the
    outermost ``with`` for that URL exits: nested or concurrent ``local_source(url)`` calls in the same
    process (the per-video task, then each stage it runs) share the one copy. A failed download raises
    OSError naming the URL and leaves no file behind.
    """
    url = str(url)
    if not is_remote(url):
        yield local_path(url)
        return
    with _fetched_lock:
        entry = _fetched.get(url)
        owner = entry is None
        if owner:
            entry = _fetched[url] = _Fetched()
        entry.users += 1
    tmpdir = None
    try:
        if owner:
            try:
                tmpdir = tempfile.mkdtemp(prefix="reelforge-src-")
                local = os.path.join(tmpdir, basename(url) or "source")
                fs, path = filesystem(url)
                fs.get_file(path, local)
                entry.path = local
            except BaseException as exc:
                entry.error = exc
                raise
            finally:
                entry.ready.set()
        else:
            entry.ready.wait()
            if entry.error is not None:
                raise OSError(f"{url}: download failed: {entry.error}")
        yield entry.path
    finally:
        with _fetched_lock:
            entry.users -= 1
            last = entry.users == 0
            if last:
                _fetched.pop(url, None)
        if last and entry.path:
            shutil.rmtree(os.path.dirname(entry.path), ignore_errors=True)
        elif tmpdir and entry.path is None:
            shutil.rmtree(tmpdir, ignore_errors=True)


def read_bytes(url: str | os.PathLike, start: int | None = None, end: int | None = None) -> bytes:
    """The bytes of ``url`` (or ``[start, end)`` of them: one ranged GET on object storage)."""
    url = str(url)
    if not is_remote(url):
        with open(local_path(url), "rb") as f:
            if start:
                f.seek(start)
            return f.read() if end is None else f.read(end - (start or 0))
    fs, path = filesystem(url)
    return fs.cat_file(path, start=start, end=end)


def read_parquet(url: str | os.PathLike, **kwargs):
    """``pyarrow.parquet.read_table`` of a local path or a URL (pyarrow reads through fsspec)."""
    import pyarrow.parquet as pq

    if not is_remote(url):
        return pq.read_table(local_path(url), **kwargs)
    fs, path = filesystem(url)
    return pq.read_table(path, filesystem=fs, **kwargs)


def read_parquet_schema(url: str | os.PathLike):
    """The schema (with its metadata) of a parquet file, local or remote; reads the footer only."""
    import pyarrow.parquet as pq

    if not is_remote(url):
        return pq.read_schema(local_path(url))
    fs, path = filesystem(url)
    return pq.read_schema(path, filesystem=fs)


def open_file(url: str | os.PathLike, mode: str = "rb", **kwargs):
    """An open file object for ``url`` (``fsspec.open(...).open()``); local paths use ``open``."""
    url = str(url)
    if not is_remote(url):
        return open(local_path(url), mode, **kwargs)
    return fsspec.open(url, mode, **kwargs).open()


def exists(url: str | os.PathLike) -> bool:
    url = str(url)
    if not is_remote(url):
        return os.path.exists(local_path(url))
    fs, path = filesystem(url)
    fs.invalidate_cache(path)  # another process (a worker) may have written it since we last looked
    return fs.exists(path)


def isdir(url: str | os.PathLike) -> bool:
    url = str(url)
    if not is_remote(url):
        return os.path.isdir(local_path(url))
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    return fs.isdir(path)


def size(url: str | os.PathLike) -> int:
    url = str(url)
    if not is_remote(url):
        return os.path.getsize(local_path(url))
    fs, path = filesystem(url)
    return int(fs.size(path))


def listdir(url: str | os.PathLike) -> list[str]:
    """The sorted names (not paths) directly under ``url``; [] when it does not exist."""
    url = str(url)
    if not is_remote(url):
        p = local_path(url)
        return sorted(os.listdir(p)) if os.path.isdir(p) else []
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    try:
        return sorted(basename(p) for p in fs.ls(path, detail=False, refresh=True) if p.rstrip("/") != path.rstrip("/"))
    except FileNotFoundError:
        return []


def file_sizes(url: str | os.PathLike) -> dict[str, int]:
    """``{name: bytes}`` of the files directly under ``url`` (one listing on object storage); {} if absent."""
    url = str(url)
    if not is_remote(url):
        p = local_path(url)
        if not os.path.isdir(p):
            return {}
        return {e.name: e.stat().st_size for e in os.scandir(p) if e.is_file()}
    fs, path = filesystem(url)
    try:
        entries = fs.ls(path, detail=True, refresh=True)
    except FileNotFoundError:
        return {}
    return {basename(e["name"]): int(e["size"]) for e in entries if e.get("type") == "file"}


def glob(pattern: str | os.PathLike) -> list[str]:
    """Sorted paths/URLs matching ``pattern`` (remote matches keep the pattern's protocol); ``**``
    matches any number of folders, none included. Local matches are ``Path``s when ``pattern`` is one."""
    as_path = isinstance(pattern, Path)
    pattern = str(pattern)
    if not is_remote(pattern):
        import glob as _glob

        found = sorted(_glob.glob(local_path(pattern), recursive=True))
        return [Path(p) for p in found] if as_path else found
    fs, path = filesystem(pattern)
    fs.invalidate_cache()
    return sorted(_unstrip(fs, p, pattern) for p in fs.glob(path))


# ---- writing -----------------------------------------------------------------------------------------

def makedirs(url: str | os.PathLike) -> None:
    """Create a local folder (and parents); object stores have no folders, so nothing to do there."""
    if not is_remote(url):
        os.makedirs(local_path(url), exist_ok=True)


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def commit_file(local_tmp: str | os.PathLike, dest_url: str | os.PathLike) -> None:
    """Make the finished local file ``local_tmp`` appear at ``dest_url``, whole or not at all.

    Local: ``fsync`` + ``os.replace`` (``local_tmp`` should sit on the same file system, e.g. ``dest.tmp``).
    Remote: one upload of the file, then ``local_tmp`` is removed. On failure ``dest_url`` is untouched
    (an upload that fails leaves no object) and the error propagates (OSError)."""
    local_tmp, dest_url = str(local_tmp), str(dest_url)
    if not is_remote(dest_url):
        dest = local_path(dest_url)
        with open(local_tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(local_tmp, dest)
        _fsync_dir(os.path.dirname(os.path.abspath(dest)))
        return
    fs, path = filesystem(dest_url)
    fs.put_file(local_tmp, path)
    os.unlink(local_tmp)


def write_bytes_atomic(url: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``url`` atomically (local: tmp + fsync + replace; remote: one PUT)."""
    url = str(url)
    if not is_remote(url):
        dest = local_path(url)
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        tmp = f"{dest}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        commit_file(tmp, dest)
        return
    fs, path = filesystem(url)
    fs.pipe_file(path, data)


@contextlib.contextmanager
def staged_write(dest_url: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """A local path to write ``dest_url``'s content into; committed with :func:`commit_file` when the
    ``with`` exits cleanly, removed when it raises. Local: ``dest.tmp`` beside the target; remote: a
    file in this process's temp dir (uploaded in one piece)."""
    dest_url = str(dest_url)
    if is_remote(dest_url):
        fd, tmp = tempfile.mkstemp(prefix="reelforge-put-", suffix="-" + basename(dest_url))
        os.close(fd)
    else:
        dest = local_path(dest_url)
        os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
        tmp = dest + suffix
    try:
        yield tmp
        commit_file(tmp, dest_url)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_parquet(table, url: str | os.PathLike) -> None:
    """Write a pyarrow table as parquet at ``url``, atomically (see :func:`staged_write`)."""
    import pyarrow.parquet as pq

    with staged_write(url) as tmp:
        pq.write_table(table, tmp)


def create_exclusive(url: str | os.PathLike, data: bytes) -> bool:
    """Create ``url`` holding ``data`` only if nothing is there yet: True if this call created it, False
    if it existed. Local: ``O_CREAT|O_EXCL``; S3: a conditional PUT (``If-None-Match: *``), atomic on the
    server, so of two racing callers exactly one gets True (the primitive of a remote output's lock)."""
    url = str(url)
    if not is_remote(url):
        p = local_path(url)
        os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    fs, path = filesystem(url)
    try:
        fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:
        from reelforge.conditional import _precondition_failed  # (that module imports this one)

        # s3fs reports a failed precondition (the object exists) as EINVAL; anything else is a real error
        if _precondition_failed(exc) or (exc.errno == errno.EINVAL and exists(url)):
            return False
        raise
    return True


def remove(url: str | os.PathLike, recursive: bool = False, missing_ok: bool = True) -> None:
    """Delete a file (or, with ``recursive``, a folder/prefix and everything under it)."""
    url = str(url)
    if not is_remote(url):
        p = local_path(url)
        if os.path.isdir(p) and not os.path.islink(p):
            if not recursive:
                raise IsADirectoryError(p)
            shutil.rmtree(p)
        elif os.path.lexists(p):
            os.unlink(p)
        elif not missing_ok:
            raise FileNotFoundError(p)
        return
    fs, path = filesystem(url)
    try:
        fs.rm(path, recursive=recursive)
    except FileNotFoundError:
        if not missing_ok:
            raise
    fs.invalidate_cache(path)


def as_path_or_url(url: str | os.PathLike) -> str | Path:
    """A ``Path`` for local locations (code that wants ``Path`` keeps it), the URL string otherwise."""
    return str(url) if is_remote(url) else Path(local_path(url))
