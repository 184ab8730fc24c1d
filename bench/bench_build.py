"""Build throughput on ../shared/media: wall time and source-seconds per second of `reelforge build`,
next to the cost of simply decoding the same files once with decord (the floor any build pays).

    .venv/bin/python bench/bench_build.py [--media ../shared/media] [--set key=value …]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def decord_decode_seconds(paths: list[Path]) -> tuple[float, int]:
    import decord

    t0, frames = time.perf_counter(), 0
    for p in paths:
        try:
            vr = decord.VideoReader(str(p), num_threads=2)
            for i in range(len(vr)):
                vr[i]
                frames += 1
        except Exception:  # undecodable inputs cost the build a failed row, not a decode
            continue
    return time.perf_counter() - t0, frames


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--media", default=str(ROOT.parent / "shared" / "media"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "build" / "default.yaml"))
    ap.add_argument("--set", action="append", default=[])
    args = ap.parse_args()
    from reelforge.cli import _load_build_config
    from reelforge.cluster import init_ray
    from reelforge.curate.pipeline import run_build

    media = Path(args.media)
    if not media.is_dir():
        raise SystemExit(f"{media} not found: this benchmark needs ../shared/media")
    cfg = _load_build_config(args.config, ["ray.dashboard=false", "ray.progress_bars=false", *args.set])
    init_ray(cfg.ray)  # start Ray before timing: a cluster is already up in production
    out = Path(tempfile.mkdtemp(prefix="reelforge-bench-"))
    try:
        t0 = time.perf_counter()
        summary = run_build([str(media)], out, cfg)
        wall = time.perf_counter() - t0
        videos = sorted(p for p in media.iterdir() if p.suffix.lower() in (".mp4", ".mov", ".mkv"))
        dec_s, dec_frames = decord_decode_seconds(videos)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    src = summary["source_seconds"]
    print("\n== bench_build ==")
    print(f"inputs {summary['inputs']}  ok {summary['videos_ok']}  clips {summary['clips']}  source {src:.1f} s")
    print(f"reelforge build      wall {wall:7.2f} s   {src / wall:6.2f} source-s/s   "
          f"(videos {summary['phase_s']['videos']:.1f} s, clips {summary['phase_s']['clips']:.1f} s, "
          f"finish {summary['phase_s']['finish']:.1f} s)")
    print(f"decord decode only   wall {dec_s:7.2f} s   {src / dec_s:6.2f} source-s/s   ({dec_frames} frames, baseline)")
    print(f"build / decode-only  {wall / dec_s:.2f}x the time of one plain decode")


if __name__ == "__main__":
    main()
