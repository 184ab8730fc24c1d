"""The output lock and the work record on object storage: a lease that its holder renews, that a new
build refuses while it is live and takes over once it has expired (exactly one of two racers), timed by
the store's clock, so a driver whose clock is hours off neither steals a live lease nor waits on a dead one."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from reelforge import conditional, storage
from reelforge.curate.buildstate import BuildStateError, OutputLock, load_state, save_state

from lock_race import race_for_lock, wait_until_expired  # noqa: E402  (tests/storage/lock_race.py)

LEASE = 2.5  # seconds: short, so that expiry and renewal happen within the test (a loaded 2-core box needs this much)


def _lease(url: str) -> dict:
    return json.loads(storage.read_bytes(url))


def _take_over(out: str, lease_s: float, timeout: float) -> OutputLock:
    """The entered lock of ``out``, retrying while it is refused as in use (a dead holder's lease running out)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return OutputLock(out, lease_s=lease_s).__enter__()
        except BuildStateError as exc:
            if "is in use by another build" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_one_build_per_remote_output(s3, bucket):
    out = f"s3://{bucket}/ds"
    with OutputLock(out):
        record = _lease(f"{out}/.lock")
        # no expiry in the holder's clock: the lease runs from the store's stamp on the object
        assert record["holder"].startswith("pid ") and record["lease_s"] == 60 and "expires" not in record
        with pytest.raises(BuildStateError, match=r"is in use by another build \(pid \d+ on .*\); its lease has "
                                                  r"\d+ s left and is renewed every 20 s"):
            with OutputLock(out):
                pass
    assert not storage.exists(f"{out}/.lock")
    with OutputLock(out):  # free again
        pass


def test_renewal_keeps_a_held_lease_live(s3, bucket):
    out = f"s3://{bucket}/ds"
    with OutputLock(out, lease_s=LEASE):
        first = conditional.read_versioned(f"{out}/.lock")[1].modified
        time.sleep(1.5 * LEASE + conditional.CLOCK_SLACK_S)  # without renewal the lease would have run out
        with pytest.raises(BuildStateError, match="is in use by another build"):
            with OutputLock(out, lease_s=LEASE):
                pass
        assert conditional.read_versioned(f"{out}/.lock")[1].modified >= first + LEASE
    assert not storage.exists(f"{out}/.lock")


def test_a_killed_drivers_lock_expires_and_is_taken_over(s3, bucket, capsys):
    """The killed driver's clock ran 5 h ahead: compared with the taker's clock its lease would have had
    5 h left; by the store's clock it ends a lease after its last renewal."""
    out = f"s3://{bucket}/ds"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n_real = time.time\ntime.time = lambda: _real() + 5 * 3600\n"
         "from reelforge.curate.buildstate import OutputLock\n"
         f"OutputLock(sys.argv[1], lease_s={LEASE}).__enter__()\nprint('locked', flush=True)\ntime.sleep(120)\n", out],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
    finally:
        holder.kill()  # SIGKILL: no cleanup, the lock object stays behind
        holder.wait()
    assert _lease(f"{out}/.lock")["holder"].startswith(f"pid {holder.pid} ")
    lock = _take_over(out, LEASE, timeout=LEASE + 10)
    assert _lease(f"{out}/.lock")["holder"].startswith(f"pid {__import__('os').getpid()} ")
    lock.__exit__(None, None, None)
    assert f"took over {out}/.lock" in capsys.readouterr().err
    assert not storage.exists(f"{out}/.lock")


def test_a_driver_whose_clock_runs_hours_ahead_does_not_steal_a_live_lease(s3, bucket, monkeypatch):
    out = f"s3://{bucket}/ds"
    with OutputLock(out, lease_s=30):
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 6 * 3600)
        with pytest.raises(BuildStateError, match=r"is in use by another build .*its lease has (2\d|3[01]) s left"):
            with OutputLock(out, lease_s=30):
                pass
        monkeypatch.setattr(time, "time", real)
        assert _lease(f"{out}/.lock")["holder"].startswith(f"pid {__import__('os').getpid()} ")


def test_a_driver_whose_clock_runs_hours_behind_takes_over_a_dead_lease(s3, bucket, monkeypatch, capsys):
    out = f"s3://{bucket}/ds"
    # what a holder killed right after writing its lock leaves (the record of an older reelforge included
    # its expiry in the holder's clock, which this driver, 6 h behind, would have waited for)
    stale = {"holder": "pid 1 on gone, started long ago", "token": "x", "lease_s": 0.5, "expires": time.time() + 0.5}
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(stale).encode())
    wait_until_expired(f"{out}/.lock")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 6 * 3600)
    with OutputLock(out, lease_s=30):
        assert _lease(f"{out}/.lock")["holder"].startswith(f"pid {__import__('os').getpid()} ")
    assert f"took over {out}/.lock" in capsys.readouterr().err


def test_two_drivers_racing_for_an_expired_lock_one_wins(s3, bucket):
    out = f"s3://{bucket}/ds"
    stale = {"holder": "pid 1 on gone, started long ago", "token": "x", "lease_s": 0.5}
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps(stale).encode())
    wait_until_expired(f"{out}/.lock")
    results, locks = race_for_lock(out)
    assert results.count("won") == 1, results
    assert all("is in use by another build" in r for r in results if r != "won")
    for lock in locks:
        lock.__exit__(None, None, None)
    assert not storage.exists(f"{out}/.lock")


def test_a_lease_lost_to_another_build_ends_with_an_error(s3, bucket):
    out = f"s3://{bucket}/ds"
    lock = OutputLock(out, lease_s=LEASE).__enter__()
    # what a take-over does after this driver stalled past its lease: the object is replaced
    storage.write_bytes_atomic(f"{out}/.lock", json.dumps({"holder": "pid 2 on other", "lease_s": 60}).encode())
    deadline = time.monotonic() + 5 * LEASE
    while lock.lost is None and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(BuildStateError, match="lost the lock"):
        lock.check()
    with pytest.raises(BuildStateError, match=r"was lost while this build ran \(another build replaced"):
        lock.__exit__(None, None, None)
    assert _lease(f"{out}/.lock")["holder"] == "pid 2 on other"  # the other build's lock is left alone


def test_a_lock_without_a_lease_is_refused_with_the_delete_hint(s3, bucket):
    out = f"s3://{bucket}/ds"
    storage.write_bytes_atomic(f"{out}/.lock", b"pid 7 on oldhost, started 2026-01-01 00:00:00")
    with pytest.raises(BuildStateError, match=r"\(pid 7 on oldhost.*If no build is running .*delete s3://.*/ds/\.lock"):
        with OutputLock(out, lease_s=LEASE):
            pass


def test_work_record_round_trip_on_s3(s3, bucket):
    work = f"s3://{bucket}/ds/_work"
    assert load_state(work) is None
    save_state(work, {"videos": {"curate.split.min_seconds": 1.0}})
    assert load_state(work)["settings"] == {"videos": {"curate.split.min_seconds": 1.0}}
