"""What a build's data on disk was made with, and who may write it: the work record and the output lock.

Work is keyed by the settings that produced it. ``_work/build.json`` records, per phase, every config key
whose value changes the data of that phase:

- ``videos``: probe, shot detection and the clip plan (``curate.probe``, ``curate.scenes``, ``curate.split``);
- ``clips``: the transcode and the scores (``curate.transcode`` and the scoring fields of each filter).

Thresholds only change decisions: the build's finish and ``--refilter`` re-apply them to the recorded
scores. A threshold is a field the section's ``check`` reads (found in its source, so a new filter needs
no list here; a field read through a helper counts as work, the safe side), switching a filter off, and
the sections decided over all clips at the end from stored embeddings or signatures (``dedup``, and
``near_dup`` except switching it on, which needs its signature stage to run). Keys that only change speed
or placement (devices, threads, actor counts, batch sizes) are not recorded. A run
whose recorded keys differ stops before doing anything (:class:`BuildStateError` naming each key, old
and new value, and ``--rebuild``); ``--rebuild`` redoes the phases whose keys changed.

The lock is an ``fcntl.flock`` on ``OUT/.lock``: the kernel drops it when the process dies, however it
dies, so a killed build never leaves a stale lock. The file also says who holds it, for the message.
(flock works on local file systems; on NFS it depends on the mount.)

On object storage (``OUT`` a URL) there is no process to die with the lock, so the lock is a lease: the
object ``OUT/.lock`` says who holds it and for how long (``lease_s``), and a daemon thread of the holder
rewrites it every ``lease_s / 3``. The lease runs from the store's own stamp on the object (S3
``LastModified``, GCS ``updated``, Azure ``last_modified``): a driver that finds the lock compares that
stamp with "now" read off the same store (``reelforge/conditional.py`` ``store_time``), never with its
own wall clock, so drivers whose clocks disagree by hours neither steal a live lease nor wait on a dead
one; the holder times its own lease on its monotonic clock. It is created with a conditional write
(``If-None-Match: *``; GCS ``ifGenerationMatch=0``): of two builds starting together exactly one gets it.
A build that finds a live lock stops at once, naming the holder and the time its lease has left; one
that finds an expired lock (its driver was killed, or lost the store for a whole lease) takes it over
with a write conditional on the version it read (S3 and Azure ``If-Match: <ETag>``, GCS
``ifGenerationMatch: <generation>``), so of two drivers racing for the take-over exactly one wins, and a
renewal that finds the object replaced knows it lost the lock (the build then ends with an error rather
than a silent second writer). Every rewrite is conditional on the version the holder wrote last. On a
remote store without conditional writes (not ``s3://``, ``gs://`` or ``az://``) the lease is recorded and
renewed, but an expired lock is not taken over: the message says why and to delete it.
"""
from __future__ import annotations

import dataclasses
import fcntl
import inspect
import json
import os
import re
import socket
import sys
import threading
import time
import uuid
from pathlib import Path

from reelforge import conditional, storage

STATE_FILE = "build.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1

# config fields that change how fast or where work runs, never its result
_SPEED_ONLY = {"device", "concurrency", "num_cpus", "batch_size", "threads", "decode_workers", "decode_threads",
               "transnet_batch_windows"}


class BuildStateError(RuntimeError):
    """The output cannot be used as asked (in use, built with other settings, work record missing)."""


DEFAULT_LEASE_S = 60.0   # a killed driver's remote lock is free again this long after its last renewal


class OutputLock:
    """Exclusive lock on an output dir for one build or refilter; ``with OutputLock(out): ...``.

    Local: ``flock`` (released by the kernel however the process ends). Remote: a lease of ``lease_s``
    seconds, renewed every ``lease_s / 3`` while held (see the module docstring). :meth:`check` raises
    if a remote lease was lost; leaving the ``with`` after losing it raises too."""

    def __init__(self, out_dir: str | Path, lease_s: float = DEFAULT_LEASE_S):
        if lease_s <= 0:
            raise ValueError(f"lease_s must be > 0, got {lease_s}")
        self.remote = storage.is_remote(out_dir)
        self.path = storage.join(out_dir, LOCK_FILE) if self.remote else Path(out_dir) / LOCK_FILE
        self.lease_s = float(lease_s)
        self.lost: str | None = None   # why a remote lease was lost while held
        self._fd: int | None = None
        self._made_dir = False   # local: this lock made the output folder (removed again if nothing was written)
        self._held = False
        self._tag: str | None = None   # version (ETag, GCS generation) of the lock object this holder wrote last
        self._token = uuid.uuid4().hex
        self._started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _holder(self) -> str:
        return f"pid {os.getpid()} on {socket.gethostname()}, started {self._started}"

    def __enter__(self) -> "OutputLock":
        if self.remote:
            self._acquire_remote()
            return self
        self._made_dir = not self.path.parent.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise BuildStateError(f"{self.path.parent} is in use by another build ({holder}); wait for it to "
                                  f"finish or choose another --output") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{self._holder()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            if exc[0] is not None and self._made_dir:
                self._remove_untouched_dir()
            os.close(self._fd)  # closing releases the flock
            self._fd = None
        if not self._held:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self._held = False
        if self.lost is None:
            if self._tag is not None:
                conditional.remove_if(self.path, self._tag)  # never another holder's lock
            else:
                storage.remove(self.path)
        elif exc[0] is None:
            raise BuildStateError(f"the lock on {storage.parent(self.path)} was lost while this build ran "
                                  f"({self.lost}): another build may have written to it at the same time; "
                                  f"check it with `reelforge shards verify`")

    def _remove_untouched_dir(self) -> None:
        """A build that failed before writing anything (its input not found, say) leaves no output folder
        it created. Unlinked while the flock is held: a build that opened the file before waits on it
        and is refused, one that opens it after makes a new file, so the rmdir fails and the folder stays."""
        try:
            if os.listdir(self.path.parent) == [LOCK_FILE]:
                os.unlink(self.path)
                os.rmdir(self.path.parent)
        except OSError:
            pass

    def check(self) -> None:
        """Raise :class:`BuildStateError` if this holder's remote lease was lost (a long-running caller
        may call it between steps; leaving the ``with`` does too)."""
        if self.lost is not None:
            raise BuildStateError(f"lost the lock on {storage.parent(self.path)}: {self.lost}")

    # ---- the remote lease ----------------------------------------------------------------------------

    def _record(self) -> bytes:
        # no expiry in the holder's clock: a reader times the lease from the store's stamp on this object
        return json.dumps({"holder": self._holder(), "token": self._token, "lease_s": self.lease_s}).encode()

    def _acquire_remote(self) -> None:
        versioned = conditional.supports(self.path)   # the store compares versions: take-over is safe
        for _ in range(3):  # each round ends in the lock, a refusal, or a race lost to a change we then re-read
            sent = time.monotonic()
            if versioned:
                self._tag = self._put(None)
                created = self._tag is not None
            else:
                created = storage.create_exclusive(self.path, self._record())
            if created:
                break
            try:
                current, version = conditional.read_versioned(self.path)
            except FileNotFoundError:
                continue  # released just now: create it again
            holder, lease_s = _parse_lock(current)
            left = self._lease_left(version, lease_s)
            if left is not None and left <= 0 and versioned:
                sent = time.monotonic()
                self._tag = self._put(version.tag)
                if self._tag is not None:
                    print(f"lock          took over {self.path}: its lease ran out {-left:.0f} s ago by the "
                          f"store's clock ({holder})", file=sys.stderr)
                    break
                continue  # another driver took it over (or its holder renewed it) first: look again
            raise BuildStateError(self._refusal(holder, left))
        else:
            raise BuildStateError(f"{storage.parent(self.path)}: the lock {self.path} changed under every "
                                  f"attempt to take it; another build is starting there")
        self._held = True
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, args=(sent + self.lease_s,),
                                         name="reelforge-lock-lease", daemon=True)
        self._renewer.start()

    def _put(self, tag: str | None) -> str | None:
        """The lock record written only over version ``tag`` (None: only where there is none)."""
        try:
            return conditional.put_if(self.path, self._record(), tag)
        except storage.StorageError as exc:  # the backend cannot write conditionally after all
            raise BuildStateError(f"{storage.parent(self.path)}: cannot lock it safely: {exc}") from None

    def _lease_left(self, version: conditional.Version, lease_s: float | None) -> float | None:
        """Seconds the lease of a lock object of this ``version`` has left by the store's clock (<= 0:
        expired), with the store's stamp resolution to spare; None when no lease is recorded or the store
        stamps no time."""
        if lease_s is None or version.modified is None:
            return None
        try:
            now = conditional.store_time(self.path)
        except OSError:
            return None
        return version.modified + lease_s + conditional.CLOCK_SLACK_S - now

    def _refusal(self, holder: str, left: float | None) -> str:
        where = storage.parent(self.path)
        if left is None:  # no lease recorded (a lock from an older reelforge) or no time: only a person can tell
            return (f"{where} is in use by another build ({holder}); wait for it to finish or choose another "
                    f"--output. If no build is running (its driver was killed), delete {self.path}")
        if left > 0:
            return (f"{where} is in use by another build ({holder}); its lease has {left:.0f} s left and is "
                    f"renewed every {self.lease_s / 3:.0f} s while that build runs. Wait for it to finish or "
                    f"choose another --output; if its driver was killed, the lock expires by itself and the "
                    f"next build after that takes it over")
        return (f"{where}: the lock of a build that stopped renewing it ({holder}) expired {-left:.0f} s ago, "
                f"but {storage.protocol(where)}:// has no conditional writes to take it over safely "
                f"(s3://, gs:// and az:// have): delete {self.path} once no build is running")

    def _renew_loop(self, valid_until: float) -> None:
        """Rewrite the lock every ``lease_s / 3``. ``valid_until`` is on this process's monotonic clock,
        counted from before the write that started the lease: the store stamped it later, so the holder
        gives up no later than any other driver may take over."""
        while not self._stop.wait(self.lease_s / 3):
            sent = time.monotonic()
            try:
                if self._tag is not None:
                    tag = conditional.put_if(self.path, self._record(), self._tag)
                    if tag is None:
                        self._lose("another build replaced the lock object after this build's lease ran out")
                        return
                    self._tag = tag
                else:
                    storage.write_bytes_atomic(self.path, self._record())
                valid_until = sent + self.lease_s
            except Exception as exc:  # noqa: BLE001 (the store unreachable: retry until the lease runs out)
                if time.monotonic() >= valid_until:
                    self._lose(f"could not renew it for a whole lease ({self.lease_s:g} s): "
                               f"{type(exc).__name__}: {exc}")
                    return

    def _lose(self, why: str) -> None:
        self.lost = why
        print(f"lock          LOST {self.path}: {why}", file=sys.stderr)


def _parse_lock(data: bytes) -> tuple[str, float | None]:
    """(who holds it, its lease length in seconds or None) from a lock object's bytes."""
    text = data.decode("utf-8", "replace").strip()
    try:
        record = json.loads(text)
    except ValueError:
        return text or "unknown process", None
    if not isinstance(record, dict):
        return text, None
    lease_s = record.get("lease_s")
    ok = isinstance(lease_s, (int, float)) and not isinstance(lease_s, bool) and lease_s > 0
    return str(record.get("holder") or "unknown process"), float(lease_s) if ok else None


# ---- work keys --------------------------------------------------------------------------------------

def _flat(obj, prefix: str) -> dict:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(v):
            out.update(_flat(v, key))
        elif f.name not in _SPEED_ONLY:
            out[key] = list(v) if isinstance(v, tuple) else v
    return out


# sections decided at the end over all clips -> the fields that still change work
_DECIDED_AT_FINISH = {"dedup": (), "near_dup": ("enabled",)}


def _decision_fields(section) -> set[str]:
    """The fields a filter section's ``check`` reads: thresholds, which change decisions, not scores."""
    check = getattr(type(section), "check", None)
    if check is None:
        return set()
    names = {f.name for f in dataclasses.fields(section)}
    return names & set(re.findall(r"self\.(\w+)", inspect.getsource(check)))


def work_settings(curate_cfg) -> dict[str, dict]:
    """{phase: {dotted key: value}} of the settings whose change changes that phase's data."""
    videos = {}
    for name in ("probe", "scenes", "split"):
        videos.update(_flat(getattr(curate_cfg, name), f"curate.{name}"))
    clips = _flat(curate_cfg.transcode, "curate.transcode")
    for f in dataclasses.fields(curate_cfg.filters):
        section = getattr(curate_cfg.filters, f.name)
        prefix = f"curate.filters.{f.name}"
        if f.name in _DECIDED_AT_FINISH:
            clips.update({f"{prefix}.{k}": getattr(section, k) for k in _DECIDED_AT_FINISH[f.name]})
            continue
        decision = _decision_fields(section) | {"enabled"}
        clips.update({k: v for k, v in _flat(section, prefix).items() if k.rsplit(".", 1)[1] not in decision})
        # a scorer that was off has no scores to re-judge: switching it on is new work
        clips[f"{prefix}.enabled"] = bool(section.enabled)
    return {"videos": videos, "clips": clips}


def changed_settings(recorded: dict[str, dict], current: dict[str, dict]) -> dict[str, list[str]]:
    """{phase: ["key: old -> new", ...]} for the phases whose recorded keys differ from ``current``.

    Only keys both sides know are compared: a key a newer reelforge added (or stopped counting as work)
    says nothing about how the data on disk was made."""
    out: dict[str, list[str]] = {}
    for phase, now in current.items():
        before = recorded.get(phase, {})
        lines = []
        for key in sorted(set(before) & set(now)):
            old, new = before[key], now[key]
            if key.endswith(".enabled") and phase == "clips" and old is True and new is False:
                continue  # switching a scorer off only drops its check: a refilter
            if old != new:
                lines.append(f"{key}: {old!r} -> {new!r}")
        if lines:
            out[phase] = lines
    return out


def describe_changes(changes: dict[str, list[str]]) -> str:
    return "; ".join(line for lines in changes.values() for line in lines)


def load_state(work_dir: Path | str) -> dict | None:
    p = storage.join(work_dir, STATE_FILE)
    if not storage.exists(p):
        return None
    return json.loads(storage.read_bytes(p))


def save_state(work_dir: Path | str, settings: dict[str, dict]) -> None:
    storage.write_bytes_atomic(storage.join(work_dir, STATE_FILE), json.dumps(
        {"version": STATE_VERSION, "settings": settings}, indent=1, sort_keys=True, default=str).encode())
