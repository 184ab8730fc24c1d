"""The text-to-video quality number: attribute accuracy on held-out (colour, direction) compositions.

For each training seed: render the attribute clips (the held-out pairs left out), train DiT-T for a fixed
number of steps on CPU (the demo's config), generate every held-out prompt (4 pairs × 2 shapes × 2
backgrounds = 16) with ``--sample-seeds`` noise seeds each, and score the videos with the pixel oracle
(dominant saturated colour; centroid motion direction). Prints accuracy against chance (25 % colour,
25 % direction, 6.25 % both) per run and its mean ± std over training seeds, plus the same model's
accuracy on seen pairs (the in-distribution reference). The same step count gives the same number on
any machine; only the wall time differs.

    .venv/bin/python bench/bench_t2v_quality.py --steps 300 --train-seeds 0 1 2 --sample-seeds 2
    .venv/bin/python bench/bench_t2v_quality.py --vae-steps 300 --steps 300      # on the tiny VAE's latents
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--sample-seeds", type=int, default=2)
    ap.add_argument("--out", default="", help="keep runs here (default: a temporary folder)")
    ap.add_argument("--codec", default="pixel:4", help="pixel:N, or a VAE export folder (or train one: --vae-steps)")
    ap.add_argument("--patch", type=int, nargs=3, default=None, metavar=("PT", "PH", "PW"),
                    help="DiT patch (default: 2 4 4 on pixels, 1 2 2 on VAE latents)")
    ap.add_argument("--vae-steps", type=int, default=0, help="> 0: train the demo's tiny VAE this many steps on "
                    "the attribute training clips first and use it as the codec")
    ap.add_argument("--vae-dataset", default="", help="with --vae-steps: train the VAE on this built dataset "
                    "(reelforge demo's out/demo/dataset) instead")
    args = ap.parse_args()
    from reelforge.train.dit.demo import run_t2v

    root = Path(args.out or tempfile.mkdtemp(prefix="t2v-bench-"))
    codec = args.codec
    vae = None
    if args.vae_steps:
        from reelforge.train.dit.demo import train_demo_vae

        vae = train_demo_vae(root / "vae", steps=args.vae_steps, dataset=Path(args.vae_dataset) if args.vae_dataset else None)
        print(f"VAE: {vae}", flush=True)
        codec = vae["export"]
    runs = []
    for seed in args.train_seeds:
        t0 = time.perf_counter()
        r = run_t2v(root / f"seed{seed}", steps=args.steps, seed=seed, sample_seeds=args.sample_seeds,
                    write_videos=seed == args.train_seeds[0], codec=codec, patch=args.patch)
        runs.append(r)
        print(f"train seed {seed}: held-out colour {r['color_acc']:.3f} direction {r['direction_acc']:.3f} "
              f"both {r['both_acc']:.3f} | seen colour {r['seen_color_acc']:.3f} direction "
              f"{r['seen_direction_acc']:.3f} both {r['seen_both_acc']:.3f} | {args.steps} steps, "
              f"train {r['train_seconds']:.0f}s, total {time.perf_counter() - t0:.0f}s", flush=True)
    summary = {"steps": args.steps, "codec": codec, "patch": runs[0]["patch"], "vae": vae,
               "train_seeds": args.train_seeds, "sample_seeds": args.sample_seeds,
               "prompts_per_run": runs[0]["prompts"] * args.sample_seeds,
               "chance": runs[0]["chance"]}
    for key in ("color_acc", "direction_acc", "both_acc", "seen_color_acc", "seen_direction_acc", "seen_both_acc"):
        vals = [r[key] for r in runs]
        summary[key] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "min": min(vals), "max": max(vals)}
    print(json.dumps(summary, indent=1))
    (root / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(f"runs in {root}")


if __name__ == "__main__":
    main()
