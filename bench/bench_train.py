"""Trainer step time and samples/s against a plain eager loop of the same model, in the same run.

    python bench/bench_train.py vae [--preset tiny] [--frames 9] [--size 64] [--batch 1] [--steps 10]
    python bench/bench_train.py vae --preset S --frames 17 --size 256 --batch 2 --steps 20   # on a GPU

Both loops train the same model from the same initial weights on the same in-memory batch (no data
loading: that is bench_loader.py's job), with AdamW and gradient clipping:
  baseline   for step: loss = task.losses(model, batch); backward; clip; optimizer.step()
  trainer    Trainer.train_step (lr schedule, per-group backward, clipping, EMA, logging scalars)
so trainer/baseline is the trainer's overhead (steps interleaved: baseline, trainer, baseline, ...; the
median of each is reported). On a GPU both run bf16 autocast; the trainer line also
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


class RepeatBatch:
    """The loader contract the trainer needs, serving one batch forever (bench_dit.py uses it too)."""

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


class Baseline:
    """The plain eager loop: forward, backward, clip, AdamW step; nothing else."""

    def __init__(self, task, batch, device, amp):
        torch.manual_seed(0)
        self.task, self.amp, self.device = task, amp, device
        self.model = task.build_model().to(device)
        self.groups = task.param_groups(self.model)
        self.opts = {k: torch.optim.AdamW(ps, lr=1e-4, foreach=True) for k, ps in self.groups.items()}
        self.batch = {k: v.to(device) for k, v in batch.items()}
        self.step = 0

    def __call__(self):
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            losses, _ = self.task.losses(self.model, self.batch, self.step)
        sum(losses.values()).backward()
        for k in losses:
            torch.nn.utils.clip_grad_norm_(self.groups[k], 1.0, foreach=True)
            self.opts[k].step()
            self.opts[k].zero_grad(set_to_none=True)
        self.step += 1
        return None


def make_trainer(task, batch, steps, device, out):
    from reelforge.train.trainer import Trainer, TrainerConfig

    class Bench(type(task)):
        def build_loader(self, rank, world_size, seed):
            return RepeatBatch(batch)

    cfg = TrainerConfig(steps=steps, lr=1e-4, warmup_steps=0, ema_decay=0.999, tensorboard=False, log_every=10 ** 9)
    t = Trainer(Bench(task.cfg), cfg, out, device=device)
    data = t._batches()

    def step():
        _, _, flops = t.train_step(data)
        t.state.step += 1
        return flops
    return step, t


def timed(fn, device):
    """(wall seconds, process CPU seconds, fn's result). On a shared CPU at one thread the CPU seconds
    are what an idle core would take; wall time also counts waiting for the core."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


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
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda"
    task, batch = TASKS[args.task](args)
    base_step = Baseline(task, batch, device, amp)
    base, tr, base_cpu, tr_cpu, flops = [], [], [], [], None
    with tempfile.TemporaryDirectory() as tmp:
        trainer_step, t = make_trainer(task, batch, args.warmup + args.steps, device, Path(tmp))
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        # interleaved, so a change in machine load hits both loops alike
        for i in range(args.warmup + args.steps):
            dt_b, cpu_b, _ = timed(base_step, device)
            dt_t, cpu_t, flops = timed(trainer_step, device)
            if i >= args.warmup:
                base.append(dt_b), tr.append(dt_t), base_cpu.append(cpu_b), tr_cpu.append(cpu_t)
        peak = t.peak
    mem = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else None
    n = args.batch

    def stats(times, cpu):
        med, cmed = sorted(times)[len(times) // 2], sorted(cpu)[len(cpu) // 2]
        return {"step_s": round(med, 4), "samples_per_s": round(n / med, 3), "cpu_s_per_step": round(cmed, 4)}
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
              "task": args.task, "preset": args.preset, "shape": [n, args.frames, 3, args.size, args.size],
              "baseline": stats(base, base_cpu), "trainer": stats(tr, tr_cpu)}
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
    import os
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"{result['device']}{load}: {args.task} {args.preset} batch {result['shape']}")
    for name, label in (("baseline", "baseline (eager loop)"), ("trainer", "trainer")):
        r = result[name]
        print(f"  {label:22s} {r['step_s']:.4f} s/step wall  {r['samples_per_s']:.2f} samples/s  "
              f"{r['cpu_s_per_step']:.4f} CPU s/step")
    print(f"  trainer / baseline (wall): x{result['trainer_overhead']}")
    for k in ("model_gflops_per_sample", "mfu", "peak_mem_gb"):
        if k in result:
            print(f"  {k}: {result[k]}")


if __name__ == "__main__":
    main()
