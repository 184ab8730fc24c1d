"""The remote output lock: requests and time per step, on moto's S3 server (curate/buildstate.py OutputLock).

    python bench/bench_lock.py [--repeat 5]

Starts moto on 127.0.0.1 (as bench_storage.py does) and, ``--repeat`` times each, counts the requests the
server answered and the wall time of:
  free       acquire a free output's lock, then release it
  refused    a second driver finds a live lease and stops
  takeover   a driver finds an expired lease and takes it over (then releases)
  held 3 s   the holder's renewals over 3 s of a 3-s lease (one every lease/3)
The refused and takeover steps read "now" off the store (a scratch object: PUT, HEAD, DELETE) to judge
the lease by the store's clock; the free path and the renewals do not.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_storage import start_moto  # noqa: E402


def requests_since(log: Path, start: int) -> tuple[Counter, int]:
    lines = log.read_text(errors="replace").splitlines()
    found = Counter(m.group(1) for line in lines[start:]
                    if (m := re.search(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|HEAD|DELETE) /bench', line)))
    return found, len(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-lock-"))
    log = tmp / "moto.log"
    proc, endpoint = start_moto(log)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        import s3fs

        from reelforge import conditional, storage
        from reelforge.curate.buildstate import BuildStateError, OutputLock

        s3fs.S3FileSystem(skip_instance_cache=True).mkdir("bench")
        out, mark = "s3://bench/ds", len(log.read_text(errors="replace").splitlines())
        steps: dict[str, list[tuple[Counter, float]]] = {k: [] for k in ("free", "refused", "takeover", "held 3 s")}

        def step(name, fn):
            nonlocal mark
            _, mark = requests_since(log, mark)
            t = time.perf_counter()
            fn()
            wall = time.perf_counter() - t
            found, mark = requests_since(log, mark)
            steps[name].append((found, wall))

        def refused():
            try:
                OutputLock(out).__enter__()
            except BuildStateError:
                return
            raise AssertionError("a live lease was not refused")

        def stale_lock():
            storage.write_bytes_atomic(f"{out}/.lock", json.dumps({"holder": "gone", "lease_s": 0.1}).encode())
            data, version = conditional.read_versioned(f"{out}/.lock")
            while conditional.store_time(f"{out}/.lock") - version.modified <= 0.1 + conditional.CLOCK_SLACK_S:
                time.sleep(0.2)

        for _ in range(args.repeat):
            step("free", lambda: OutputLock(out).__enter__().__exit__(None, None, None))
            held = OutputLock(out, lease_s=3.0).__enter__()
            step("refused", refused)
            _, mark = requests_since(log, mark)
            time.sleep(3.0)   # the holder's thread renews every lease/3 = 1 s: about 3 renewals in the window
            found, mark = requests_since(log, mark)
            steps["held 3 s"].append((found, float("nan")))
            held.__exit__(None, None, None)
            stale_lock()
            step("takeover", lambda: OutputLock(out).__enter__().__exit__(None, None, None))
        print(f"{'step':10} {'requests (per step)':40} {'wall median':>12}")
        for name, runs in steps.items():
            counts = runs[len(runs) // 2][0]
            walls = sorted(w for _, w in runs)
            wall = walls[len(walls) // 2]
            print(f"{name:10} {', '.join(f'{m} {n}' for m, n in sorted(counts.items())):40} "
                  f"{'-' if wall != wall else f'{wall * 1000:.0f} ms':>12}")
        print(f"load average {os.getloadavg()[0]:.1f}, {args.repeat} repeats")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
