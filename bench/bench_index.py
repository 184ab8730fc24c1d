"""The index build alone (issue 16): ``build_index(DIR)`` in this process; RSS before, peak RSS, CPU, wall.

    .venv/bin/python bench/bench_index.py DIR                      # rewrites DIR/index.parquet
    .venv/bin/python bench/bench_index.py DIR --equal-to OTHER.parquet   # then: same schema and rows?

To measure an older checkout on the same DIR, put its modules first on ``PYTHONPATH`` and run from outside
the repository (BENCHMARKS.md, issue 16, "The index and the video rows streamed"). Imports are done
before the first RSS reading, so the growth is the build's.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import numpy  # noqa: F401  (imports are the floor, not the index)
import psutil
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset")
    p.add_argument("--equal-to", help="an index.parquet to compare the result with (schema, metadata, rows)")
    args = p.parse_args(argv)
    import reelforge
    from reelforge.shards.index import build_index

    before = psutil.Process().memory_info().rss
    t0, c0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    path = build_index(args.dataset)
    c1 = resource.getrusage(resource.RUSAGE_SELF)
    out = {"code": reelforge.__file__, "dataset": args.dataset, "rss_before_mb": round(before / 2**20, 1),
           "peak_rss_mb": round(c1.ru_maxrss / 1024, 1), "growth_mb": round(c1.ru_maxrss / 1024 - before / 2**20, 1),
           "cpu_s": round(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime, 2), "wall_s": round(time.time() - t0, 2),
           "row_groups": pq.ParquetFile(str(path)).num_row_groups}
    if args.equal_to:
        a, b = pq.read_table(str(path)), pq.read_table(args.equal_to)
        out["equal"] = a.schema.equals(b.schema, check_metadata=True) and a.equals(b)
    print(json.dumps(out))
    return 0 if out.get("equal", True) else 1


if __name__ == "__main__":
    sys.exit(main())
