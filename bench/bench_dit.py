"""DiT training throughput: step time, tokens/s, samples/s and MFU of the shared trainer next to the same
model's plain eager forward + backward + AdamW step (the floor the trainer adds its loop to), in one run.

    .venv/bin/python bench/bench_dit.py                                   # CPU: DiT-T, 8x16x16 latents, batch 16
    .venv/bin/python bench/bench_dit.py --preset DiT-XL --latent 8x32x32 --channels 16 --batch 16 \\
        --patch 1 2 2 --text-len 256 --text-dim 4096 --steps 20 --compile   # GPU: bf16 autocast, compile per block

Both loops train on one batch read once through the task's latent-shard reader and then repeated (no data
loading in the figure: that is bench_loader.py's job). The trainer row is ``Trainer.train_step`` with
everything the real run does per step (caption dropout, LR schedule, grad clipping, EMA, logged scalars).
FLOPs are ``train.dit.model.flops_per_sample``: the matmuls of attention (q, k, v, out; q·kᵀ and attn·v),
cross-attention, MLP, patch and text embedders, 2 FLOPs per multiply-add, forward + backward = 3 × forward.
MFU divides by the device's dense bf16 peak from ``train.metrics.PEAK_BF16_TFLOPS`` (datasheet: 989 TFLOP/s
on H100/H200) and, when ``--measured-peak-tflops`` is given, also by a measured matmul rate.
``--sdpa`` restricts the attention kernels (the masked cross-attention cannot use flash, so ``flash`` and
``cudnn`` keep the memory-efficient kernel as its fallback; the math path is then excluded everywhere).
``--json PATH`` appends one line of figures per run.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


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


def sdpa_backends(name: str):
    """A context restricting SDPA to the named kernels (``default``: torch's own choice)."""
    if name == "default":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel
    kernels = {"flash": [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
               "cudnn": [SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION],
               "efficient": [SDPBackend.EFFICIENT_ATTENTION], "math": [SDPBackend.MATH]}[name]
    return sdpa_kernel(kernels)


@contextlib.contextmanager
def record_sdpa_inputs(seen: list):
    """Records (q, k, v dtypes, q shape, masked) of every SDPA call inside: what decides the kernel."""
    orig = F.scaled_dot_product_attention

    def spy(q, k, v, *a, **kw):
        mask = kw.get("attn_mask", a[0] if a else None)
        seen.append((str(q.dtype), str(k.dtype), str(v.dtype), tuple(q.shape), mask is not None))
        return orig(q, k, v, *a, **kw)
    F.scaled_dot_product_attention = spy
    try:
        yield
    finally:
        F.scaled_dot_product_attention = orig


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def eager(model, batch, steps: int, device, dtype, probe: list | None = None) -> float:
    """Seconds per plain fwd + bwd + AdamW step on one fixed batch (median after two warm-up steps).
    ``probe``: the first step's SDPA inputs are recorded into it."""
    from reelforge.train.dit.flow import FlowConfig, flow_loss, sample_t
    from reelforge.train.dit.model import grid_of

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, foreach=True)
    x0 = batch["latent"].to(device)
    text, mask = batch["text"].to(device), batch["text_mask"].to(device)
    n = math.prod(grid_of(tuple(x0.shape[2:]), model.cfg.patch))
    times = []
    for i in range(steps + 2):
        _sync(device)
        t0 = time.perf_counter()
        spy = record_sdpa_inputs(probe) if (probe is not None and i == 0) else contextlib.nullcontext()
        with spy, torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            t = sample_t(FlowConfig(), x0.shape[0], n, device=device)
            loss, _ = flow_loss(lambda xt, tt: model(xt, tt, text, mask), x0, t, torch.randn_like(x0))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        _sync(device)
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
    ap.add_argument("--compile", action="store_true", help="per-block torch.compile (trainer and eager rows)")
    ap.add_argument("--sdpa", default="default", choices=["default", "flash", "cudnn", "efficient", "math"])
    ap.add_argument("--caption-dropout", type=float, default=0.1, help="the trainer row's (eager has none)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the eager row (saves device time)")
    ap.add_argument("--measured-peak-tflops", type=float, default=0.0,
                    help="a measured bf16 matmul rate to divide by too (MFU is also given against the datasheet)")
    ap.add_argument("--json", type=Path, help="append one line of figures to this file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from reelforge.train.dit.data import LatentDataConfig
    from reelforge.train.dit.model import flops_per_sample, grid_of
    from reelforge.train.dit.task import DiTModelSection, DiTTask, DiTTrainConfig
    from reelforge.train.launch import LaunchConfig
    from reelforge.train.metrics import peak_flops
    from reelforge.train.parallelize import apply_compile
    from reelforge.train.trainer import Trainer, TrainerConfig

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else None
    thw = tuple(int(v) for v in args.latent.lower().split("x"))
    shape = (args.channels, *thw)
    tokens = math.prod(grid_of(thw, args.patch))
    tmp = Path(tempfile.mkdtemp(prefix="bench-dit-"))
    data = synthetic_latents(tmp / "lat", args.batch, shape, args.text_len, args.text_dim)
    cfg = DiTTrainConfig(
        trainer=TrainerConfig(steps=args.steps + 2, lr=1e-4, ema_decay=0.999, log_every=1, tensorboard=False,
                              checkpoint_every=0, eval_every=10**9, compile=args.compile,
                              activation_checkpointing=False),
        model=DiTModelSection(preset=args.preset, patch=list(args.patch)),
        data=LatentDataConfig(path=str(data), batch_size=args.batch, caption_dropout=args.caption_dropout),
        launch=LaunchConfig(mode="local"))
    batch = next(iter(DiTTask(cfg).build_loader(0, 1, 0)))

    class Bench(DiTTask):
        def build_loader(self, rank, world_size, seed):
            self.rank, self.world_size = rank, world_size
            from bench_train import RepeatBatch  # same folder

            return RepeatBatch(batch)

    task = Bench(cfg)
    flops = flops_per_sample(task.model_config(), thw, args.text_len)
    peak = peak_flops(device)
    measured = args.measured_peak_tflops * 1e12 or None
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    result = {"device": name, "preset": args.preset, "latent": list(shape), "patch": list(args.patch),
              "tokens_per_sample": tokens, "batch": args.batch, "text": [args.text_len, args.text_dim],
              "dtype": "bf16 autocast" if dtype else "fp32", "compile": args.compile, "sdpa": args.sdpa,
              "activation_checkpointing": False, "gflop_per_sample": round(flops / 1e9, 2),
              "peak_tflops_datasheet": peak / 1e12 if peak else None,
              "peak_tflops_measured": args.measured_peak_tflops or None}
    rows = []
    with sdpa_backends(args.sdpa):
        if not args.no_baseline:
            torch.manual_seed(0)
            model = task.build_model().to(device)
            result["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 1)
            if args.compile:
                apply_compile(task.blocks(model))
            probe: list = []
            base = eager(model, batch, args.steps, device, dtype, probe)
            result["sdpa_inputs"] = sorted({f"{'cross' if m else 'self'}: q {q} k {k} v {v} {list(s)}"
                                            for q, k, v, s, m in probe})
            rows.append(("eager fwd+bwd+AdamW (baseline)", base))
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
        trainer = Trainer(task, cfg.trainer, tmp / "run", device=device)
        result.setdefault("params_m", round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 1))
        # the body of Trainer.fit, timed per step; fit's end-of-run checkpoint and export (gigabytes for
        # DiT-XL) are not a training step's cost
        data, times = trainer._batches(), []
        for i in range(args.steps + 2):
            _sync(device)
            t0 = time.perf_counter()
            trainer.train_step(data)
            trainer.state.step += 1
            _sync(device)
            times.append(time.perf_counter() - t0)
    rows.append(("shared trainer (DiTTask)", float(np.median(times[2:]))))     # after warm-up (and compile)
    if device.type == "cuda":
        result["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    print(f"{name}: {args.preset} {result['params_m']} M parameters, latent {shape}, patch {tuple(args.patch)} → "
          f"{tokens} tokens/sample, batch {args.batch}, text {args.text_len}x{args.text_dim}, {result['dtype']}, "
          f"compile {args.compile}, sdpa {args.sdpa}, {flops / 1e9:.2f} GFLOP/sample (fwd+bwd)")
    for line in result.get("sdpa_inputs", []):
        print(f"  SDPA input {line}")
    for label, s in rows:
        fig = {"step_s": round(s, 5), "samples_per_s": round(args.batch / s, 2),
               "tokens_per_s": round(args.batch * tokens / s), "tflops": round(flops * args.batch / s / 1e12, 1)}
        line = (f"{label:34s} {s * 1000:9.1f} ms/step  {fig['samples_per_s']:8.1f} samples/s  "
                f"{fig['tokens_per_s']:10.0f} tokens/s  {fig['tflops']:7.1f} TFLOP/s")
        if peak:
            fig["mfu"] = round(flops * args.batch / s / peak, 4)
            line += f"  MFU {fig['mfu']:.1%} of {peak / 1e12:.0f}"
        if measured:
            fig["mfu_measured_peak"] = round(flops * args.batch / s / measured, 4)
            line += f" ({fig['mfu_measured_peak']:.1%} of {measured / 1e12:.0f} measured)"
        result["baseline" if label.startswith("eager") else "trainer"] = fig
        print(line)
    if len(rows) == 2:
        print(f"trainer overhead vs eager: {rows[1][1] / rows[0][1] - 1:+.1%} "
              f"(caption dropout, EMA update, grad clip, logged scalars)")
    if "peak_mem_gb" in result:
        print(f"peak memory {result['peak_mem_gb']} GiB")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
