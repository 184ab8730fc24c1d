"""Captioning throughput: the batched Ray captioner against a one-clip-at-a-time ``generate`` loop.

    python bench/bench_caption.py                         # CPU: tiny random Qwen2.5-VL, 12 clips
    python bench/bench_caption.py --preset 7b --clips 64  # GPU: Qwen2.5-VL-7B shapes, random weights

Builds a dataset of ``--clips`` H.264 clips (cut from ../shared/media/sintel_trailer_30s.mp4 when present,
else synthetic 854x480), then, in the same run and on the same clips:
  loop   one process: for each clip, read it from the shard, sample its frames, ``generate`` alone
         (what a naive captioning script does; the model is loaded before the clock starts)
  ray    ``caption_dataset``: frames decoded by CPU tasks ahead of the model actor pool (one actor per
         GPU, or --actors on CPU), ``--batch`` clips per generate call; timed from the moment every actor
         has loaded its model (process start + imports + weights, reported apart) to the last result
With few clips the decode tasks finish while the actors start, so the steady-state figure flatters the
pool: use enough clips that decoding outlasts the start-up (the end-to-end figure is printed too).
Every caption is forced to exactly ``--tokens`` new tokens (min = max), so both sides generate the same
amount of text and random weights give real throughput. Prints clips/s and generated tokens/s of each,
and their ratio; on a GPU also the GPU utilisation sampled during each phase (torch.cuda.utilization,
else nvidia-smi). ``--json`` writes the figures.

``--no-ray`` measures the model alone, where Ray or a video decoder is missing (the GPU machine this was
measured on has neither): one process, one ``Captioner``, the same frames for every side, prepared before
the clock starts (decoded from the clips when PyAV is there, else synthetic 854x480 frames of moving
noise, downscaled exactly as ``recaption.frames.sample_frames`` does). Then, in one run:
  loop     ``--loop-clips`` clips, one per ``generate`` call
  batched  all ``--clips`` clips, ``--batch`` per ``generate`` call (what each Ray actor runs), for each
           batch size of a comma list (``--batch 16,32,64``)
Decoding is not in either figure: the Ray job decodes on CPU tasks ahead of the model.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# same clip source as the loader bench (its module imports PyAV: loaded only by the paths that cut clips)
DEFAULT_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media" / "sintel_trailer_30s.mp4"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class GpuSampler:
    """Samples GPU utilisation (%) every ``period`` s in a thread; no-op without a GPU."""

    def __init__(self, period: float = 0.2):
        self.period, self.samples, self._stop = period, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> float | None:
        try:
            import torch
            if torch.cuda.is_available():
                return float(torch.cuda.utilization())
        except Exception:
            pass
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=5)
            vals = [float(v) for v in out.stdout.split()]
            return sum(vals) / len(vals) if vals else None
        except (OSError, ValueError, subprocess.SubprocessError):
            return None

    def _run(self):
        while not self._stop.is_set():
            v = self.read()
            if v is not None:
                self.samples.append(v)
            time.sleep(self.period)

    def __enter__(self):
        if self.read() is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()

    def summary(self) -> dict | None:
        if not self.samples:
            return None
        s = sorted(self.samples)
        return {"mean": round(sum(s) / len(s), 1), "median": s[len(s) // 2], "samples": len(s)}


def run_loop(dataset: Path, model: str, frames, settings, template) -> dict:
    """One clip at a time in this process: read, sample frames, generate alone."""
    from reelforge.recaption.captioner import Captioner, CaptionerConfig, Clip
    from reelforge.recaption.frames import sample_frames
    from reelforge.shards.access import open_member
    from reelforge.shards.index import select
    import torch
    if not torch.cuda.is_available():
        # Ray runs a CPU actor with OMP_NUM_THREADS=1: the loop gets the same, so the comparison is batching
        # and decode-ahead, not thread counts (multi-threaded torch also collapses on an oversubscribed host)
        torch.set_num_threads(1)
    cap = Captioner(CaptionerConfig(model=model, generation=settings), template)
    rows = select(dataset).to_pylist()
    cap.generate([Clip("warm-up", *sample_frames(open_member(dataset, rows[0], "mp4"), frames))], settings)
    tokens, decode_s, t0 = 0, 0.0, time.perf_counter()
    with GpuSampler() as gpu:
        for r in rows:
            t = time.perf_counter()
            f, fps = sample_frames(open_member(dataset, r, "mp4"), frames)
            decode_s += time.perf_counter() - t
            tokens += cap.generate([Clip(r["clip_id"], f, fps)], settings)[0].tokens
        wall = time.perf_counter() - t0
    out = {"clips": len(rows), "tokens": tokens, "wall_s": round(wall, 2), "load_s": round(cap.load_s, 1),
           "decode_s": round(decode_s, 2), "generate_s": round(wall - decode_s, 2),
           "clips_per_s": round(len(rows) / wall, 3), "tokens_per_s": round(tokens / wall, 1), "gpu_util": gpu.summary()}
    del cap
    _free_gpu()
    return out


def run_ray(dataset: Path, model: str, frames, settings, template_id: str, batch: int, actors: int,
            num_cpus: int) -> dict:
    from reelforge.cluster import RayConfig
    from reelforge.recaption.captioner import CaptionerConfig
    from reelforge.recaption.job import RecaptionConfig, caption_dataset
    cfg = RecaptionConfig(template=template_id, version=f"bench-{int(time.time())}", min_words=1, actors=actors,
                          # random weights write noise the judge would fail: no retries, both sides do equal work
                          captioner=CaptionerConfig(model=model, batch_size=batch, generation=settings,
                                                    retry_failed=False),
                          frames=frames, part_clips=10 ** 6)
    with GpuSampler() as gpu:
        s = caption_dataset(dataset, cfg, RayConfig(num_cpus=num_cpus, dashboard=False, progress_bars=False),
                            log=lambda *_: None)
    # steady state: from the moment every actor had its model (decoding already ran ahead meanwhile)
    load = float(s["pool"].get("ready_s") or 0.0)
    wall = max(s["caption_s"] - load, 1e-9)
    n = s["ok"] + s["failed"]
    return {"clips": n, "failed": s["failed"], "tokens": s["tokens"], "wall_s": round(wall, 2), "load_s": round(load, 1),
            "total_s": round(s["caption_s"], 2), "clips_per_s_total": round(n / max(s["caption_s"], 1e-9), 3),
            "actors": s["pool"]["actors"], "clips_per_s": round(n / wall, 3), "tokens_per_s": round(s["tokens"] / wall, 1),
            "clips_per_s_per_actor": round(n / wall / max(1, s["pool"]["actors"]), 3), "gpu_util": gpu.summary()}


def prepared_frames(n: int, cfg, media: Path, seconds: float) -> tuple[list, str]:
    """``n`` clips' frames (T, H, W, 3) uint8 and sampled fps, as ``sample_frames`` hands them to the model:
    decoded from cut clips when PyAV is importable, else synthetic. Returns (clips, source)."""
    from reelforge.recaption.captioner import Clip
    try:
        import av  # noqa: F401
    except ImportError:
        import cv2
        import numpy as np
        from reelforge.recaption.frames import fit_pixels
        rng = np.random.default_rng(0)
        h, w = fit_pixels(480, 854, cfg.max_pixels)
        clips = []
        for i in range(n):
            # coarse noise that moves frame to frame (flat frames would be an easy case for nobody: the
            # model's cost depends only on the frame size, but the processor's resize sees real pixels)
            base = rng.integers(0, 256, (60, 107, 3), dtype=np.uint8)
            frames = np.stack([cv2.resize(np.roll(base, 3 * t, axis=1), (w, h), interpolation=cv2.INTER_LINEAR)
                               for t in range(cfg.num_frames)])
            clips.append(Clip(f"clip{i:04d}", frames, cfg.num_frames / seconds))
        return clips, f"synthetic 854x480 -> {w}x{h} (no PyAV here)"
    from bench_loader import cut_clips
    from reelforge.recaption.frames import sample_frames
    cut = cut_clips(media, n, seconds)
    clips = [Clip(f"clip{i:04d}", *sample_frames(cut[i % len(cut)][0], cfg)) for i in range(n)]
    return clips, "sintel" if media.exists() else "synthetic H.264"


def run_inprocess(clips: list, model: str, settings, template, batches: list[int], loop_clips: int) -> dict:
    """The model alone on prepared frames: a one-clip loop over ``loop_clips`` clips, then every clip
    batched at each size in ``batches``. Model load and a warm-up call are outside every figure."""
    import torch
    from reelforge.recaption.captioner import Captioner, CaptionerConfig, GenerationSettings
    cuda = torch.cuda.is_available()
    if not cuda:
        torch.set_num_threads(1)  # as in run_loop: the comparison is batching, not thread counts
    cap = Captioner(CaptionerConfig(model=model, generation=settings), template)
    warm = GenerationSettings(max_new_tokens=4, min_new_tokens=4)
    cap.generate(clips[:1], warm)
    cap.generate(clips[:max(batches)], warm)   # the largest batch's buffers, before any clock

    def timed(groups: list[list]) -> dict:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        tokens, n, t0 = 0, 0, time.perf_counter()
        with GpuSampler() as gpu:
            for g in groups:
                tokens += sum(r.tokens for r in cap.generate(g, settings))
                n += len(g)
        wall = time.perf_counter() - t0
        out = {"clips": n, "tokens": tokens, "wall_s": round(wall, 2), "clips_per_s": round(n / wall, 3),
               "tokens_per_s": round(tokens / wall, 1), "gpu_util": gpu.summary()}
        if cuda:
            out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 1)
        return out
    c = clips[0]
    kw = ({"videos": [c.frames], "video_metadata": [{"fps": c.fps, "total_num_frames": len(c.frames)}]}
          if cap.use_video else {"images": [list(c.frames)]})
    prompt_tokens = int(cap.processor(text=[cap.prompt(len(c.frames))], return_tensors="pt", **kw)["input_ids"].shape[1])
    res = {"load_s": round(cap.load_s, 1), "device": torch.cuda.get_device_name() if cuda else "cpu",
           "prompt_tokens_per_clip": prompt_tokens,
           "loop": timed([[c] for c in clips[:loop_clips]]), "batched": {}}
    for b in batches:
        res["batched"][b] = timed([clips[i:i + b] for i in range(0, len(clips), b)])
    del cap
    _free_gpu()
    return res


def _free_gpu() -> None:
    import gc
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=["tiny", "7b"], help="random-weight Qwen2.5-VL size")
    ap.add_argument("--model", help="a real checkpoint (hub id or path) instead of random weights")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--media", type=Path, default=DEFAULT_MEDIA)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--max-pixels", type=int, default=0, help="per decoded frame (default: 64x48 tiny, 360x420 7b)")
    ap.add_argument("--tokens", type=int, default=0, help="tokens per caption (default: 16 tiny, 150 7b)")
    ap.add_argument("--batch", default="0", help="clips per generate call (default: 4 tiny, 16 7b); "
                                                 "--no-ray takes a comma list")
    ap.add_argument("--actors", type=int, default=0, help="0: one per GPU (1 on CPU)")
    ap.add_argument("--num-cpus", type=int, default=0, help="local Ray CPUs (0: all)")
    ap.add_argument("--template", default="dense-v1")
    ap.add_argument("--no-ray", action="store_true", help="the model alone in this process (see above)")
    ap.add_argument("--loop-clips", type=int, default=0, help="--no-ray: clips in the one-clip loop (0: all)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from reelforge.recaption.captioner import GenerationSettings
    from reelforge.recaption.frames import FrameConfig
    from reelforge.recaption.templates import load_template

    big = args.preset == "7b"
    tokens = args.tokens or (150 if big else 16)
    batches = [int(b) for b in str(args.batch).split(",")]
    if any(b < 0 for b in batches) or (len(batches) > 1 and not args.no_ray):
        ap.error("--batch: one size >= 1 (a comma list only with --no-ray)")
    batches = [b or (16 if big else 4) for b in batches]
    batch = batches[0]
    frames = FrameConfig(num_frames=args.frames, max_pixels=args.max_pixels or (360 * 420 if big else 64 * 48))
    settings = GenerationSettings(max_new_tokens=tokens, min_new_tokens=tokens)
    model = args.model or f"random:{args.preset}"
    if args.no_ray:
        return main_inprocess(args, model, frames, settings, tokens, batches)
    from bench_loader import build, cut_clips
    tmp = Path(tempfile.mkdtemp(prefix="bench-caption-"))
    try:
        t0 = time.perf_counter()
        clips = cut_clips(args.media, args.clips, args.seconds)
        # a short media file gives fewer clips than asked: repeat them under new ids (same work per clip)
        clips = [(data, {**meta, "clip_id": f"clip{i:04d}"}) for i, (data, meta) in
                 zip(range(args.clips), (clips[i % len(clips)] for i in range(args.clips)))]
        build(tmp, clips)
        print(f"dataset: {args.clips} clips of {args.seconds} s ({'sintel' if args.media.exists() else 'synthetic'}) "
              f"in {time.perf_counter() - t0:.1f} s; model {model}; {args.frames} frames/clip; {tokens} tokens/caption",
              flush=True)
        loop = run_loop(tmp, model, frames, settings, load_template(args.template))
        print(f"loop  (1 clip per generate)      {loop['clips_per_s']:8.3f} clips/s  {loop['tokens_per_s']:9.1f} tokens/s"
              f"  ({loop['clips']} clips in {loop['wall_s']} s: decode {loop['decode_s']} s, generate {loop['generate_s']} s;"
              f" gpu {loop['gpu_util']})", flush=True)
        ray_res = run_ray(tmp, model, frames, settings, args.template, batch, args.actors, args.num_cpus)
        print(f"ray   ({ray_res['actors']} actor(s), batch {batch:3d})      {ray_res['clips_per_s']:8.3f} clips/s"
              f"  {ray_res['tokens_per_s']:9.1f} tokens/s  ({ray_res['clips']} clips in {ray_res['wall_s']} s after a "
              f"{ray_res['load_s']} s actor start-up and model load; {ray_res['clips_per_s_per_actor']} clips/s per actor; "
              f"gpu {ray_res['gpu_util']})")
        print(f"ray   end to end, start-up included  {ray_res['clips_per_s_total']:8.3f} clips/s  "
              f"({ray_res['total_s']} s)")
        print(f"speed-up ray/loop: {ray_res['clips_per_s'] / max(loop['clips_per_s'], 1e-9):.2f}x clips/s steady, "
              f"{ray_res['clips_per_s_total'] / max(loop['clips_per_s'], 1e-9):.2f}x end to end "
              f"(the loop's model load excluded)")
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "loop": loop,
                                             "ray": ray_res}, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def main_inprocess(args, model, frames, settings, tokens, batches) -> int:
    from reelforge.recaption.templates import load_template
    t0 = time.perf_counter()
    clips, source = prepared_frames(args.clips, frames, args.media, args.seconds)
    shape = "x".join(str(v) for v in clips[0].frames.shape)
    print(f"frames: {args.clips} clips ({source}), {shape} per clip, in {time.perf_counter() - t0:.1f} s; "
          f"model {model}; {tokens} tokens/caption", flush=True)
    loop_clips = min(args.loop_clips or args.clips, args.clips)
    res = run_inprocess(clips, model, settings, load_template(args.template), batches, loop_clips)
    print(f"model built/loaded in {res['load_s']} s on {res['device']}; {res['prompt_tokens_per_clip']} prompt "
          f"tokens per clip (video + template)")
    rows = [("loop  (1 clip per generate)", res["loop"])] + \
        [(f"batched ({b} clips per generate)", r) for b, r in res["batched"].items()]
    for label, r in rows:
        mem = f", peak {r['peak_mem_gb']} GiB" if "peak_mem_gb" in r else ""
        print(f"{label:34s} {r['clips_per_s']:8.3f} clips/s  {r['tokens_per_s']:9.1f} tokens/s  "
              f"({r['clips']} clips in {r['wall_s']} s; gpu {r['gpu_util']}{mem})")
    best = max(res["batched"].items(), key=lambda kv: kv[1]["clips_per_s"])
    print(f"speed-up batched/loop: {best[1]['clips_per_s'] / max(res['loop']['clips_per_s'], 1e-9):.2f}x clips/s "
          f"(batch {best[0]}; decoding excluded on both sides)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "source": source,
                                         "frames_shape": shape, **res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
