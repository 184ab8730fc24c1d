"""Build cost against a bare transcode of the same spans, on real 1080p and 480p input.

For each input, in one run: ``reelforge build`` with the given config (default: all default stages)
on a folder holding only that file, then the irreducible work of the same clips in one PyAV
process: decode each ok clip's span, scale to ``max_side`` px, encode H.264 (``preset``, ``crf``,
2 threads), as the transcode stage's settings say. Prints both in wall and CPU seconds (the build's
CPU summed over the driver and every Ray worker process), their ratio, and the build's phases.

    .venv/bin/python bench/bench_build.py [--keep DIR] [--set key=value …] [VIDEO …]

Inputs by default: ``sintel_trailer_30s.mp4`` (854x480, as shipped) and the same trailer at
1920x1080 (x264 superfast, crf 18, encoded once into --keep or a temp folder): the only native
1080p files in ../shared/media are 2-3 s long. On a shared machine compare CPU seconds, not wall.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="*", help="inputs (default: sintel 480p as shipped and at 1080p)")
    ap.add_argument("--config", default=str(ROOT / "configs" / "build" / "default.yaml"))
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--keep", metavar="DIR", help="where the 1080p input is made (reused if there)")
    args = ap.parse_args()
    import pyarrow.parquet as pq

    from bench_memory import CpuSampler  # same folder
    from reelforge.cli import _load_build_config
    from reelforge.cluster import init_ray
    from reelforge.curate.pipeline import run_build
    from reelforge.curate.stage import CPU_PREFIX

    keep = Path(args.keep or tempfile.mkdtemp(prefix="bench-build-in-"))
    keep.mkdir(parents=True, exist_ok=True)
    videos = [Path(v) for v in args.videos] or [SHARED / "sintel_trailer_30s.mp4", sintel_1080p(keep)]
    cfg = _load_build_config(args.config, ["ray.dashboard=false", "ray.progress_bars=false", *args.set])
    tc = cfg.curate.transcode
    init_ray(cfg.ray)  # start Ray before timing: a cluster is already up in production
    for video in videos:
        work = Path(tempfile.mkdtemp(prefix="bench-build-"))
        try:
            (work / "in").mkdir()
            (work / "in" / video.name).symlink_to(video.resolve())
            sampler = CpuSampler(os.getpid())
            sampler.start()
            w0 = time.perf_counter()
            summary = run_build([str(work / "in")], work / "out", cfg)
            wall, cpu = time.perf_counter() - w0, sampler.stop()
            clips = pq.read_table(work / "out" / "clips.parquet",
                                  columns=["status", "reason", "start_s", "end_s", CPU_PREFIX + "transcode"]).to_pylist()
            stage_cpu = {"videos": stage_cpu_seconds(work / "out" / "videos.parquet"),
                         "clips": stage_cpu_seconds(work / "out" / "clips.parquet")}
            wasted = scored_after_cheap_drop(work / "out" / "clips.parquet")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"\n== {video.name}: {len(clips)} clips planned, "
              f"{sum(r['status'] == 'ok' for r in clips)} ok ==")
        print(f"reelforge build            wall {wall:7.1f} s   CPU {cpu:7.1f} s (driver + every Ray process, "
              f"sampled every 0.2 s)")
        print("  CPU by process: " + ", ".join(f"{k} {v:.1f}" for k, v in sampler.by_name().items() if v >= 0.05))
        # the build transcodes every clip the clip policy keeps (scores are taken on the transcoded
        # clip: the rows its transcode stage ran on), and publishes the ok ones: both are baselines
        transcoded = CPU_PREFIX + "transcode"
        for label, keep in (("transcoded", lambda r: r[transcoded] is not None),
                            ("ok", lambda r: r["status"] == "ok")):
            spans = sorted((r["start_s"], r["end_s"]) for r in clips if keep(r))
            base = bare_transcode(video, spans, tc.max_side, tc.preset, tc.crf)
            print(f"bare transcode, {label:10s} wall {base['wall']:7.1f} s   CPU {base['cpu']:7.1f} s   "
                  f"({len(spans)} spans, {sum(b - a for a, b in spans):.1f} s, {base['frames']} frames, {tc.max_side} px, "
                  f"{tc.preset}, crf {tc.crf}, 2 threads, one process)   build / this: wall "
                  f"{wall / base['wall']:.2f}x, CPU {cpu / max(base['cpu'], 1e-9):.2f}x")
        failed = [r["reason"] for r in clips if r["status"] == "failed"]
        if failed:
            print(f"failed clips: {len(failed)}: {sorted(set(failed))[:3]}")
        print("phases: " + json.dumps(summary.get("phase_s", {})))
        print(f"model stages' CPU on clips a cheaper filter (before them in the stage list) removed: "
              f"{wasted[0]:.2f} s over {wasted[1]} clips")
        for phase, per_stage in stage_cpu.items():
            print(f"stage CPU, {phase} phase (total s / rows that ran it / s per row): " + ", ".join(
                f"{k} {t:.2f}/{n}/{t / max(n, 1):.3f}" for k, (t, n) in per_stage.items()))
        for key in ("stage_cpu_s", "stage_s", "stages"):
            if key in summary:
                print(f"{key}: {json.dumps(summary[key])}")


if __name__ == "__main__":
    main()
