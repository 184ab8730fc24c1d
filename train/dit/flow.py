"""Rectified flow: the path, timestep sampling with a resolution/length-aware shift, the loss and the
validation loss at fixed timesteps.

Convention (SD3, Open-Sora 2.0, Wan2.1): x_t = (1 - t)·x0 + t·ε with t = 1 pure noise; the model
predicts the velocity v = ε - x0, so sampling integrates dx/dt = v from t = 1 down to 0.

Larger latents (more tokens) keep more signal at a given noise level, so the same t is "easier" for
them; the shift t' = s·t / (1 + (s - 1)·t) with s growing with the token count moves training and
sampling toward noisier times (SD3 §5.3.2; Open-Sora 2.0 counts frames too, which is what makes it
length-aware).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import Tensor


@dataclass
class FlowConfig:
    timesteps: Literal["logit_normal", "uniform"] = "logit_normal"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 0.0                   # > 0: a fixed shift; 0: from the token count (below)
    base_tokens: int = 256               # token count at which the automatic shift is base_shift
    base_shift: float = 1.0
    max_shift: float = 6.0
    val_timesteps: list[float] = field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])

    def __post_init__(self):
        if self.logit_std <= 0:
            raise ValueError(f"logit_std must be > 0, got {self.logit_std}")
        if self.shift < 0 or self.base_shift <= 0 or self.max_shift < self.base_shift:
            raise ValueError("need shift >= 0, base_shift > 0, max_shift >= base_shift")
        if self.base_tokens < 1:
            raise ValueError(f"base_tokens must be >= 1, got {self.base_tokens}")
        if not all(0.0 < t < 1.0 for t in self.val_timesteps):
            raise ValueError(f"val_timesteps must lie in (0, 1), got {self.val_timesteps}")


def shift_for(cfg: FlowConfig, num_tokens: int) -> float:
    """The time shift for a sequence of ``num_tokens`` patch tokens: fixed, or base_shift·√(N / base),
    clamped to [1, max_shift] (√ because the signal-to-noise ratio of a mean over N tokens grows as √N)."""
    if cfg.shift > 0:
        return cfg.shift
    return float(min(cfg.max_shift, max(1.0, cfg.base_shift * math.sqrt(num_tokens / cfg.base_tokens))))


def shift_time(t: Tensor, s: float) -> Tensor:
    return s * t / (1 + (s - 1) * t)


def sample_t(cfg: FlowConfig, n: int, num_tokens: int, generator: torch.Generator | None = None,
             device=None) -> Tensor:
    """(n,) training timesteps in (0, 1): logit-normal (or uniform), then shifted for the sequence length."""
    if cfg.timesteps == "logit_normal":
        u = torch.randn(n, generator=generator) * cfg.logit_std + cfg.logit_mean
        t = torch.sigmoid(u)
    else:
        t = torch.rand(n, generator=generator)
    return shift_time(t, shift_for(cfg, num_tokens)).to(device)


def interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """x_t = (1 - t)·x0 + t·ε, t (B,) broadcast over (B, C, T, H, W)."""
    tt = t.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - tt) * x0 + tt * noise


VelocityFn = Callable[[Tensor, Tensor], Tensor]     # (x_t, t) -> predicted velocity


def flow_loss(velocity: VelocityFn, x0: Tensor, t: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """Mean-squared velocity error. Returns (scalar loss, per-sample loss (B,)): the per-sample values
    are what a training run can feed back as a per-clip difficulty score."""
    xt = interpolate(x0, noise, t)
    v = velocity(xt, t)
    per_sample = (v.float() - (noise - x0).float()).pow(2).flatten(1).mean(1)             # (B,)
    return per_sample.mean(), per_sample


@torch.no_grad()
def validation_loss(velocity: VelocityFn, x0: Tensor, timesteps: list[float], seed: int = 0) -> dict[str, float]:
    """The loss at each fixed timestep with noise drawn from ``seed``: the same numbers for the same
    weights and data, so its curve over training is a monitor free of timestep-sampling noise."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=g).to(x0.device, x0.dtype)
    out = {}
    for tv in timesteps:
        t = torch.full((x0.shape[0],), tv, device=x0.device)
        out[f"val_loss_t{tv:g}"] = float(flow_loss(velocity, x0, t, noise)[0])
    out["val_loss"] = sum(out.values()) / len(timesteps)
    return out
