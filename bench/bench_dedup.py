"""Near-duplicate search without weights: the signature stage's cost next to decoding the same clips, and
the dataset-wide search at scale.

1. Signature stage (``curate/stages/signature.py``): clips cut from ``../shared/media/sintel_trailer_30s.mp4``
   (854x480, 24 fps; generated 640x360 clips when the shared folder is absent), encoded as the transcoder
   does (H.264 crf 20 veryfast), signed from their mp4 bytes. Baselines in the same run: decoding every
   frame of the same mp4s with PyAV (what the stage must do at least) and with decord.
2. Search (``curate/near_dup.py``): N synthetic clips of 4-36 random ticks (~20 on average: a 5-s clip at
   4 ticks per second) plus 1 % planted copies (16 of 256 bits flipped per tick, the first two ticks
   trimmed off). Random hashes are the easy case for LSH buckets (real footage has correlated bits and
   more chance candidates); the planted copies give the recall.

    .venv/bin/python bench/bench_dedup.py [--clips 10] [--search 10000,100000] [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import av
import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def encode_clips(n: int, seconds: float = 3.0) -> tuple[list[bytes], str]:
    """n mp4 clips (bytes) encoded like the transcoder's output."""
    src = SHARED / "media" / "sintel_trailer_30s.mp4"
    if src.is_file():
        with av.open(str(src)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        fps, label = 24, "sintel_trailer_30s 854x480"
    else:
        from reelforge.samples import ShotSpec, VideoSpec, render_frames
        spec = VideoSpec("bench", [ShotSpec(int(25 * seconds * n), "blobs", (40, 120, 220), "circle")],
                         width=640, height=360, fps=25)
        frames, fps, label = list(render_frames(spec)), 25, "generated 640x360"
    per = int(fps * seconds)
    clips = []
    for i in range(n):
        start = (i * per) % max(1, len(frames) - per)
        buf = io.BytesIO()
        with av.open(buf, "w", format="mp4") as out:
            vs = out.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            vs.options = {"crf": "20", "preset": "veryfast"}
            for img in frames[start:start + per]:
                for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    out.mux(p)
            for p in vs.encode():
                out.mux(p)
        clips.append(buf.getvalue())
    return clips, f"{label}, {per} frames ({seconds:g} s) per clip"


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench_stage(n: int) -> dict:
    import decord

    from reelforge.curate.stages.signature import SignatureStage, decoded_frames

    clips, label = encode_clips(n)
    stage = SignatureStage()
    batch = {"clip_id": [str(i) for i in range(n)], "status": ["ok"] * n, "reason": [None] * n, "mp4": clips}

    def pyav_decode():
        for c in clips:
            for _ in decoded_frames(c, threads=1):
                pass

    def decord_decode():
        for c in clips:
            vr = decord.VideoReader(io.BytesIO(c), num_threads=1)
            vr.get_batch(list(range(len(vr)))).asnumpy()

    out = {"clips": n, "what": label}
    for name, fn in (("decode, PyAV 1 thread (baseline)", pyav_decode),
                     ("decode, decord 1 thread (baseline)", decord_decode),
                     ("signature stage (decode + sign)", lambda: stage(dict(batch)))):
        out[name] = n / best_of(fn)
    return out


def synthetic(n: int, seed: int = 0):
    """Signatures of n random clips + n/100 planted copies of the first n/100; returns (sigs, planted)."""
    from reelforge.curate.near_dup import Signatures
    from reelforge.curate.stages.signature import TICK_DTYPE

    rng = np.random.default_rng(seed)
    lengths = rng.integers(4, 37, n)
    planted = max(1, n // 100)
    copy_len = np.maximum(lengths[:planted] - 2, 1)
    total = int(lengths.sum() + copy_len.sum())
    ticks = np.zeros(total, TICK_DTYPE)
    start = np.r_[0, np.cumsum(np.r_[lengths, copy_len])].astype(np.int64)
    t = n_ticks = int(lengths.sum())
    ticks["hash"][:n_ticks] = rng.integers(0, 2**64, (n_ticks, 4), dtype=np.uint64)
    ticks["color"][:n_ticks] = rng.integers(90, 166, (n_ticks, 32))
    ticks["tick"][:n_ticks] = np.arange(n_ticks) - np.repeat(start[:n], lengths)
    for k in range(planted):  # copy of clip k without its first two ticks, 16 bits flipped per tick
        src = ticks[start[k] + 2:start[k + 1]] if lengths[k] > 2 else ticks[start[k]:start[k + 1]]
        m = len(src)
        flips = np.packbits(np.argsort(rng.random((m, 256)), axis=1)[:, :16, None] == np.arange(256), axis=2)
        mask = np.bitwise_or.reduce(flips, axis=1).view(">u8").astype("<u8")  # (m, 4)
        ticks[t:t + m] = src
        ticks["hash"][t:t + m] ^= mask
        t += m
    ids = [f"c{i:08d}" for i in range(n + planted)]
    return Signatures(ids, start, ticks), {ids[n + k]: ids[k] for k in range(planted)}


def bench_search(n: int) -> dict:
    from reelforge.curate.near_dup import NearDupConfig, find_near_duplicates

    sigs, planted = synthetic(n)
    t0, c0 = time.perf_counter(), time.process_time()
    dups, stats = find_near_duplicates(sigs, None, NearDupConfig())
    sec, cpu = time.perf_counter() - t0, time.process_time() - c0
    found = {d: k for d, (k, _) in dups.items()}
    import resource

    return {"clips": len(sigs), "ticks": stats["ticks"], "seconds": sec, "cpu_seconds": cpu,
            "clips_per_cpu_s": len(sigs) / cpu, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
            "candidates": stats["candidates"], "planted": len(planted),
            "recall": sum(found.get(d) == k for d, k in planted.items()) / len(planted),
            "false": sum(d not in planted for d in found)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=10, help="clips for the stage benchmark")
    ap.add_argument("--search", default="10000,100000", help="dataset sizes for the search benchmark")
    ap.add_argument("--no-stage", action="store_true", help="search only")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    results = {"stage": None if args.no_stage else bench_stage(args.clips), "search": []}
    s = results["stage"] or {}
    if s:
        base = s["decode, PyAV 1 thread (baseline)"]
        print(f"signature stage: {s['what']}, {s['clips']} clips")
    for name, v in s.items():
        if isinstance(v, float):
            print(f"  {name:<40s} {v:8.2f} clips/s   {v / base:5.2f}x PyAV decode")
    for n in (int(x) for x in args.search.split(",") if x):
        r = bench_search(n)
        results["search"].append(r)
        print(f"search: {r['clips']:>9,d} clips {r['ticks']:>11,d} ticks  {r['seconds']:7.1f} s wall  "
              f"{r['cpu_seconds']:7.1f} s CPU ({r['clips_per_cpu_s']:,.0f} clips per CPU-s)  peak RSS "
              f"{r['peak_rss_gb']:.1f} GB  candidates {r['candidates']:,d}  "
              f"recall {r['recall']:.3f} on {r['planted']:,d} planted  false {r['false']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
