"""The output lock on Azure Blob (az://, adlfs) against the Azurite emulator: conditional writes on the
blob's ETag, so an expired lease is taken over by exactly one driver, timed by the store's clock."""
from __future__ import annotations

import json
import time

import pytest

from reelforge import conditional, storage
from reelforge.curate.buildstate import BuildStateError, OutputLock

from lock_race import race_for_lock, wait_until_expired  # noqa: E402  (tests/storage/lock_race.py)


def test_azure_conditional_writes_compare_etags(container):
    url = f"az://{container}/ds/.lock"
    first = conditional.put_if(url, b"one")
    assert first is not None and conditional.put_if(url, b"two") is None   # If-None-Match: *
    data, version = conditional.read_versioned(url)
    assert (data, version.tag) == (b"one", first) and abs(version.modified - conditional.store_time(url)) < 30
    second = conditional.put_if(url, b"three", first)
    assert second not in (None, first)
    assert conditional.put_if(url, b"four", first) is None                  # a stale ETag loses
    assert not conditional.remove_if(url, first) and storage.read_bytes(url) == b"three"
    assert conditional.remove_if(url, second) and not storage.exists(url)
    assert conditional.put_if(url, b"five", second) is None                 # If-Match on a gone blob


def test_azure_lock_refuses_a_live_lease_and_one_of_four_drivers_takes_over_a_dead_one(container, capsys):
    out = f"az://{container}/ds"
    with OutputLock(out, lease_s=30):
        with pytest.raises(BuildStateError, match=r"is in use by another build \(pid \d+ .*\); its lease has "
                                                  r"(2\d|3[01]) s left"):
            with OutputLock(out, lease_s=30):
                pass
    assert not storage.exists(f"{out}/.lock")
    stale = {"holder": "pid 1 on gone, started long ago", "token": "x", "lease_s": 0.5}
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(stale).encode())
    wait_until_expired(f"{out}/.lock")
    results, locks = race_for_lock(out)
    assert results.count("won") == 1, results
    assert all("is in use by another build" in r for r in results if r != "won")
    assert "took over" in capsys.readouterr().err
    for lock in locks:
        lock.__exit__(None, None, None)
    assert not storage.exists(f"{out}/.lock")


def test_an_adlfs_that_cannot_write_conditionally_is_refused_with_why(monkeypatch):
    """An adlfs whose pipe_file takes no SDK keywords would overwrite unconditionally: refused, not used."""
    pytest.importorskip("azure.core", reason="azure-core (with adlfs) is not installed")

    class OldAdlfs:
        def pipe_file(self, path, value, overwrite=True):
            raise AssertionError("an unconditional overwrite must never be sent")

        def invalidate_cache(self, path=None):
            pass

    monkeypatch.setattr(storage, "filesystem", lambda url: (OldAdlfs(), str(url).split("://", 1)[1]))
    with pytest.raises(storage.StorageError, match=r"az://c/ds/\.lock: this adlfs cannot write conditionally "
                                                   r"\(.*unexpected keyword argument 'etag'\)"):
        conditional.put_if("az://c/ds/.lock", b"x", '"0x1"')
