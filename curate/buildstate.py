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

On object storage (``OUT`` a URL) the lock is the object ``OUT/.lock``, created with a conditional PUT
(``If-None-Match: *``, :func:`reelforge.storage.create_exclusive`): of two builds starting together
exactly one gets it, and it is deleted when the build ends. A driver that is killed cannot delete it:
the next build stops and names the object and its holder; delete it by hand once no build is running.
"""
from __future__ import annotations

import dataclasses
import fcntl
import inspect
import json
import os
import re
import socket
import time
from pathlib import Path

from reelforge import storage

STATE_FILE = "build.json"
LOCK_FILE = ".lock"
STATE_VERSION = 1

# config fields that change how fast or where work runs, never its result
_SPEED_ONLY = {"device", "concurrency", "num_cpus", "batch_size", "threads", "decode_workers", "decode_threads",
               "transnet_batch_windows"}


class BuildStateError(RuntimeError):
    """The output cannot be used as asked (in use, built with other settings, work record missing)."""


class OutputLock:
    """Exclusive lock on an output dir for one build or refilter; ``with OutputLock(out): ...``."""

    def __init__(self, out_dir: str | Path):
        self.remote = storage.is_remote(out_dir)
        self.path = storage.join(out_dir, LOCK_FILE) if self.remote else Path(out_dir) / LOCK_FILE
        self._fd: int | None = None
        self._held = False

    def _holder(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        return f"pid {os.getpid()} on {socket.gethostname()}, started {started}"

    def __enter__(self) -> "OutputLock":
        if self.remote:
            if not storage.create_exclusive(self.path, self._holder().encode()):
                try:
                    holder = storage.read_bytes(self.path).decode("utf-8", "replace").strip() or "unknown process"
                except FileNotFoundError:
                    holder = "a build that has just finished"
                raise BuildStateError(f"{storage.parent(self.path)} is in use by another build ({holder}); wait "
                                      f"for it to finish or choose another --output. If no build is running (its "
                                      f"driver was killed), delete {self.path}")
            self._held = True
            return self
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
        if self._held:
            storage.remove(self.path)
            self._held = False
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing releases the flock
            self._fd = None


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
