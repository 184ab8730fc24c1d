"""Trainer step time and samples/s against a plain eager loop of the same model, in the same run.

    python bench/bench_train.py vae [--preset tiny] [--frames 9] [--size 64] [--batch 1] [--steps 10]
    python bench/bench_train.py vae --preset S --frames 17 --size 256 --batch 2 --steps 20   # on a GPU

Both loops train the same model from the same initial weights on the same in-memory batch (no data
loading: that is bench_loader.py's job), with AdamW and gradient clipping:
  baseline   for step: loss = task.losses(model, batch); backward; clip; optimizer.step()
  trainer    Trainer.train_step (lr schedule, per-group backward, clipping, EMA, logging scalars)
so trainer/baseline is the trainer's overhead. On a GPU both run bf16 autocast; the trainer line also
reports peak memory and MFU (model FLOPs from the task, peak bf16 FLOP/s of the device by name).

Other model families add an entry to TASKS (name -> function building (task, batch)).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def vae_task(args):
    from reelforge.train.vae.losses import VAELossConfig
    from reelforge.train.vae.task import VAESection, VAETask, VAETrainConfig

    cfg = VAETrainConfig(vae=VAESection(preset=args.preset),
                         loss=VAELossConfig(l1_weight=1.0, l2_weight=1.0, kl_weight=1e-6))
    g = torch.Generator().manual_seed(0)
    batch = {"video": torch.rand(args.batch, args.frames, 3, args.size, args.size, generator=g) * 2 - 1}
    return VAETask(cfg), batch


TASKS = {"vae": vae_task}


class _Repeat:
    def __init__(self, batch):
        self.batch = batch

    def __iter__(self):
        while True:
            yield self.batch

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def baseline(task, batch, steps, warmup, device, amp):
    torch.manual_seed(0)
    model = task.build_model().to(device)
    groups = task.param_groups(model)
    opts = {k: torch.optim.AdamW(ps, lr=1e-4, foreach=True) for k, ps in groups.items()}
    batch = {k: v.to(device) for k, v in batch.items()}
    times = []
    for step in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            losses, _ = task.losses(model, batch, step)
        sum(losses.values()).backward()
        for k in losses:
            torch.nn.utils.clip_grad_norm_(groups[k], 1.0, foreach=True)
            opts[k].step()
            opts[k].zero_grad(set_to_none=True)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times[warmup:]


def trainer(task, batch, steps, warmup, device, out):
    from reelforge.train.trainer import Trainer, TrainerConfig

    class Bench(type(task)):
        def build_loader(self, rank, world_size, seed):
            return _Repeat(batch)

    bench_task = Bench(task.cfg)
    cfg = TrainerConfig(steps=warmup + steps, lr=1e-4, warmup_steps=0, ema_decay=0.999, tensorboard=False,
                        log_every=10 ** 9)
    t = Trainer(bench_task, cfg, out, device=device)
    data = t._batches()
    times, flops = [], None
    for step in range(warmup + steps):
        _sync(device)
        t0 = time.perf_counter()
        _, _, flops = t.train_step(data)
        t.state.step += 1
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times[warmup:], flops, t.peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=sorted(TASKS))
    p.add_argument("--preset", default="tiny")
    p.add_argument("--frames", type=int, default=9)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda"
    task, batch = TASKS[args.task](args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base = baseline(task, batch, args.steps, args.warmup, device, amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as tmp:
        tr, flops, peak = trainer(task, batch, args.steps, args.warmup, device, Path(tmp))
    mem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    n = args.batch

    def stats(times):
        med = sorted(times)[len(times) // 2]
        return {"step_s": round(med, 4), "samples_per_s": round(n / med, 3)}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
              "task": args.task, "preset": args.preset, "shape": [n, args.frames, 3, args.size, args.size],
              "baseline": stats(base), "trainer": stats(tr)}
    result["trainer_overhead"] = round(result["trainer"]["step_s"] / result["baseline"]["step_s"], 3)
    if flops:
        result["model_gflops_per_sample"] = round(flops / 1e9, 2)
        if peak:
            result["mfu"] = round(flops * result["trainer"]["samples_per_s"] / peak, 4)
    if mem is not None:
        result["peak_mem_gb"] = round(mem, 2)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{result['device']}: {args.task} {args.preset} batch {result['shape']}")
    print(f"  baseline (eager loop)  {base and result['baseline']['step_s']:.4f} s/step  "
          f"{result['baseline']['samples_per_s']:.2f} samples/s")
    print(f"  trainer                {result['trainer']['step_s']:.4f} s/step  "
          f"{result['trainer']['samples_per_s']:.2f} samples/s  (x{result['trainer_overhead']} of baseline)")
    for k in ("model_gflops_per_sample", "mfu", "peak_mem_gb"):
        if k in result:
            print(f"  {k}: {result[k]}")


if __name__ == "__main__":
    main()
