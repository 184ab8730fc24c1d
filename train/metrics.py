"""What a run reports: a progress line, TensorBoard scalars and a jsonl of every logged step (rank 0),
and the throughput figures (samples/s, MFU)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

# Dense bf16 peak FLOP/s per device (no sparsity), for MFU; override with TrainerConfig.peak_tflops.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0,
                    "RTX 4090": 165.0, "V100": 125.0}


def peak_flops(device: torch.device, override_tflops: float = 0.0) -> float | None:
    if override_tflops > 0:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None  # no meaningful peak for a shared CPU
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


class MetricLogger:
    """Rank 0 writes; other ranks hold a logger that does nothing."""

    def __init__(self, out_dir: Path, enabled: bool, total_steps: int, tensorboard: bool = True):
        self.enabled, self.total_steps = enabled, total_steps
        self.writer = None
        self.jsonl = None
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            self.jsonl = open(out_dir / "metrics.jsonl", "a")
            if tensorboard:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tb"))
        self.t0 = time.perf_counter()
        self.first_step: int | None = None

    def log(self, step: int, scalars: dict[str, float], kind: str = "train") -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps({"kind": kind, "step": step, **scalars}) + "\n")
        self.jsonl.flush()
        if self.writer is not None:
            for k, v in scalars.items():
                self.writer.add_scalar(f"{kind}/{k}", v, step)

    def progress(self, step: int, scalars: dict[str, float]) -> str | None:
        """One line: step, loss(es), samples/s, ETA from the mean step time since the first logged step."""
        if not self.enabled:
            return None
        now = time.perf_counter()
        if self.first_step is None:
            self.first_step, self.t0 = step, now
        done = step - self.first_step
        eta = (now - self.t0) / done * (self.total_steps - step) if done else float("nan")
        losses = " ".join(f"{k}={v:.4g}" for k, v in scalars.items() if k.startswith("loss"))
        line = (f"step {step}/{self.total_steps} {losses} samples/s={scalars.get('samples_per_s', 0):.2f} "
                f"lr={scalars.get('lr', 0):.3g} eta={_fmt(eta)}")
        print(line, flush=True)
        return line

    def close(self) -> None:
        """After this, ``log`` does nothing (an evaluation called after ``fit`` still returns metrics)."""
        if self.jsonl is not None:
            self.jsonl.close()
        if self.writer is not None:
            self.writer.close()
        self.enabled = False


def _fmt(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"
