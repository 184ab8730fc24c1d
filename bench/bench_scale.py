"""Scale bench (issue 16): N tiny generated videos through a whole build; wall time, clips/s, and the
driver's peak RSS in the build phase (the video tasks) and in the finish (the dataset-wide decision).

The claim it checks: the driver's memory does not grow with the number of clips, in the build phase
(rows and media stay on the workers and in the manifest parts; the driver holds the tasks in flight and
counts) and in the finish (streamed over the parts: ``curate/finish.py``). The finish's peak is reported
apart, and the index it ends with (``shards/index.py``) apart again (``index``).

    .venv/bin/python bench/bench_scale.py --n 1000 --n 10000 [--set ray.num_cpus=16]
    .venv/bin/python bench/bench_scale.py --n 1000 --refilter    # the finish alone, on out-1000 as built

``--refilter`` re-runs only the finish (``reelforge build --refilter``) on a dataset an earlier run of
this bench built, in a process that never started Ray: the finish's own memory, on the same clips.

``--clone-from DIR`` makes the dataset the finish runs on without decoding a frame: the complete videos
of a real build in ``DIR`` are copied until there are N, each copy under a new content hash (its clip
ids, rows, parts, work tars and their member names follow), with random frame-signature hashes and
random embeddings (so no copy is a near-duplicate of another: the search does its full work and keeps
every clip; the video rows saved in parts of 250, as a build's driver saves them a minute at a time), then
the finish runs on it as with ``--refilter``:

    .venv/bin/python bench/bench_scale.py --clone-from /tmp/reelforge-bench-scale/out-1000 --n 10000
    .venv/bin/python bench/bench_scale.py --refilter --republish --n 10000   # again; publish every clip anew

An older checkout measured by the same bench (its modules first on ``PYTHONPATH``, run from outside the
repository) is how BENCHMARKS.md compares code before and after a change on the same datasets.

Each video is two 1.5-s shots with a hard cut (128x128, 12 fps, about 10 KB): two clips. Videos differ in
seed, colours and motion, so no two are exact duplicates. The driver's RSS is sampled every 0.2 s by a
thread of the bench process (the build runs in it, as ``reelforge build`` does).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psutil

VIDEO_PART_ROWS = 250   # video rows per manifest part in a cloned dataset
COLORS = ("red", "green", "blue", "yellow", "orange", "purple", "cyan", "pink")
DIRECTIONS = ("left", "right", "up", "down")


def _render(args: tuple[str, int, int]) -> None:
    from reelforge.samples import PALETTE, ShotSpec, VideoSpec, render_video

    out, start, stop = args
    for i in range(start, stop):
        c1, c2 = COLORS[i % len(COLORS)], COLORS[(i // len(COLORS) + 3) % len(COLORS)]
        spec = VideoSpec(f"v{i:06d}", [
            ShotSpec(18, "gradient", PALETTE[c1], "circle", PALETTE["white"], motion="object",
                     direction=DIRECTIONS[i % 4], speed=6.0),
            ShotSpec(18, "stripes", PALETTE[c2], "square", PALETTE["yellow"], motion="pan",
                     direction=DIRECTIONS[(i // 4) % 4], speed=4.0),
        ], width=128, height=128, fps=12, seed=i)
        render_video(spec, out)


def generate(out: Path, n: int, workers: int) -> float:
    """Render videos v000000..v{n-1} into ``out`` (the ones already there are kept); returns seconds."""
    t0 = time.time()
    have = {p.stem for p in out.glob("v*.mp4")} if out.exists() else set()
    if len(have) >= n:
        return 0.0
    out.mkdir(parents=True, exist_ok=True)
    step = 200
    todo = [(str(out), s, min(s + step, n)) for s in range(0, n, step)
            if not all(f"v{i:06d}" in have for i in range(s, min(s + step, n)))]
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_render, todo))
    return time.time() - t0


class RssSampler(threading.Thread):
    """Peak RSS of this process per phase (the phase is whatever ``self.phase`` says when sampled)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.phase, self.peak, self.stop = "start", {}, threading.Event()
        self.proc = psutil.Process()

    def run(self):
        while not self.stop.is_set():
            rss = self.proc.memory_info().rss
            self.peak[self.phase] = max(self.peak.get(self.phase, 0), rss)
            time.sleep(0.2)


def _phases(sampler: RssSampler):
    """Attribute the finish, and the index it ends with, to their own phases while the ``with`` runs
    (patched by name, so the same bench measures an older checkout put first on ``PYTHONPATH``)."""
    from reelforge.curate import pipeline
    from reelforge.shards import index

    real_finish, real_index = pipeline.finish, index.build_index

    def finish(*a, **k):
        sampler.phase = "finish"
        return real_finish(*a, **k)

    def build_index(*a, **k):
        sampler.phase = "index"
        try:
            return real_index(*a, **k)
        finally:
            sampler.phase = "finish"

    class Phases:
        def __enter__(self):
            pipeline.finish, index.build_index = finish, build_index

        def __exit__(self, *exc):
            pipeline.finish, index.build_index = real_finish, real_index
    return Phases()


def refilter(n: int, root: Path, overrides: list[str], republish: bool = False) -> dict:
    """The finish alone (``run_refilter``) on out-N; phases: ``prepare`` (imports done: the lock, the
    recovery and, before issue 16's streamed video rows, loading every video row), ``finish``, ``index``.
    ``republish``: forget what DIR/shards was published from, so the publish copies every kept clip."""
    import resource

    from reelforge.config import load_config
    from reelforge.curate.pipeline import BuildConfig, run_refilter

    out = root / f"out-{n}"
    if republish:
        for p in (out / "_work").glob("published*"):
            p.unlink()
    cfg = load_config(BuildConfig, None, ["report=false"] + overrides)
    sampler = RssSampler()
    sampler.start()
    before = sampler.proc.memory_info().rss
    sampler.phase = "prepare"
    t0, cpu0 = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    try:
        with _phases(sampler):
            summary = run_refilter(out, cfg)
    finally:
        sampler.stop.set()
        sampler.join()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    mb = {k: round(v / 2**20, 1) for k, v in sampler.peak.items()}
    return {"videos": n, "clips": summary["clips"], "clips_ok": summary["clips_ok"], "refilter_s": round(time.time() - t0, 1),
            "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
            "rss_before_mb": round(before / 2**20, 1), "driver_peak_rss_mb": mb,
            "publish_unchanged": summary["publish"]["unchanged"], "loadavg": [round(x, 1) for x in os.getloadavg()],
            "code": sys.modules["reelforge"].__file__}


def clone_dataset(src: Path, dst: Path, n: int, seed: int = 0) -> int:
    """Copy the complete videos of the build in ``src`` into a new dataset ``dst`` until it has ``n``
    videos (see the module docstring); returns the number of clips. ``dst`` is replaced."""
    import hashlib
    import io
    import shutil
    import tarfile

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reelforge.curate.manifest import Manifest, rows_to_table
    from reelforge.curate.stages.signature import TICK_DTYPE, _HEADER

    rng = np.random.default_rng(seed)
    shutil.rmtree(dst, ignore_errors=True)
    man = Manifest(src)
    seeds = [v for v in man.load_videos().values() if v.get("status") == "ok" and v.get("sha256")
             and man.is_complete(v["sha256"])]
    if not seeds:
        raise SystemExit(f"{src}: no complete video to copy")
    (dst / "_work" / "videos").mkdir(parents=True)
    (dst / "_work" / "shards").mkdir()
    shutil.copy(src / "_work" / "build.json", dst / "_work" / "build.json")

    def new_signature(data):
        if data is None:
            return None
        ticks = np.frombuffer(data[_HEADER.itemsize:], TICK_DTYPE).copy()
        ticks["hash"] = rng.integers(0, 2**63, ticks["hash"].shape, dtype=np.int64).view(np.uint64)
        return data[:_HEADER.itemsize] + ticks.tobytes()

    cache: dict[str, tuple] = {}   # a seed's complete.json, parts (rows) and work tars (members), read once

    def seed(v):
        old_key = v["sha256"][:20]
        if old_key not in cache:
            d = src / "_work" / "clips" / old_key
            tars = []
            for tar in sorted((src / "_work" / "shards").glob(f"work-{old_key}-*.tar")):
                with tarfile.open(tar) as fin:
                    tars.append((tar.name, [(m, fin.extractfile(m).read()) for m in fin.getmembers()]))
            cache[old_key] = (json.loads((d / "complete.json").read_text()),
                              [(p.name, pq.read_table(p).to_pylist()) for p in sorted(d.glob("*.parquet"))], tars)
        return cache[old_key]

    videos, clips = [], 0
    for i in range(n):
        v = seeds[i % len(seeds)]
        old_key = v["sha256"][:20]
        complete, parts, tars = seed(v)
        sha = hashlib.sha256(f"{v['sha256']}-{i}".encode()).hexdigest()
        key = sha[:20]
        videos.append(dict(v, path=f"{Path(v['path']).parent}/copy{i:06d}/{Path(v['path']).name}", sha256=sha))
        dst_dir = dst / "_work" / "clips" / key
        dst_dir.mkdir(parents=True)
        (dst_dir / "complete.json").write_text(json.dumps(dict(complete, sha256=sha)))
        for name, rows in parts:
            rows = [dict(r) for r in rows]
            for r in rows:
                r["clip_id"] = r["clip_id"].replace(old_key, key)
                r["video_sha256"], r["video_path"] = sha, videos[-1]["path"]
                if r.get("work_shard"):
                    r["work_shard"] = r["work_shard"].replace(old_key, key)
                if r.get("frame_signature") is not None:
                    r["frame_signature"] = new_signature(r["frame_signature"])
                if r.get("clip_embedding") is not None:
                    e = rng.standard_normal(len(r["clip_embedding"])).astype(np.float32)
                    r["clip_embedding"] = (e / np.linalg.norm(e)).tolist()
            clips += len(rows)
            table = rows_to_table(rows)
            if "frame_signature" in table.column_names:
                table = table.set_column(table.column_names.index("frame_signature"), "frame_signature",
                                         pa.array([r.get("frame_signature") for r in rows], pa.binary()))
            pq.write_table(table, dst_dir / name.replace(old_key, key))
        for name, members in tars:
            with tarfile.open(dst / "_work" / "shards" / name.replace(old_key, key), "w",
                              format=tarfile.USTAR_FORMAT) as fout:
                for m, data in members:
                    m = m.replace(name=m.name.replace(old_key, key))
                    fout.addfile(m, io.BytesIO(data))
    # saved a few hundred at a time, as a build's driver saves them (every shards.max_open_seconds)
    for k in range(0, len(videos), VIDEO_PART_ROWS):
        pq.write_table(rows_to_table(videos[k:k + VIDEO_PART_ROWS]),
                       dst / "_work" / "videos" / f"part-{k // VIDEO_PART_ROWS:06d}.parquet")
    return clips


def bench(n: int, root: Path, overrides: list[str], workers: int) -> dict:
    from reelforge.config import load_config
    from reelforge.curate.pipeline import BuildConfig, run_build

    src = root / "videos"
    gen_s = generate(src, n, workers)
    inputs = root / f"inputs-{n}.txt"
    inputs.write_text("".join(f"{src}/v{i:06d}.mp4\n" for i in range(n)))
    out = root / f"out-{n}"
    cfg = load_config(BuildConfig, None, ["report=false", "ray.progress_bars=false", "ray.dashboard=false"]
                      + overrides)
    sampler = RssSampler()
    sampler.start()
    sampler.phase = "build"
    t0 = time.time()
    try:
        with _phases(sampler):
            summary = run_build([f"@{inputs}"], out, cfg, rebuild=True)
    finally:
        sampler.stop.set()
        sampler.join()
    wall = time.time() - t0
    mb = {k: round(v / 2**20, 1) for k, v in sampler.peak.items()}
    return {"videos": n, "clips": summary["clips"], "clips_ok": summary["clips_ok"], "wall_s": round(wall, 1),
            "build_s": summary["phase_s"]["build"], "finish_s": summary["phase_s"]["finish"],
            "clips_per_s": round(summary["clips"] / max(summary["phase_s"]["build"], 1e-9), 2),
            "driver_peak_rss_mb": mb, "work_shards": summary["work_shards"], "generate_s": round(gen_s, 1),
            "cpus": os.cpu_count(), "cpu_s_per_clip": summary.get("cpu_s_per_clip")}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, action="append", help="videos per run (repeat for several runs)")
    p.add_argument("--root", default="/tmp/reelforge-bench-scale")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="config override a.b=c")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes rendering videos")
    p.add_argument("--json", help="append each result as a JSON line to this file")
    p.add_argument("--refilter", action="store_true", help="only the finish, on out-N of an earlier run")
    p.add_argument("--clone-from", help="a built dataset whose complete videos are copied to N (then --refilter)")
    p.add_argument("--clone-only", action="store_true", help="with --clone-from: make the dataset, run nothing")
    p.add_argument("--republish", action="store_true",
                   help="with --refilter: remove _work/published*, so the publish copies every kept clip")
    args = p.parse_args(argv)
    root = Path(args.root)
    for n in args.n or [1000]:
        if args.clone_from:
            t0 = time.time()
            clips = clone_dataset(Path(args.clone_from), root / f"out-{n}", n)
            from reelforge.config import load_config
            from reelforge.curate import buildstate
            from reelforge.curate.pipeline import BuildConfig

            # the copies count as made with this config's settings (they are what the finish reads, not redone)
            buildstate.save_state(root / f"out-{n}" / "_work",
                                  buildstate.work_settings(load_config(BuildConfig, None, args.overrides).curate))
            print(f"cloned {n} videos, {clips} clips in {time.time() - t0:.0f} s", flush=True)
            if args.clone_only:
                continue
        if args.refilter or args.clone_from:
            result = refilter(n, root, args.overrides, args.republish)
        else:
            result = bench(n, root, args.overrides, args.workers)
        print(json.dumps(result), flush=True)
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    sys.exit(main())
