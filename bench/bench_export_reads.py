"""`shards export` from S3: this tree's export against another commit's, side by side in one run.

    python bench/bench_export_reads.py --old-commit e7a0f2a [--clips 150] [--repeat 3]

Starts moto on 127.0.0.1 (as bench_storage.py does), uploads a dataset of ``--clips`` small H.264 clips in
3 shards, then alternates ``export_shards`` from the bucket to a local dir with this tree's
``shards/export.py`` and with the one at ``--old-commit`` (loaded from git as a module, so both run on
the same interpreter, server and data), ``--repeat`` times each, printing GETs, wall and CPU seconds.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_storage import gets, start_moto  # noqa: E402


def old_export(commit: str, tmp: Path):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:shards/export.py"], check=True,
                         capture_output=True, text=True).stdout
    path = tmp / "old_export.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_export", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.export_shards


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old-commit", required=True)
    ap.add_argument("--clips", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    log = tmp / "moto.log"
    proc, endpoint = start_moto(log)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        import s3fs

        sys.path.insert(0, str(ROOT / "tests" / "shards"))
        from shard_fixtures import TEST_BUCKETS, clip_row, write_dataset

        from reelforge import storage
        from reelforge.shards.export import export_shards
        from reelforge.shards.index import build_index

        s3fs.S3FileSystem().mkdir("bench")
        per_shard = max(1, args.clips // 3)
        local = write_dataset(tmp / "ds", [clip_row(f"sq{i:04d}", 40, 40, 12, 8) for i in range(args.clips)],
                              shard_sizes=[per_shard] * (args.clips // per_shard))
        build_index(local, TEST_BUCKETS)
        remote = "s3://bench/ds"
        for p in sorted(local.rglob("*")):
            if p.is_file():
                storage.write_bytes_atomic(f"{remote}/{p.relative_to(local).as_posix()}", p.read_bytes())
        mb = sum(p.stat().st_size for p in (local / "shards").glob("*.tar")) / 2**20
        print(f"dataset: {args.clips} clips in 3 shards, {mb:.1f} MB; load average {os.getloadavg()[0]:.1f}")
        versions = {"new": export_shards, f"old {args.old_commit}": old_export(args.old_commit, tmp)}
        results: dict[str, list[tuple[int, float, float]]] = {k: [] for k in versions}
        for i in range(args.repeat):
            for name, export in versions.items():
                g0, t0, c0 = gets(log), time.perf_counter(), cpu()
                summary = export(remote, tmp / f"out-{name.split()[0]}-{i}", buckets=TEST_BUCKETS)
                results[name].append((gets(log) - g0, time.perf_counter() - t0, cpu() - c0))
                assert summary["samples"] == args.clips
        for name, runs in results.items():
            walls, cpus = sorted(r[1] for r in runs), sorted(r[2] for r in runs)
            print(f"{name:20s} GETs {sorted({r[0] for r in runs})}, wall median {walls[len(walls) // 2]:.2f} s, "
                  f"CPU (user+sys, this process) median {cpus[len(cpus) // 2]:.2f} s")
        print(f"load average {os.getloadavg()[0]:.1f}")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
