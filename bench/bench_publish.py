"""What publishing costs: copying the kept clips out of the work shards into ``DIR/shards`` (with their
final JSON), next to the floor it cannot beat: ``shutil.copyfile`` of the same number of bytes.

    .venv/bin/python bench/bench_publish.py [--clips 2000] [--clip-kb 256] [--keep 0.5]

Work shards are synthesised (random bytes as mp4 members, 256 MiB shards like a real build), so the
figure is the copy itself, independent of how long transcoding took. A second publish of the same set
shows the "nothing changed" path (a digest comparison, no copy).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--clip-kb", type=int, default=256)
    ap.add_argument("--keep", type=float, default=0.5, help="fraction of clips whose status is ok")
    args = ap.parse_args()
    from reelforge.shards.publish import publish
    from reelforge.shards.writer import ShardWriter, ShardWriterConfig

    root = Path(tempfile.mkdtemp(prefix="bench_publish_"))
    try:
        work = root / "_work" / "shards"
        rows = []
        payload = os.urandom(args.clip_kb * 1024)
        with ShardWriter(work, ShardWriterConfig(prefix="work")) as w:
            for i in range(args.clips):
                key = f"clip{i:07d}"
                # a different first byte per clip: no two members are identical
                shard = w.write(key, {"mp4": bytes([i % 251]) + payload[1:], "json": b'{"status": "ok"}',
                                      "txt": b"a caption"})
                rows.append({"clip_id": key, "work_shard": shard})
        step = max(1, round(1 / args.keep)) if args.keep > 0 else args.clips + 1
        kept = rows[::step]
        work_bytes = sum(p.stat().st_size for p in work.glob("*.tar"))
        os.sync()

        def meta(r):
            return json.dumps({"clip_id": r["clip_id"], "status": "ok", "reason": None}).encode()

        t0 = time.perf_counter()
        res = publish(root, work, kept, meta, ShardWriterConfig(), root / "_work")
        t_pub = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = publish(root, work, kept, meta, ShardWriterConfig(), root / "_work")
        t_again = time.perf_counter() - t0

        # baseline: copy the same number of bytes as plain files, made durable like a published shard
        copy_dir = root / "copy"
        copy_dir.mkdir()
        budget, t0 = res.bytes, time.perf_counter()
        for p in sorted(work.glob("*.tar")):
            if budget <= 0:
                break
            shutil.copyfile(p, copy_dir / p.name)
            with open(copy_dir / p.name, "rb+") as f:
                os.fsync(f.fileno())
            budget -= p.stat().st_size
        t_copy = time.perf_counter() - t0
        copied = sum(p.stat().st_size for p in copy_dir.glob("*"))

        mb = 1024 * 1024
        print(f"work shards           {args.clips} clips, {work_bytes / mb:.0f} MiB")
        print(f"publish               {len(kept)} kept clips -> {len(res.shards)} shards, {res.bytes / mb:.0f} MiB "
              f"in {t_pub:.2f} s ({res.bytes / mb / t_pub:.0f} MiB/s)")
        print(f"publish, unchanged    {t_again:.3f} s (skipped={again.skipped})")
        print(f"baseline copy+fsync    {copied / mb:.0f} MiB in {t_copy:.2f} s ({copied / mb / t_copy:.0f} MiB/s)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
