"""DiT training throughput: step time, tokens/s and samples/s of the shared trainer next to the same
model's plain eager forward + backward + AdamW step (the floor the trainer adds its loop to), in one run.
On a GPU it also prints MFU (model FLOPs from ``flops_per_sample`` over the device's bf16 peak).

    .venv/bin/python bench/bench_dit.py                                   # CPU: DiT-T, 8x16x16 latents, batch 16
    .venv/bin/python bench/bench_dit.py --preset DiT-B --latent 16x32x32 --channels 16 --batch 8 \\
        --patch 1 2 2 --text-len 256 --text-dim 4096 --steps 30        # GPU: bf16, compile per block
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def synthetic_latents(root: Path, n: int, shape: tuple[int, ...], text_len: int, text_dim: int) -> Path:
    from reelforge.train.dit.data import write_latent_shards
    from reelforge.train.dit.task import null_text_path

    rng = np.random.default_rng(0)
    write_latent_shards(root, ({"key": f"b{i:05d}", "latent": rng.standard_normal(shape, dtype=np.float32),
                                "text": rng.standard_normal((text_len, text_dim), dtype=np.float32),
                                "meta": {"caption": "x", "fps": 8.0, "width": 64, "height": 64}}
                               for i in range(n)), shard_size=256)
    np.save(null_text_path(root), np.zeros((1, text_dim), np.float16))
    return root


def eager(model, batch, steps: int, device, dtype) -> float:
    """Seconds per plain fwd + bwd + AdamW step on one fixed batch (median after a warm-up)."""
    from reelforge.train.dit.flow import FlowConfig, flow_loss, sample_t
    from reelforge.train.dit.model import grid_of

    model = model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    x0 = batch["latent"].to(device)
    text, mask = batch["text"].to(device), batch["text_mask"].to(device)
    n = math.prod(grid_of(tuple(x0.shape[2:]), model.cfg.patch))
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            t = sample_t(FlowConfig(), x0.shape[0], n, device=device)
            loss, _ = flow_loss(lambda xt, tt: model(xt, tt, text, mask), x0, t, torch.randn_like(x0))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="DiT-T")
    ap.add_argument("--latent", default="8x16x16", help="T x H x W of the latents")
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--patch", type=int, nargs=3, default=[2, 4, 4])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--text-len", type=int, default=16)
    ap.add_argument("--text-dim", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads on CPU (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="per-block torch.compile in the trainer run")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from reelforge.train.dit.data import LatentDataConfig
    from reelforge.train.dit.model import flops_per_sample, grid_of
    from reelforge.train.dit.task import DiTModelSection, DiTTask, DiTTrainConfig
    from reelforge.train.launch import LaunchConfig
    from reelforge.train.metrics import peak_flops
    from reelforge.train.trainer import Trainer, TrainerConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None
    thw = tuple(int(v) for v in args.latent.lower().split("x"))
    shape = (args.channels, *thw)
    tokens = math.prod(grid_of(thw, args.patch))
    tmp = Path(tempfile.mkdtemp(prefix="bench-dit-"))
    data = synthetic_latents(tmp / "lat", args.batch * (args.steps + 4), shape, args.text_len, args.text_dim)
    cfg = DiTTrainConfig(
        trainer=TrainerConfig(steps=args.steps + 2, lr=1e-4, ema_decay=0.999, log_every=1, tensorboard=False,
                              checkpoint_every=0, eval_every=10**9, compile=args.compile,
                              activation_checkpointing=False),
        model=DiTModelSection(preset=args.preset, patch=list(args.patch)),
        data=LatentDataConfig(path=str(data), batch_size=args.batch, caption_dropout=0.1),
        launch=LaunchConfig(mode="local"))
    task = DiTTask(cfg)
    torch.manual_seed(0)
    model = task.build_model()
    params = sum(p.numel() for p in model.parameters())
    batch = next(iter(task.build_loader(0, 1, 0)))
    flops = flops_per_sample(model.cfg, thw, args.text_len)
    peak = peak_flops(device)
    print(f"{args.preset}: {params / 1e6:.1f} M parameters, latent {shape}, patch {tuple(args.patch)} → {tokens} "
          f"tokens/sample, batch {args.batch}, {device}{' bf16' if dtype else ' fp32'}, "
          f"{torch.get_num_threads()} threads, {flops / 1e9:.2f} GFLOP/sample (fwd+bwd)")

    base = eager(model, batch, args.steps, device, dtype)
    trainer = Trainer(task, cfg.trainer, tmp / "run", device=device)
    trainer.fit()
    hist = [h for h in trainer.history[2:] if "step_time_s" in h]     # after warm-up (and compile)
    step = float(np.median([h["step_time_s"] for h in hist]))
    rows = [("eager fwd+bwd+AdamW (baseline)", base), ("shared trainer (DiTTask)", step)]
    for name, s in rows:
        line = (f"{name:34s} {s * 1000:9.1f} ms/step  {args.batch / s:8.1f} samples/s  "
                f"{args.batch * tokens / s:10.0f} tokens/s  {flops * args.batch / s / 1e9:8.1f} GFLOP/s")
        if peak:
            line += f"  MFU {flops * args.batch / s / peak:.1%}"
        print(line)
    print(f"trainer overhead vs eager: {step / base - 1:+.1%} (EMA update, loader, logging, grad clip)")


if __name__ == "__main__":
    main()
