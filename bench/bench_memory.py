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


class Sampler(threading.Thread):
    """Samples the tree under ``pid`` every ``every`` seconds until ``stop()``; keeps the peaks."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.root, self.every = psutil.Process(pid), every
        self.peak_rss = self.peak_pss = self.procs_at_peak = self.samples = 0
        self.at_peak: dict[str, int] = {}
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            rss, pss, n, names = tree_memory(self.root)
            self.samples += 1
            self.peak_rss = max(self.peak_rss, rss)
            if pss > self.peak_pss:
                self.peak_pss, self.procs_at_peak, self.at_peak = pss, n, names
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="length of the looped 1080p input")
    ap.add_argument("--keep", metavar="DIR", help="build (or reuse) the input in DIR")
    ap.add_argument("--config", default=str(ROOT / "configs" / "build" / "default.yaml"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--every", type=float, default=1.0, help="seconds between samples")
    args = ap.parse_args()
    from bench_scenes import long_1080p

    keep = Path(args.keep or tempfile.mkdtemp(prefix="bench-memory-"))
    keep.mkdir(parents=True, exist_ok=True)
    video = Path(long_1080p(keep, args.minutes))
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
    sampler = Sampler(proc.pid, args.every)
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
