"""The shared trainer: one loop for every model family, which it sees only through a ``TrainTask``.

    trainer = Trainer(task, TrainerConfig(...), out_dir, rank, world_size, device)
    trainer.fit()

Plain PyTorch: it runs in one process as is (rank 0 of 1) and on N ranks once a process group exists
(train/launch.py starts the ranks with Ray Train and hands in its context's rank and world size).
Replicated data parallel by default (gradients all-reduced, see parallelize.py), FSDP2 for large
models; bf16 autocast on GPU, fp32 on CPU; AdamW per parameter group; warm-up then cosine or constant
LR; gradient accumulation and clipping; EMA; checkpoints that resume exactly (checkpoint.py).
"""
from __future__ import annotations

import logging
import math
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from reelforge.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint
from reelforge.train.ema import EMA
from reelforge.train.metrics import MetricLogger, peak_flops
from reelforge.train.parallelize import allreduce_grads, broadcast_params, full_state, group_modules, parallelize
from reelforge.train.task import TrainTask, batch_size_of

log = logging.getLogger(__name__)


@dataclass
class TrainerConfig:
    steps: int = 1000                      # optimizer steps
    lr: float = 1e-4
    group_lr: dict[str, float] = field(default_factory=dict)   # per optimizer key, e.g. {disc: 2e-4}
    warmup_steps: int = 0                  # linear from 0 to lr
    schedule: Literal["cosine", "constant"] = "cosine"
    min_lr_ratio: float = 0.0              # cosine ends at lr * min_lr_ratio
    weight_decay: float = 0.0              # AdamW, on matrices/kernels only (not norms, biases)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_accum: int = 1                    # micro-batches per optimizer step
    grad_clip: float = 1.0                 # max global grad norm per optimizer; 0 = off
    ema_decay: float = 0.999               # 0 = no EMA (evaluate/export the live weights)
    precision: Literal["auto", "fp32", "bf16"] = "auto"   # auto: bf16 autocast on GPU, fp32 on CPU
    compile: bool = False                  # torch.compile per block
    activation_checkpointing: bool = False
    parallel: Literal["ddp", "fsdp"] = "ddp"
    checkpoint_every: int = 0              # steps; 0 = only at the end (and at stop_after)
    keep_checkpoints: int = 2              # newest N kept
    eval_every: int = 0                    # steps; 0 = only at the end
    log_every: int = 10
    seed: int = 0
    resume: str = ""                       # "" fresh, "latest" newest checkpoint of this run, or a checkpoint dir
    stop_after: int = 0                    # >0: checkpoint and stop at this step (a planned interruption)
    peak_tflops: float = 0.0               # per device, for MFU; 0 = from the GPU name (metrics.py)
    tensorboard: bool = True

    def __post_init__(self):
        if self.steps < 1 or self.grad_accum < 1 or self.log_every < 1:
            raise ValueError("steps, grad_accum and log_every must be >= 1")
        if len(self.betas) != 2:
            raise ValueError(f"betas must be two numbers, got {self.betas}")
        for key in ("warmup_steps", "checkpoint_every", "eval_every", "stop_after", "grad_clip", "weight_decay"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.keep_checkpoints < 1:
            raise ValueError("keep_checkpoints must be >= 1")


def lr_factor(cfg: TrainerConfig, step: int) -> float:
    """The LR multiplier at optimizer step ``step`` (0-based): a pure function of the step, so the
    schedule needs no state of its own to resume."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def resolve_device(precision: str, device: torch.device | None) -> tuple[torch.device, torch.dtype | None]:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return device, torch.bfloat16
    return device, None


class Trainer:
    """``reporter(step, metrics, checkpoint_dir)``: called on every rank after each checkpoint is
    written (Ray Train's ``report``); ``checkpoint_dir(step)`` says where this rank writes it."""

    def __init__(self, task: TrainTask, cfg: TrainerConfig, out_dir: str | Path, rank: int = 0,
                 world_size: int = 1, device: torch.device | None = None, *,
                 resume_from: str | Path | None = None, config_yaml: str | None = None,
                 checkpoint_dir: Callable[[int], Path] | None = None,
                 reporter: Callable[[int, dict, Path], None] | None = None):
        self.task, self.cfg, self.rank, self.world_size = task, cfg, rank, world_size
        self.out_dir = Path(out_dir)
        self.device, self.amp_dtype = resolve_device(cfg.precision, device)
        self.config_yaml, self.reporter = config_yaml, reporter
        self.checkpoint_dir = checkpoint_dir or (lambda step: self.out_dir / "checkpoints" / f"step_{step:08d}")
        if world_size > 1 and not dist.is_initialized():
            raise RuntimeError(f"world_size={world_size} needs a process group (train/launch.py starts one)")

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        model = task.build_model()
        self.groups = task.param_groups(model)
        self._check_groups(model)
        broadcast_params(model)
        # names are stable through checkpointing, compile and fully_shard (which swaps parameters for
        # DTensor shards): map the groups onto the live parameters by name afterwards
        names = {id(p): n for n, p in model.named_parameters()}
        group_names = {k: [names[id(p)] for p in ps] for k, ps in self.groups.items()}
        self.fsdp = cfg.parallel == "fsdp" and world_size > 1
        units = list(group_modules(model, self.groups).values()) if self.fsdp and len(self.groups) > 1 else []
        model.to(self.device)
        parallelize(model, task.blocks(model), parallel=cfg.parallel, world_size=world_size,
                    activation_checkpointing=cfg.activation_checkpointing, compile=cfg.compile,
                    param_dtype=self.amp_dtype, group_units=units)
        live = dict(model.named_parameters())
        self.groups = {k: [live[n] for n in ns] for k, ns in group_names.items()}
        self.model = model
        self.optimizers = {k: self._optimizer(k, ps) for k, ps in self.groups.items()}
        self.ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
        self.state = TrainState(model, self.optimizers, self.ema)

        # per-rank streams from here on (e.g. posterior samples differ across ranks)
        self._seed_rank()
        self.loader = task.build_loader(rank, world_size, cfg.seed)
        resume_from = resume_from or self._resolve_resume()
        if resume_from is not None:
            loader_state = load_checkpoint(Path(resume_from), self.state, rank, world_size)
            self.loader.load_state_dict(loader_state)
            log.info("rank %d resumed from %s at step %d", rank, resume_from, self.state.step)
        self.logger = MetricLogger(self.out_dir, rank == 0, cfg.steps, cfg.tensorboard)
        self.peak = peak_flops(self.device, cfg.peak_tflops)
        self._eval_model: nn.Module | None = None
        self.history: list[dict] = []  # the scalars of every logged step (tests compare runs with it)
        self._kept_grads: dict[int, torch.Tensor] = {}   # FSDP, several losses: grads set aside per group

    # --- set-up helpers ---------------------------------------------------------------------------
    def _check_groups(self, model: nn.Module) -> None:
        seen: dict[int, str] = {}
        for key, params in self.groups.items():
            for p in params:
                if id(p) in seen:
                    raise ValueError(f"a parameter is in both param groups {seen[id(p)]!r} and {key!r}")
                seen[id(p)] = key
        missing = [n for n, p in model.named_parameters() if p.requires_grad and id(p) not in seen]
        if missing:
            raise ValueError(f"trainable parameters in no param group: {missing[:5]}")

    def _optimizer(self, key: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        lr = self.cfg.group_lr.get(key, self.cfg.lr)
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay, "base_lr": lr},
                  {"params": no_decay, "weight_decay": 0.0, "base_lr": lr}]
        return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=tuple(self.cfg.betas),
                                 foreach=True)

    def _seed_rank(self) -> None:
        seed = self.cfg.seed * 1000003 + self.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def _resolve_resume(self) -> Path | None:
        if not self.cfg.resume:
            return None
        if self.cfg.resume == "latest":
            return latest_checkpoint(self.out_dir / "checkpoints")  # None: nothing yet, start fresh
        path = Path(self.cfg.resume)
        if not (path / "meta.json").exists():
            raise FileNotFoundError(f"resume: {path} is not a checkpoint directory (no meta.json)")
        return path

    # --- the loop ---------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to ``cfg.steps`` (or ``stop_after``); returns the last logged scalars."""
        cfg = self.cfg
        data = self._batches()
        last: dict = {}
        window_t, window_samples = time.perf_counter(), 0
        if self.rank == 0:
            print(f"training {self.task.name}: {sum(p.numel() for p in self.model.parameters()):,} parameters, "
                  f"{self.world_size} rank(s), {self.device}, {self.amp_dtype or torch.float32}, {cfg.parallel}",
                  flush=True)
        while self.state.step < cfg.steps:
            if cfg.stop_after and self.state.step >= cfg.stop_after:
                break
            scalars, samples, flops = self.train_step(data)
            self.state.step += 1
            step = self.state.step
            window_samples += samples
            if step % cfg.log_every == 0 or step == cfg.steps:
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
                elapsed = time.perf_counter() - window_t
                scalars["samples_per_s"] = window_samples / elapsed
                scalars["step_time_s"] = elapsed / (window_samples / samples)
                if flops is not None and self.peak:
                    scalars["mfu"] = flops * scalars["samples_per_s"] / (self.peak * self.world_size)
                if self.device.type == "cuda":
                    scalars["peak_mem_gb"] = torch.cuda.max_memory_allocated(self.device) / 2**30
                self.logger.log(step, scalars)
                self.logger.progress(step, scalars)
                window_t, window_samples = time.perf_counter(), 0
                self.history.append({"step": step, **scalars})
            last = scalars
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
                self.evaluate()
            if (cfg.checkpoint_every and step % cfg.checkpoint_every == 0) or step in (cfg.steps, cfg.stop_after):
                self.save(last)
        if self.state.step >= cfg.steps:
            self.export()
        self.logger.close()
        return last

    def _batches(self):
        """Batches forever: a new pass over the loader is the next epoch."""
        while True:
            n = 0
            for batch in self.loader:
                n += 1
                yield batch
            if n == 0:
                raise RuntimeError(f"rank {self.rank}: the loader yielded no batch")

    def train_step(self, data) -> tuple[dict[str, float], int, float | None]:
        """One optimizer step over ``grad_accum`` micro-batches. Returns (scalars averaged over micro-
        batches and ranks, global samples, model FLOPs per sample or None)."""
        cfg, step = self.cfg, self.state.step
        factor = lr_factor(cfg, step)
        for opt in self.optimizers.values():
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * factor
        stepped: set[str] = set()
        sums: dict[str, float] = {}
        samples, flops = 0, None
        for _ in range(cfg.grad_accum):
            batch = self._to_device(next(data))
            samples += batch_size_of(batch)
            flops = self.task.flops_per_sample(batch)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                losses, logs = self.task.losses(self.model, batch, step)
            self._backward(losses)
            stepped |= set(losses)
            # tensors stay on the device until the step is queued: a float() here would wait for the
            # forward pass before the backward and the optimizer step could be launched
            for k, v in {**{f"loss/{k}": l.detach() for k, l in losses.items()}, **logs}.items():
                sums[k] = sums.get(k, 0.0) + v / cfg.grad_accum
        self._restore_set_aside()
        scalars = {}
        for key in sorted(stepped):
            params = self.groups[key]
            if not self.fsdp:
                allreduce_grads(params, self.world_size)
            if cfg.grad_clip > 0:
                norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip, foreach=True)
                scalars[f"grad_norm/{key}"] = float(full_state({"n": norm})["n"]) if self.fsdp else float(norm)
            self.optimizers[key].step()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        scalars.update(self._mean_over_ranks({k: float(v) for k, v in sums.items()}))
        scalars["loss"] = sum(v for k, v in scalars.items() if k.startswith("loss/"))
        scalars["lr"] = cfg.lr * factor
        return scalars, samples * self.world_size, flops

    def _backward(self, losses: dict[str, torch.Tensor]) -> None:
        """Each loss into its own parameter group only (see TrainTask.losses)."""
        keys = list(losses)
        if not keys:
            raise ValueError("the task returned no loss for this step")
        for i, key in enumerate(keys):
            if key not in self.groups:
                raise KeyError(f"loss {key!r} has no param group (groups: {sorted(self.groups)})")
            loss = losses[key] / self.cfg.grad_accum
            retain = i < len(keys) - 1
            if len(keys) == 1 and len(self.groups) == 1:
                loss.backward()
            elif not self.fsdp:
                torch.autograd.backward(loss, inputs=self.groups[key], retain_graph=retain)
            else:
                # FSDP2 reduce-scatters every unit a backward reaches into its sharded grads, and those
                # grads cannot be restricted with ``inputs`` (autograd sees the gathered parameters). So
                # each loss backpropagates fully; the grads of its own group are set aside and the rest
                # (the generator's loss reaching the discriminator) dropped before the next loss.
                loss.backward(retain_graph=retain)
                self._set_aside(key)

    def _set_aside(self, key: str) -> None:
        for p in self.groups[key]:
            if p.grad is not None:
                kept = self._kept_grads.get(id(p))
                self._kept_grads[id(p)] = p.grad if kept is None else kept + p.grad
        for params in self.groups.values():
            for p in params:
                p.grad = None

    def _restore_set_aside(self) -> None:
        """Put the set-aside grads back after the last micro-batch (before clipping and the step)."""
        if not self._kept_grads:
            return
        for params in self.groups.values():
            for p in params:
                p.grad = self._kept_grads.get(id(p))
        self._kept_grads = {}

    def _to_device(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            return {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                    for k, v in batch.items()}
        return batch

    def _mean_over_ranks(self, scalars: dict[str, float]) -> dict[str, float]:
        if self.world_size == 1:
            return scalars
        keys = sorted(scalars)
        t = torch.tensor([scalars[k] for k in keys], dtype=torch.float64,
                         device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist())}

    # --- evaluation, checkpoints, export ------------------------------------------------------------
    def eval_model(self) -> nn.Module | None:
        """A plain copy of the model holding the EMA (else live) weights; on rank 0, None elsewhere.
        A collective under FSDP (every rank gathers the shards)."""
        named = self.ema.shadow if self.ema is not None else dict(self.model.named_parameters())
        full = full_state(named)
        if self.rank != 0:
            return None
        if self._eval_model is None:
            torch.manual_seed(self.cfg.seed)
            self._eval_model = self.task.build_model().to(self.device)
        buffers = {n: b.detach() for n, b in self.model.named_buffers()}
        self._eval_model.load_state_dict({**full, **buffers}, strict=False)
        return self._eval_model.eval()

    def evaluate(self) -> dict[str, float]:
        model = self.eval_model()
        metrics: dict[str, float] = {}
        if model is not None:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                                 enabled=self.amp_dtype is not None):
                metrics = self.task.evaluate(model, self.state.step, self.out_dir / "eval")
            if metrics:
                self.logger.log(self.state.step, metrics, kind="eval")
                print(f"eval step {self.state.step}: " + " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
                      flush=True)
        return metrics

    def save(self, metrics: dict) -> Path:
        step = self.state.step
        path = self.checkpoint_dir(step)
        save_checkpoint(path, self.state, self.rank, self.world_size, self.loader.state_dict(),
                        {"task": self.task.name, "parallel": self.cfg.parallel}, self.config_yaml)
        if self.reporter is not None:
            self.reporter(step, {"step": step, **{k: v for k, v in metrics.items()}}, path)
        elif self.rank == 0:
            self._prune(path.parent)
        return path

    def _prune(self, root: Path) -> None:
        done = sorted(p for p in root.glob("step_*") if (p / "meta.json").exists())
        for old in done[:-self.cfg.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)

    def export(self) -> None:
        model = self.eval_model()
        if model is not None:
            self.task.export(model, self.out_dir / "export")
            print(f"exported {self.task.name} weights to {self.out_dir / 'export'}", flush=True)
