"""Helpers of the lock tests of every store: several drivers reaching for one output's lock at the same
instant, and waiting until a lease has run out by the store's clock."""
from __future__ import annotations

import json
import threading
import time

from reelforge import conditional
from reelforge.curate.buildstate import BuildStateError, OutputLock


def race_for_lock(out: str, drivers: int = 4, lease_s: float = 30) -> tuple[list[str], list[OutputLock]]:
    """Each driver's outcome ("won" or the refusal's text) and the locks, for the caller to release."""
    go, results = threading.Barrier(drivers), []
    locks = [OutputLock(out, lease_s=lease_s) for _ in range(drivers)]

    def race(lock):
        go.wait()
        try:
            lock.__enter__()
            results.append("won")
        except BuildStateError as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=race, args=(lock,)) for lock in locks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, locks


def wait_until_expired(url: str, timeout: float = 30) -> None:
    """Until the lock at ``url`` has outlived its recorded lease by the store's clock (what a taker sees)."""
    data, version = conditional.read_versioned(url)
    lease_s = json.loads(data)["lease_s"]
    deadline = time.monotonic() + timeout
    while conditional.store_time(url) - version.modified <= lease_s + conditional.CLOCK_SLACK_S:
        assert time.monotonic() < deadline, "the store's clock did not move"
        time.sleep(0.2)
