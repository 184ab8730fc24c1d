"""Peak memory of a whole `reelforge build` on a long 1080p input: the driver plus every Ray process.

The input is ``sintel_trailer_30s`` re-encoded once at 1920x1080 (x264 superfast, crf 23) and looped by
stream copy (no encode: ``bench_scenes.long_1080p``) to ``--minutes`` of video. ``reelforge build``
with the default config runs on it as a subprocess that starts its own local Ray, so every Ray process
(GCS, raylet, workers, actors) descends from it. Every ``--every`` seconds the bench walks that process
tree with psutil and sums

- RSS: resident pages of each process (pages shared between processes, like Ray's object store in
  /dev/shm or the libraries every worker maps, count once per process: an upper bound), and
- PSS: each shared page divided among the processes that map it (what the tree costs the machine).

It prints both peaks, the sample count, the build's wall time and the process count at the peak.

    .venv/bin/python bench/bench_memory.py --minutes 10 [--keep DIR] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def tree_memory(root: psutil.Process) -> tuple[int, int, int, dict[str, int]]:
    """(RSS sum, PSS sum, processes, PSS by process name) over ``root`` and its descendants; processes that exit
    mid-walk are skipped."""
    rss = pss = n = 0
    names: dict[str, int] = {}
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0, 0, 0, {}
    for p in procs:
        try:
            full = p.memory_full_info()
            name = "driver" if p is root else p.name()
        except psutil.Error:
            continue
        rss += full.rss
        pss += getattr(full, "pss", full.rss)
        names[name] = names.get(name, 0) + getattr(full, "pss", full.rss)
        n += 1
    return rss, pss, n, names


def clips_done(out: Path) -> tuple[int, float]:
    """(clips committed, end of the latest committed clip in seconds of input): the build's progress through
    the input, read from the work parts' names (``<tar>.parquet`` files; a tar's name does not say where
    in the video it is, so the parquet's ``end_s`` column is read, a few KB each)."""
    import pyarrow.parquet as pq

    n, end = 0, 0.0
    for p in (out / "_work" / "clips").glob("*/*.parquet"):
        try:
            col = pq.read_table(p, columns=["end_s"]).column("end_s").to_pylist()
        except Exception:  # a part being renamed into place, or one without clips: counted next time
            continue
        n += len(col)
        end = max([end] + [x for x in col if x is not None])
    return n, end


def read_position(root: psutil.Process, video: Path) -> float:
    """How far into ``video`` (0-1) the furthest reader of it in the tree is: the file offset of its open
    descriptor. Progress through the shot split, where no clip is committed yet; the probe's hash reads
    the whole file first, so the first minute of a run can show the whole input read."""
    target, best = str(video.resolve()), 0
    try:
        procs = [root] + root.children(recursive=True)
    except psutil.Error:
        return 0.0
    for p in procs:
        try:
            best = max([best] + [f.position for f in p.open_files() if f.path == target])
        except (psutil.Error, AttributeError):
            continue
    return best / max(1, video.stat().st_size)


class Sampler(threading.Thread):
    """Samples the tree under ``pid`` every ``every`` seconds until ``stop()``; keeps the peaks. With
    ``log``, appends one JSON line per sample (wall seconds, RSS and PSS summed, processes, the largest
    process's RSS, and every ``progress_every`` samples the clips committed under ``out`` and how far into
    the input they reach), so a run that is cut still gives memory against minutes of input processed."""

    def __init__(self, pid: int, every: float, log: Path | None = None, out: Path | None = None,
                 progress_every: int = 30, video: Path | None = None, minutes: float = 0.0):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self.peak_rss = self.peak_pss = self.procs_at_peak = self.samples = 0
        self.at_peak: dict[str, int] = {}
        self._done = threading.Event()
        self.log, self.out, self.progress_every = log, out, progress_every
        self.video, self.minutes = video, minutes
        self.t0 = time.time()

    def run(self) -> None:
        import json

        progress, read = (0, 0.0), 0.0
        while not self._done.is_set():
            rss, pss, n, names = tree_memory(self.root)
            self.samples += 1
            self.peak_rss = max(self.peak_rss, rss)
            if pss > self.peak_pss:
                self.peak_pss, self.procs_at_peak, self.at_peak = pss, n, names
            if self.log is not None:
                if self.out is not None and self.samples % self.progress_every == 1:
                    progress = clips_done(self.out)
                    read = read_position(self.root, self.video) * self.minutes if self.video else 0.0
                top = max(names.items(), key=lambda kv: kv[1], default=("", 0))
                with open(self.log, "a") as f:
                    f.write(json.dumps({"t": round(time.time() - self.t0, 1), "rss_mib": rss >> 20,
                                        "pss_mib": pss >> 20, "procs": n, "top": top[0],
                                        "top_pss_mib": top[1] >> 20, "clips": progress[0],
                                        "input_min": round(progress[1] / 60, 2), "read_min": round(read, 2),
                                        "load1": round(psutil.getloadavg()[0], 1)}) + "\n")
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join()


class CpuSampler(threading.Thread):
    """CPU seconds (user + system) of ``pid`` and all its descendants between ``start()`` and ``stop()``,
    processes that exit in between included: every ``every`` seconds each process's CPU is read and the
    last reading of each kept (a process that exits loses at most its last ``every`` seconds). Reading
    only the processes alive at the end misses every Ray worker that exited before it.

    ``by_name()``: the same per process name (Ray workers are named after what they run)."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self._done = threading.Event()
        self.first: dict[tuple[int, float], float] = {}
        self.last: dict[tuple[int, float], tuple[str, float]] = {}
        self._read(initial=True)

    def _read(self, initial: bool = False) -> None:
        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        for p in procs:
            try:
                with p.oneshot():
                    key, t = (p.pid, p.create_time()), p.cpu_times()
                    name = p.name() if p is not self.root else "driver"
                    if name.startswith("ray::") or name in ("python", "python3"):
                        name = " ".join(p.cmdline()[:1])[:60] or name
            except psutil.Error:
                continue
            cpu = t.user + t.system
            if initial:
                self.first[key] = cpu
            self.last[key] = (name, cpu)

    def run(self) -> None:
        while not self._done.wait(self.every):
            self._read()

    def stop(self) -> float:
        self._done.set()
        self.join()
        self._read()
        return sum(self.by_name().values())

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for key, (name, cpu) in self.last.items():
            out[name] = out.get(name, 0.0) + cpu - self.first.get(key, 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def run_task_here(video: Path, args) -> None:
    """``--task-only``: the one video's task (``curate/video_task.py``) in this process, no Ray, with the
    build's default config: what a Ray worker does for a video, where every allocation can be watched.
    Prints the process's RSS (and its peak so far, from a 0.2 s sampler) after each stage call, with the
    objects alive that grow with length (Python objects by type, numpy arrays and their bytes, PyAV
    frames and packets) every ``--census`` clip batches."""
    import gc
    import json
    import os
    from collections import Counter

    import numpy as np

    from reelforge.config import load_config
    from reelforge.curate import runner
    from reelforge.curate.manifest import Manifest
    from reelforge.curate.pipeline import BuildConfig, stage_specs
    from reelforge.curate.video_task import VideoTask

    cfg = load_config(BuildConfig, args.config, args.set)
    me = psutil.Process()
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            peak[0] = max(peak[0], me.memory_info().rss)

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.time()
    calls = Counter()
    log = open(args.log, "a") if args.log else None

    def census() -> dict:
        import av

        gc.collect()
        by_type = Counter(type(o).__name__ for o in gc.get_objects())
        arrays = [o for o in gc.get_objects() if isinstance(o, np.ndarray)]
        return {"objects": sum(by_type.values()), "top_types": by_type.most_common(6),
                "ndarrays": len(arrays), "ndarray_mib": round(sum(a.nbytes for a in arrays if a.base is None)
                                                                / 2**20, 1),
                "av_frames": sum(1 for o in gc.get_objects() if isinstance(o, av.VideoFrame)),
                "av_packets": sum(1 for o in gc.get_objects() if isinstance(o, av.Packet))}

    apply = runner.StageChain._apply

    def watched(chain, stage, spec, batch):
        out = apply(chain, stage, spec, batch)
        calls[spec.name] += 1
        rss = me.memory_info().rss
        peak[0] = max(peak[0], rss)
        rec = {"t": round(time.time() - t0, 1), "stage": spec.name, "call": calls[spec.name],
               "rss_mib": rss >> 20, "peak_mib": peak[0] >> 20}
        last_clip_stage = chain.specs[-1].name == spec.name and spec.name != "scene_split" and chain.specs[0].name != "probe"
        if spec.name in ("probe", "scene_split") or (
                last_clip_stage and args.census and calls[spec.name] % args.census == 0):
            rec.update(census())
        if "end_s" in out and len(out["end_s"]):
            rec["input_min"] = round(float(max(out["end_s"])) / 60, 2)
        line = json.dumps(rec)
        if spec.name in ("probe", "scene_split") or calls[spec.name] % args.census == 0 or "objects" in rec:
            print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()
        return out

    runner.StageChain._apply = watched
    if args.no_heap_bound:  # the control: glibc's defaults, as before curate/malloc.py
        from reelforge.curate import malloc

        malloc.bound_heap = malloc.release = lambda: None
    out = Path(tempfile.mkdtemp(prefix="bench-memory-task-"))
    manifest = Manifest(out)
    task = VideoTask(str(manifest.work), stage_specs(cfg.curate, "video"), stage_specs(cfg.curate, "clip"),
                     cfg.shards, policy="record")
    print(f"task built: rss {me.memory_info().rss >> 20} MiB (models loaded); MALLOC_ARENA_MAX="
          f"{os.environ.get('MALLOC_ARENA_MAX', 'unset')}", flush=True)
    w0 = time.time()
    row = task({"path": str(video.resolve()), "status": "ok", "reason": ""})
    done.set()
    stats = row.get("_rf_task")
    print(f"{video.name}: task {time.time() - w0:.0f} s, status {row.get('status')} {row.get('reason') or ''}, "
          f"{stats}; peak RSS {peak[0] / 2**20:.0f} MiB, RSS at the end {me.memory_info().rss >> 20} MiB; "
          f"load {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the looped 1080p input")
    ap.add_argument("--keep", metavar="DIR", help="build (or reuse) the input in DIR")
    ap.add_argument("--config", default=str(ROOT / "configs" / "build" / "default.yaml"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    ap.add_argument("--log", metavar="FILE", help="append one JSON line per sample (memory over time and "
                    "input processed) to FILE")
    ap.add_argument("--task-only", action="store_true", help="run the video's task in this process (no Ray, "
                    "no driver) and print its RSS after every stage call: where the memory goes")
    ap.add_argument("--census", type=int, default=10, help="with --task-only: count live objects every N "
                    "clip batches (gc walk: slow on a big heap)")
    ap.add_argument("--no-heap-bound", action="store_true", help="with --task-only: leave glibc's malloc "
                    "at its defaults (no curate/malloc.py bound_heap/release): the control")
    args = ap.parse_args()
    from bench_scenes import long_1080p

    keep = Path(args.keep or tempfile.mkdtemp(prefix="bench-memory-"))
    keep.mkdir(parents=True, exist_ok=True)
    video = Path(long_1080p(keep, args.minutes))
    if args.task_only:
        run_task_here(video, args)
        return
    work = Path(tempfile.mkdtemp(prefix="bench-memory-build-"))
    (work / "in").mkdir()
    (work / "in" / video.name).symlink_to(video.resolve())
    cmd = [str(Path(sys.executable).with_name("reelforge")), "build", args.config, "--input", str(work / "in"),
           "--output", str(work / "out"), "--set", "ray.dashboard=false"]
    for s in args.set:
        cmd += ["--set", s]
    print("running: " + " ".join(cmd), flush=True)
    w0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = Sampler(proc.pid, args.every, Path(args.log) if args.log else None, work / "out",
                      video=work / "in" / video.name, minutes=args.minutes)
    sampler.start()
    tail = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-25:]
    rc = proc.wait()
    sampler.stop()
    wall = time.perf_counter() - w0
    print("\n".join(tail))
    print(f"\n{video.name}: {args.minutes:g} min of 1080p; build exit {rc}, {wall:.0f} s wall, "
          f"{sampler.samples} samples every {args.every:g} s")
    print(f"peak PSS of the build's process tree {sampler.peak_pss / 2**30:.2f} GiB "
          f"({sampler.procs_at_peak} processes); peak RSS summed {sampler.peak_rss / 2**30:.2f} GiB "
          f"(shared pages counted once per process); load average {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
    print("PSS at the peak, by process name (MiB): " + ", ".join(
        f"{k} {v / 2**20:.0f}" for k, v in sorted(sampler.at_peak.items(), key=lambda kv: -kv[1]) if v >= 2**20))
    if rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
