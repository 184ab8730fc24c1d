"""The output lock on GCS (gs://): generations compared by the server (``ifGenerationMatch``).

There is no GCS emulator here, so the store is a fake gcsfs filesystem: the calls reelforge makes
(``call`` to the JSON API's media upload and object DELETE, ``info``, ``cat_file``, ``pipe_file``,
``rm_file``) with GCS's semantics as gcsfs reports them (a failed precondition, HTTP 412, raises
FileExistsError; 404 FileNotFoundError), its own clock (3 h behind the drivers' here) and a log of the
requests it saw. Anything else it is asked raises, so a call the real gcsfs would not take fails here too.
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from urllib.parse import quote

import pytest

from reelforge import conditional, storage
from reelforge.curate.buildstate import BuildStateError, OutputLock

from lock_race import race_for_lock  # noqa: E402  (tests/storage/lock_race.py)

STORE_SKEW_S = -3 * 3600   # the store's clock against this machine's


class FakeGCS:
    """A bucket store with object generations and a server clock, behind gcsfs's interface."""

    _location = "https://storage.googleapis.com"

    def __init__(self):
        self.objects: dict[tuple[str, str], tuple[bytes, int, float]] = {}   # (bucket, key) -> data, gen, stamp
        self.requests: list[tuple[str, str, dict]] = []
        self._next_gen = 1000
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + STORE_SKEW_S

    def split_path(self, path: str) -> tuple[str, str, None]:
        bucket, _, key = path.partition("/")
        return bucket, key, None

    def invalidate_cache(self, path=None) -> None:
        pass

    def _write(self, bucket: str, key: str, data: bytes, if_gen: str | None) -> dict:
        with self._lock:
            current = self.objects.get((bucket, key))
            if if_gen is not None and int(if_gen) != (current[1] if current else 0):
                raise FileExistsError(f"b/{bucket}/o/{key}")   # what gcsfs raises for HTTP 412
            self._next_gen += 1
            self.objects[(bucket, key)] = (bytes(data), self._next_gen, self.now())
            return self._resource(bucket, key)

    def _resource(self, bucket: str, key: str) -> dict:
        _, gen, stamp = self.objects[(bucket, key)]
        updated = datetime.fromtimestamp(stamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        return {"kind": "storage#object", "bucket": bucket, "name": key, "generation": str(gen),
                "updated": updated, "size": str(len(self.objects[(bucket, key)][0]))}

    # -- the JSON API, as gcsfs's call() sends it
    def call(self, method: str, path: str, *args, json_out: bool = False, **kwargs):
        self.requests.append((method, path.format(*args) if args else path, kwargs))
        if method == "POST" and path.startswith(f"{self._location}/upload/storage/v1/b/"):
            bucket = path.split("/b/", 1)[1].split("/o", 1)[0]
            assert kwargs["uploadType"] == "media" and json_out and not args
            return self._write(bucket, kwargs["name"], kwargs["data"], kwargs.get("ifGenerationMatch"))
        if method == "DELETE" and path == "b/{}/o/{}":
            bucket, key = args
            with self._lock:
                if (bucket, key) not in self.objects:
                    raise FileNotFoundError(f"b/{quote(bucket)}/o/{quote(key)}")
                want = kwargs.get("ifGenerationMatch")
                if want is not None and int(want) != self.objects[(bucket, key)][1]:
                    raise FileExistsError(f"b/{bucket}/o/{key}")
                del self.objects[(bucket, key)]
            return {}, b""
        raise AssertionError(f"a request the fake GCS does not serve: {method} {path} {kwargs}")

    # -- gcsfs's file-system methods
    def info(self, path: str) -> dict:
        bucket, key, _ = self.split_path(path)
        if (bucket, key) not in self.objects:
            raise FileNotFoundError(path)
        res = self._resource(bucket, key)
        return {**res, "name": path, "size": int(res["size"]), "type": "file",
                "mtime": datetime.fromtimestamp(self.objects[(bucket, key)][2], timezone.utc)}

    def cat_file(self, path: str, start=None, end=None) -> bytes:
        bucket, key, _ = self.split_path(path)
        if (bucket, key) not in self.objects:
            raise FileNotFoundError(path)
        return self.objects[(bucket, key)][0][start:end]

    def exists(self, path: str) -> bool:
        return self.split_path(path)[:2] in self.objects

    def pipe_file(self, path: str, data: bytes, mode: str = "overwrite", **kwargs) -> dict:
        bucket, key, _ = self.split_path(path)
        return self._write(bucket, key, data, "0" if mode == "create" else None)

    def rm_file(self, path: str) -> None:
        bucket, key, _ = self.split_path(path)
        if self.objects.pop((bucket, key), None) is None:
            raise FileNotFoundError(path)

    def age(self, url: str, seconds: float) -> None:
        """Make the object at ``url`` look written ``seconds`` earlier by the store's clock."""
        bucket, key, _ = self.split_path(url.split("://", 1)[1])
        data, gen, stamp = self.objects[(bucket, key)]
        self.objects[(bucket, key)] = (data, gen, stamp - seconds)


@pytest.fixture
def gcs(monkeypatch) -> FakeGCS:
    fake = FakeGCS()
    real = storage.filesystem

    def filesystem(url):
        url = str(url)
        return (fake, url.split("://", 1)[1]) if storage.protocol(url) in ("gs", "gcs") else real(url)
    monkeypatch.setattr(storage, "filesystem", filesystem)
    return fake


def test_gcs_conditional_writes_follow_generations(gcs):
    url = "gs://b/ds/.lock"
    first = conditional.put_if(url, b"one")
    assert first is not None and conditional.put_if(url, b"two") is None
    upload = gcs.requests[0]
    assert upload[0] == "POST" and upload[1].endswith("/upload/storage/v1/b/b/o")
    assert upload[2]["ifGenerationMatch"] == "0" and upload[2]["name"] == "ds/.lock"
    data, version = conditional.read_versioned(url)
    assert (data, version.tag) == (b"one", first)
    assert abs(version.modified - (time.time() + STORE_SKEW_S)) < 5   # the store's stamp, not ours
    second = conditional.put_if(url, b"three", first)
    assert second not in (None, first) and gcs.requests[-1][2]["ifGenerationMatch"] == first
    assert conditional.put_if(url, b"four", first) is None
    assert not conditional.remove_if(url, first) and storage.read_bytes(url) == b"three"
    assert conditional.remove_if(url, second) and not gcs.exists("b/ds/.lock")
    assert not conditional.remove_if(url, second)


def test_gcs_lock_is_timed_by_the_store_clock_and_one_of_four_drivers_takes_over(gcs, capsys):
    out = "gs://b/ds"
    with OutputLock(out, lease_s=30):
        # the store's clock is 3 h behind: compared with ours, every lease would look long expired
        with pytest.raises(BuildStateError, match=r"is in use by another build .*its lease has (2\d|3[01]) s left"):
            with OutputLock(out, lease_s=30):
                pass
    assert not gcs.exists("b/ds/.lock")
    stale = {"holder": "pid 1 on gone, started long ago", "token": "x", "lease_s": 5}
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(stale).encode())
    gcs.age(f"{out}/.lock", 10)
    results, locks = race_for_lock(out)
    assert results.count("won") == 1, results
    assert all("is in use by another build" in r for r in results if r != "won")
    assert "took over gs://b/ds/.lock: its lease ran out" in capsys.readouterr().err
    for lock in locks:
        lock.__exit__(None, None, None)
    assert not gcs.exists("b/ds/.lock")


def test_a_gcs_backend_that_cannot_write_conditionally_is_refused_with_why(gcs, monkeypatch):
    monkeypatch.delattr(FakeGCS, "call")   # e.g. another GCS file system than gcsfs
    with pytest.raises(BuildStateError, match=r"gs://b/ds: cannot lock it safely: gs://: the installed \w+ lacks "
                                              r"call \(gcsfs's authenticated call to the JSON API\), so it cannot "
                                              r"write conditionally"):
        with OutputLock("gs://b/ds", lease_s=30):
            pass
