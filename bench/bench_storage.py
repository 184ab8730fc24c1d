"""Object storage: the readers on a local dataset (the baseline) and on the same dataset in an S3 bucket.

    python bench/bench_storage.py [--clips 96] [--workers 0 2]

Starts moto's S3 server on 127.0.0.1 (``pip install 'moto[server]'``; the same server the tests use),
writes ``--clips`` small H.264 clips as a local dataset, uploads it, then times in the same run:
  index    build_index on the bucket (each shard fetched once and scanned)
  indexed  VideoShardDataset + ShardLoader over one epoch: local pread vs ranged GETs at the index's offsets
  stream   StreamLoader, one pass: local files vs whole-shard streams (s3fs)
and prints the GETs the server answered for each reader. moto on the loopback has no network latency
worth the name; a real bucket adds its round trip to every ranged GET (hide it with loader workers).
Then the tools that write (issue 16's second part), each local -> local (the baseline) and s3 -> s3:
  report   write_report (tables, thumbnails from the shards, report.html + report.json)
  export   export_shards of every clip into a new dataset (ranged GETs in, one PUT per shard out)
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_moto(log_path: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=open(log_path, "wb"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(150):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
            return proc, endpoint
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError(f"moto_server did not start: {log_path.read_text()[-2000:]}")


def gets(log_path: Path, method: str = "GET") -> int:
    return len(re.findall(rf'"(?:\x1b\[[0-9;]*m)*{method} /bench/', log_path.read_text(errors="replace")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=96)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    log = tmp / "moto.log"
    proc, endpoint = start_moto(log)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=endpoint)
    try:
        import s3fs

        sys.path.insert(0, str(ROOT / "tests" / "shards"))
        from shard_fixtures import TEST_BUCKETS, clip_row, write_dataset

        from reelforge import storage
        from reelforge.shards.index import build_index
        from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset
        from reelforge.shards.stream import StreamConfig, StreamLoader, stream_dataset

        s3fs.S3FileSystem().mkdir("bench")
        per_shard = max(1, args.clips // 3)
        local = write_dataset(tmp / "ds", [clip_row(f"sq{i:04d}", 40, 40, 12, 8) for i in range(args.clips)],
                              shard_sizes=[per_shard] * (args.clips // per_shard))
        build_index(local, TEST_BUCKETS)
        remote = "s3://bench/ds"
        for p in sorted((local / "shards").glob("*.tar")) + [local / "clips.parquet"]:
            storage.write_bytes_atomic(f"{remote}/{p.relative_to(local)}", p.read_bytes())
        mb = sum(p.stat().st_size for p in (local / "shards").glob("*.tar")) / 2**20
        print(f"dataset: {args.clips} clips (40x40, 12 frames), {len(list((local / 'shards').glob('*.tar')))} "
              f"shards, {mb:.1f} MB; S3: moto on {endpoint}")
        g0, t0 = gets(log), time.time()
        build_index(remote, TEST_BUCKETS)
        print(f"index    s3: {time.time() - t0:6.2f} s, {gets(log) - g0} GETs")

        from reelforge.curate.report import write_report
        from reelforge.shards.export import export_shards

        for name, work in (("report", lambda ds, out: write_report(ds)),
                           ("export", lambda ds, out: export_shards(ds, out, buckets=TEST_BUCKETS))):
            for where, ds, out in (("local", local, tmp / "exported"), ("s3", remote, "s3://bench/exported")):
                g0, p0, t0 = gets(log), gets(log, "PUT"), time.time()
                work(ds, out)
                print(f"{name:8s} {where:5s}: {time.time() - t0:6.2f} s"
                      + (f", {gets(log) - g0} GETs, {gets(log, 'PUT') - p0} PUTs" if where == "s3" else ""))

        def run(name, make):
            for where, ds in (("local", str(local)), ("s3", remote)):
                for w in args.workers:
                    make(ds, w)  # warm: the decoders, the s3 client
                    g0, t0 = gets(log), time.time()
                    n = sum(len(b["clip_id"]) for b in make(ds, w))
                    dt = time.time() - t0
                    print(f"{name:8s} {where:5s} workers={w}: {n} samples in {dt:5.2f} s = {n / dt:6.0f} samples/s"
                          + (f", {gets(log) - g0} GETs" if where == "s3" else ""))

        run("indexed", lambda ds, w: ShardLoader(VideoShardDataset(ds, ReaderConfig(), 0, 1), num_workers=w))
        run("stream", lambda ds, w: StreamLoader(stream_dataset(StreamConfig(dataset_dir=ds, resampled=False,
                                                                             shuffle_buffer=1)), num_workers=w))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
