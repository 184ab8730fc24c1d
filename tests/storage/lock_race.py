"""Several drivers reaching for one output's lock at the same instant (the lock tests of every store)."""
from __future__ import annotations

import threading

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
