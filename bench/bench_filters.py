"""Filter stage throughput on CPU: clips/s of every scoring stage, next to the cost of decoding the
frames it reads (decode each clip once and keep K frames at a 256-px short side, as the transcoder does);
then precision and recall of the text_overlay and nsfw filters on the labelled set
(``bench/data/filter_labels.yaml``: real clips from ../shared/media plus generated overlays), the old
detector beside the new one, each with its clips/s on that set.

Clips are generated (reelforge.samples demo shots, H.264 mp4 at 640x360, 3 s) so the numbers need no
media. The aesthetic and caption-match stages run the tiny random CLIP unless --model/--pretrained
point at real weights (ViT-L-14 is far heavier: read those rows as a lower bound on cost). Dedup is
timed separately on random embeddings, per clip of a dataset-wide search.

    .venv/bin/python bench/bench_filters.py [--clips 24] [--frames 8] [--model ViT-L-14 --pretrained PATH]
    .venv/bin/python bench/bench_filters.py --only labelled      # just the precision/recall table
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np


def render_clips(out: Path, n: int) -> list[Path]:
    from reelforge.samples import VideoSpec, demo_specs, render_video

    shots = [s for v in demo_specs() for s in v.shots]
    paths = []
    for i in range(n):
        shot = shots[i % len(shots)]
        shot.frames = 75  # 3 s at 25 fps
        spec = VideoSpec(f"bench{i:03d}", [shot], width=640, height=360, fps=25.0, seed=i)
        paths.append(render_video(spec, out))
    return paths


def decode_rows(paths: list[Path], k: int) -> tuple[list[dict], float]:
    """Decode every frame of each clip, keep k evenly spaced at a 256-px short side; returns rows, seconds."""
    rows, t0 = [], time.perf_counter()
    for i, p in enumerate(paths):
        with av.open(str(p)) as c:
            stream = c.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(stream)]
        idx = np.linspace(0, len(frames) - 1, k).round().astype(int)
        h, w = frames[0].shape[:2]
        s = min(1.0, 256 / min(h, w))
        picked = np.stack([cv2.resize(frames[j], (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
                           for j in idx])
        rows.append({"clip_id": f"c{i}", "status": "ok", "reason": None, "width": w, "height": h,
                     "src_width": w, "src_height": h, "fps": 25.0, "duration_s": len(frames) / 25.0,
                     "frames": picked, "frame_times": [float(j / 25.0) for j in idx],
                     "caption": "a shape moves over a patterned background"})
    return rows, time.perf_counter() - t0


def time_stage(stage, rows: list[dict], batch_size: int) -> float:
    """Seconds to run ``stage`` over ``rows`` in batches (after one warm-up batch)."""
    from reelforge.curate.stage import rows_to_batch

    stage(rows_to_batch([dict(r) for r in rows[:batch_size]]))
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        stage(rows_to_batch([dict(r) for r in rows[i:i + batch_size]]))
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=8, help="K sampled frames per clip")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--model", default="", help="open_clip model name (default: tiny random CLIP)")
    ap.add_argument("--pretrained", default="")
    ap.add_argument("--dedup-n", type=int, default=100_000)
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--only", choices=("all", "throughput", "labelled"), default="all")
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"),
                    help="the shared folder holding media/ (real clips of the labelled set)")
    args = ap.parse_args()
    results = {}
    if args.only in ("all", "throughput"):
        results["throughput"] = throughput(args)
    if args.only in ("all", "labelled"):
        from labelled import evaluate

        results["labelled"] = evaluate(Path(args.shared), args.frames, args.batch)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))


def throughput(args) -> dict:
    import torch

    from reelforge.curate.clip_models import save_random_clip
    from reelforge.curate.dedup import find_duplicates
    from reelforge.curate.aesthetic_head import LinearAestheticHead
    from reelforge.curate.stages.aesthetic import AestheticConfig, AestheticStage
    from reelforge.curate.stages.basic import BasicStage
    from reelforge.curate.stages.borders import BordersStage
    from reelforge.curate.stages.caption_match import CaptionMatchConfig, CaptionMatchStage
    from reelforge.curate.stages.exposure import ExposureStage
    from reelforge.curate.stages.motion import MotionStage
    from reelforge.curate.stages.nsfw import NsfwStage
    from reelforge.curate.stages.text_overlay import TextOverlayStage

    from labelled import ClassicTextStage

    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="reelforge-bench-filters-") as tmp:
        tmp = Path(tmp)
        paths = render_clips(tmp / "clips", args.clips)
        rows, decode_s = decode_rows(paths, args.frames)
        if args.model and args.pretrained:
            clip = dict(model=args.model, pretrained=args.pretrained)
            model_label = args.model
        else:
            cfg_path, ckpt = save_random_clip(tmp / "clip", name="bench-tiny-clip")
            clip = dict(model="bench-tiny-clip", pretrained=str(ckpt), model_config=str(cfg_path))
            model_label = "tiny random CLIP"
        dim = 64 if not args.model else None
        head_path = ""
        if dim:
            torch.save(LinearAestheticHead(dim).linear.state_dict(), tmp / "head.pth")
            head_path = str(tmp / "head.pth")
        stages = [("basic", BasicStage()), ("borders", BordersStage()), ("exposure", ExposureStage()),
                  ("motion", MotionStage()), ("text_overlay (classic, old)", ClassicTextStage()),
                  ("text_overlay (PP-OCRv4)", TextOverlayStage()), ("nsfw (open_nsfw + NudeNet)", NsfwStage()),
                  (f"aesthetic ({model_label})", AestheticStage(AestheticConfig(**clip, head=head_path, device="cpu"))),
                  (f"caption_match ({model_label})", CaptionMatchStage(CaptionMatchConfig(**clip, device="cpu")))]
        results = {"clips": args.clips, "frames_per_clip": args.frames, "clip_size": "640x360, 75 frames",
                   "decode_clips_per_s": args.clips / decode_s, "stages": {}}
        for name, stage in stages:
            sec = time_stage(stage, rows, args.batch)
            results["stages"][name] = args.clips / sec

    rng = np.random.default_rng(0)
    emb = rng.standard_normal((args.dedup_n, 768)).astype(np.float32)
    t0 = time.perf_counter()
    find_duplicates([f"c{i}" for i in range(args.dedup_n)], emb)
    results["dedup_clips_per_s"] = args.dedup_n / (time.perf_counter() - t0)

    dec = results["decode_clips_per_s"]
    print(f"\n== bench_filters (CPU, {args.clips} clips of {results['clip_size']}, K={args.frames}) ==")
    print(f"{'stage':<34s} {'clips/s':>9s} {'x decode':>9s}")
    print(f"{'decode + sample K frames':<34s} {dec:9.1f} {1.0:9.2f}")
    for name, cps in results["stages"].items():
        print(f"{name:<34s} {cps:9.1f} {dec / cps:9.2f}")
    print(f"{'dedup (768-d, N=%d)' % args.dedup_n:<34s} {results['dedup_clips_per_s']:9.0f}")
    print("(x decode = stage time per clip / decode time per clip)")
    return results


if __name__ == "__main__":
    main()
