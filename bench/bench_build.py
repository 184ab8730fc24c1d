"""Build cost against a bare transcode of the same spans, on real 1080p and 480p input.

For each input, in one run: ``reelforge build`` with the given config (default: all default stages)
on a folder holding only that file, then the irreducible work of the same clips in one PyAV
process: decode each ok clip's span, scale to ``max_side`` px, encode H.264 (``preset``, ``crf``,
2 threads), as the transcode stage's settings say. Prints both in wall and CPU seconds (the build's
CPU summed over the driver and every Ray worker process), their ratio, and the build's phases.

    .venv/bin/python bench/bench_build.py [--keep DIR] [--repeats N] [--loop-minutes M] [--warm] [--set key=value …] [VIDEO …]

Inputs by default: ``sintel_trailer_30s.mp4`` (854x480, as shipped) and the same trailer at
1920x1080 (x264 superfast, crf 18, encoded once into --keep or a temp folder): the only native
1080p files in ../shared/media are 2-3 s long. ``--loop-minutes M`` adds the 1080p trailer (crf 23)
looped by stream copy to M minutes (``bench_scenes.long_1080p``): a build's fixed costs (Ray's
daemons, a worker's imports and model loads, the report) amortise over a longer input, as over many
videos. ``--repeats N`` builds each input N times, each followed by its bare transcode, and prints
the medians. On a shared machine compare CPU seconds, not wall; the load average is printed.
Issue 12's bar: the whole build's CPU <= 1.5x the bare transcode of the spans it transcoded.
"""
from __future__ import annotations

import argparse
import os
import json
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "media"


def sintel_1080p(out_dir: Path, crf: int = 18, height: int = 1080) -> Path:
    """sintel_trailer_30s upscaled to 16:9 at ``height`` (1920x1080 by default) by x264 (superfast),
    encoded once per folder, height and crf."""
    import av

    width = height * 16 // 9 // 2 * 2
    out = out_dir / (f"sintel_trailer_30s_1080p_crf{crf}.mp4" if height == 1080 else
                     f"sintel_trailer_30s_{height}p_crf{crf}.mp4")
    if out.exists():
        return out
    with av.open(str(SHARED / "sintel_trailer_30s.mp4")) as inp, av.open(str(out), "w") as o:
        ist = inp.streams.video[0]
        st = o.add_stream("libx264", rate=ist.average_rate)
        st.width, st.height, st.pix_fmt, st.time_base = width, height, "yuv420p", 1 / ist.average_rate
        st.options = {"preset": "superfast", "crf": str(crf)}
        for n, f in enumerate(inp.decode(ist)):
            f = f.reformat(width=width, height=height, format="yuv420p")
            f.pts, f.time_base = n, 1 / ist.average_rate
            f.pict_type = av.video.frame.PictureType.NONE  # let x264 choose its frame types
            o.mux(st.encode(f))
        o.mux(st.encode())
    return out


def stage_cpu_seconds(table_path: Path) -> dict[str, tuple[float, int]]:
    """stage -> (CPU seconds summed over rows, rows) from the ``cpu_s_<stage>`` columns every stage adds
    (curate/stage.py: the CPU of each call, shared among its rows)."""
    import pyarrow.parquet as pq

    from reelforge.curate.stage import CPU_PREFIX

    table = pq.read_table(table_path)
    out = {}
    for name in table.column_names:
        if name.startswith(CPU_PREFIX):
            vals = [v for v in table.column(name).to_pylist() if v is not None]
            out[name[len(CPU_PREFIX):]] = (float(sum(vals)), len(vals))
    return out


def scored_after_cheap_drop(clips_path: Path) -> tuple[float, int]:
    """(CPU seconds, clips) the model stages spent on clips that a filter earlier in the stage list
    removed: what not scoring dropped clips would save (scores are kept today so --refilter can
    re-decide every clip)."""
    import pyarrow.parquet as pq

    from reelforge.curate.stage import CPU_PREFIX
    from reelforge.curate.stage_list import STAGES

    names = [e.name for e in STAGES]
    cheap = names[:names.index("aesthetic")]
    rows = pq.read_table(clips_path).to_pylist()
    total, n = 0.0, 0
    for r in rows:
        if r["status"] == "filtered" and str(r.get("reason") or "").split(":")[0] in cheap:
            cpu = sum(r.get(CPU_PREFIX + m) or 0.0 for m in names[names.index("aesthetic"):names.index("near_dup")])
            total, n = total + cpu, n + (cpu > 0)
    return total, n


def bare_transcode(path: Path, spans: list[tuple[float, float]], max_side: int, preset: str, crf: int) -> dict:
    """Decode each span of ``path`` (seek to the keyframe before it), scale so the longer side is at
    most ``max_side`` (even sizes), encode H.264 in memory; one process, 2 encoder threads."""
    import io
    import resource

    import av

    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    frames = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        scale = min(1.0, max_side / max(s.width, s.height))
        w, h = int(s.width * scale) // 2 * 2, int(s.height * scale) // 2 * 2
        rate = s.average_rate or Fraction(24)
        for a, b in spans:
            c.seek(int(a / s.time_base), stream=s, backward=True)
            buf = io.BytesIO()
            with av.open(buf, "w", format="mp4") as o:
                st = o.add_stream("libx264", rate=rate)
                st.width, st.height, st.pix_fmt = w, h, "yuv420p"
                st.options = {"preset": preset, "crf": str(crf), "threads": "2"}
                n = 0
                for f in c.decode(s):
                    if f.time is None or f.time < a - 1e-6:
                        continue
                    if f.time >= b - 1e-6:
                        break
                    g = f.reformat(width=w, height=h, format="yuv420p")
                    g.pts, g.time_base = n, 1 / rate
                    o.mux(st.encode(g))
                    n += 1
                o.mux(st.encode())
            frames += n
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return {"wall": time.perf_counter() - w0, "cpu": cpu, "frames": frames}


BAR = 1.5  # issue 12: the whole build within 1.5x a bare transcode of the same spans, in CPU


def process_kind(name: str) -> str:
    """A process name (``CpuSampler.by_name``) -> what it is in the build."""
    if name == "driver":
        return "driver"
    if name.startswith("ray::") and not name.endswith("Agent"):
        return "task workers"  # ray::IDLE between tasks, ray::_run_task while one runs
    return "Ray daemons"       # gcs_server, raylet, agents, log monitor, autoscaler monitor, dashboard


def self_timed_sampler(pid: int):
    """``bench_memory.CpuSampler`` that also knows its own CPU: it runs in the driver and reads every
    process of the tree five times a second (at 15 processes, ~0.03 s of CPU per second of wall), which
    is the bench's cost, not the build's: ``own`` is subtracted from the driver."""
    from bench_memory import CpuSampler  # same folder

    class Sampler(CpuSampler):
        own = 0.0

        def run(self) -> None:
            t0 = time.thread_time()
            super().run()
            self.own = time.thread_time() - t0

        def by_name(self) -> dict[str, float]:
            out = super().by_name()
            out["driver"] = out.get("driver", 0.0) - self.own
            return out

    return Sampler(pid)


def build_once(video: Path, cfg, tc, bare_too: bool = True) -> dict:
    """One build of ``video`` alone and (``bare_too``) the bare transcode of the spans it transcoded, back
    to back."""
    import pyarrow.parquet as pq

    from reelforge.curate.pipeline import run_build
    from reelforge.curate.stage import CPU_PREFIX

    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        (work / "in").mkdir()
        (work / "in" / video.name).symlink_to(video.resolve())
        sampler = self_timed_sampler(os.getpid())
        sampler.start()
        w0 = time.perf_counter()
        summary = run_build([str(work / "in")], work / "out", cfg)
        wall = time.perf_counter() - w0
        sampler.stop()
        cpu = sum(sampler.by_name().values())  # the sampler's own CPU left out
        clips = pq.read_table(work / "out" / "clips.parquet",
                              columns=["status", "reason", "start_s", "end_s", CPU_PREFIX + "transcode"]).to_pylist()
        stage_cpu = {"videos": stage_cpu_seconds(work / "out" / "videos.parquet"),
                     "clips": stage_cpu_seconds(work / "out" / "clips.parquet")}
        wasted = scored_after_cheap_drop(work / "out" / "clips.parquet")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kinds: dict[str, float] = {}
    for name, v in sampler.by_name().items():
        kinds[process_kind(name)] = kinds.get(process_kind(name), 0.0) + v
    # the build transcodes every clip the clip policy keeps (scores are taken on the transcoded clip),
    # and publishes the ok ones: the bar is against the transcoded spans; the ok ones are shown too
    transcoded = CPU_PREFIX + "transcode"
    bare = {}
    for label, keep in (("transcoded", lambda r: r[transcoded] is not None), ("ok", lambda r: r["status"] == "ok"))[
            :2 if bare_too else 0]:
        spans = sorted((r["start_s"], r["end_s"]) for r in clips if keep(r))
        bare[label] = dict(bare_transcode(video, spans, tc.max_side, tc.preset, tc.crf), spans=len(spans),
                           seconds=sum(b - a for a, b in spans))
    stages = sum(t for per in stage_cpu.values() for t, _ in per.values())
    return {"wall": wall, "cpu": cpu, "by_name": sampler.by_name(), "kinds": kinds, "sampler": sampler.own,
            "clips": clips, "bare": bare,
            "stage_cpu": stage_cpu, "stages": stages, "wasted": wasted, "summary": summary}


def report_run(video: Path, run: dict, tc) -> None:
    clips, bare = run["clips"], run["bare"]
    print(f"\n== {video.name}: {len(clips)} clips planned, {sum(r['status'] == 'ok' for r in clips)} ok ==")
    print(f"reelforge build            wall {run['wall']:7.1f} s   CPU {run['cpu']:7.1f} s (driver + every Ray process, "
          f"sampled every 0.2 s; the sampler's own {run['sampler']:.1f} s left out)")
    print("  CPU by kind: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(run["kinds"].items(), key=lambda kv: -kv[1])))
    print("  CPU by process: " + ", ".join(f"{k} {v:.1f}" for k, v in run["by_name"].items() if v >= 0.05))
    for label, base in bare.items():
        print(f"bare transcode, {label:10s} wall {base['wall']:7.1f} s   CPU {base['cpu']:7.1f} s   "
              f"({base['spans']} spans, {base['seconds']:.1f} s, {base['frames']} frames, {tc.max_side} px, "
              f"{tc.preset}, crf {tc.crf}, 2 threads, one process)   build / this: wall "
              f"{run['wall'] / base['wall']:.2f}x, CPU {run['cpu'] / max(base['cpu'], 1e-9):.2f}x")
    base = bare["transcoded"]["cpu"]
    print(f"build / bare transcode of the transcoded spans, CPU: {run['cpu'] / max(base, 1e-9):.2f}x "
          f"(bar {BAR}x; the stages alone {run['stages'] / max(base, 1e-9):.2f}x; CPU that is no stage's "
          f"{run['cpu'] - run['stages']:.1f} s)")
    # the ratio taken apart, in units of the bare transcode: what each stage adds, and the CPU that is no
    # stage's by process kind (a task worker's own: imports, model loads, the clip plan, shard writes, Ray's
    # core-worker threads outside a stage call); the parts sum to the build / bare ratio
    parts = {k: t for per in run["stage_cpu"].values() for k, (t, _) in per.items() if t >= 0.005}
    kinds = dict(run["kinds"])
    kinds["task workers"] = kinds.get("task workers", 0.0) - run["stages"]
    print("build / bare by part: " + ", ".join(f"{k} {v / max(base, 1e-9):.2f}" for k, v in
                                               [*parts.items(), *((f"{k} (no stage)", v) for k, v in kinds.items())]))
    failed = [r["reason"] for r in clips if r["status"] == "failed"]
    if failed:
        print(f"failed clips: {len(failed)}: {sorted(set(failed))[:3]}")
    print("phases: " + json.dumps(run["summary"].get("phase_s", {})))
    print(f"model stages' CPU on clips a cheaper filter (before them in the stage list) removed: "
          f"{run['wasted'][0]:.2f} s over {run['wasted'][1]} clips")
    for phase, per_stage in run["stage_cpu"].items():
        print(f"stage CPU, {phase} phase (total s / rows that ran it / s per row): " + ", ".join(
            f"{k} {t:.2f}/{n}/{t / max(n, 1):.3f}" for k, (t, n) in per_stage.items()))


def main() -> None:
    import statistics

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="*", help="inputs (default: sintel 480p as shipped and at 1080p)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "build" / "default.yaml"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--keep", metavar="DIR", help="where the 1080p inputs are made (reused if there)")
    ap.add_argument("--repeats", type=int, default=1, help="builds per input; medians are printed")
    ap.add_argument("--loop-minutes", type=float, default=0.0,
                    help="also the 1080p trailer looped by stream copy to this many minutes")
    ap.add_argument("--warm", action="store_true",
                    help="build the first input once, untimed, before the timed builds: the task worker is then "
                         "started, its modules imported and its models loaded, as on a cluster that has run a "
                         "build before (the per-build start-up, ~2-3 s of CPU, is then left out of every ratio)")
    args = ap.parse_args()
    from reelforge.cli import _load_build_config
    from reelforge.cluster import init_ray

    keep = Path(args.keep or tempfile.mkdtemp(prefix="bench-build-in-"))
    keep.mkdir(parents=True, exist_ok=True)
    videos = [Path(v) for v in args.videos] or [SHARED / "sintel_trailer_30s.mp4", sintel_1080p(keep)]
    if args.loop_minutes:
        from bench_scenes import long_1080p  # same folder

        videos.append(Path(long_1080p(keep, args.loop_minutes)))
    cfg = _load_build_config(args.config, ["ray.dashboard=false", "ray.progress_bars=false", *args.set])
    tc = cfg.curate.transcode
    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    init_ray(cfg.ray)  # start Ray before timing: a cluster is already up in production
    if args.warm:
        warm = build_once(videos[0], cfg, tc, bare_too=False)
        print(f"warm-up build of {videos[0].name} (not counted): CPU {warm['cpu']:.1f} s, stages {warm['stages']:.1f} s")
    results: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for video in videos:
            run = build_once(video, cfg, tc)
            report_run(video, run, tc)
            print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
            results.setdefault(video.name, []).append(run)
    med = statistics.median
    print(f"\n== medians over {args.repeats} build(s) per input; load average after: "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} ==")
    print("| input | build CPU s | of which stages | driver / task workers / Ray daemons | bare transcode CPU s | "
          "build / bare | stages / bare |")
    for name, runs in results.items():
        base = [r["bare"]["transcoded"]["cpu"] for r in runs]
        kinds = " / ".join(f"{med([r['kinds'].get(k, 0.0) for r in runs]):.1f}"
                           for k in ("driver", "task workers", "Ray daemons"))
        print(f"| {name} | {med([r['cpu'] for r in runs]):.1f} | {med([r['stages'] for r in runs]):.1f} | {kinds} | "
              f"{med(base):.1f} | {med([r['cpu'] / b for r, b in zip(runs, base)]):.2f}x | "
              f"{med([r['stages'] / b for r, b in zip(runs, base)]):.2f}x |")


if __name__ == "__main__":
    main()
