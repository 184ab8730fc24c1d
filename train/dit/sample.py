"""Sampling the flow ODE dx/dt = v(x, t) from t = 1 (noise) to t = 0: Euler and Heun (2nd order),
classifier-free guidance, any latent shape, seeded.

    x0 = sample(model, (B, C, T, H, W), text, mask, null_text, null_mask, SamplerConfig(steps=30), seed=0)

The time grid gets the same resolution/length shift as training (flow.shift_for), so a bucket is
sampled where it was trained.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from reelforge.train.dit.flow import FlowConfig, shift_for, shift_time
from reelforge.train.dit.model import grid_of


@dataclass
class SamplerConfig:
    method: Literal["euler", "heun"] = "euler"
    steps: int = 30                       # Heun costs two model calls per step (one on the last)
    cfg_scale: float = 5.0                # 1: no guidance (the unconditional pass is skipped)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.cfg_scale < 0:
            raise ValueError(f"cfg_scale must be >= 0, got {self.cfg_scale}")


def time_grid(steps: int, shift: float, device=None) -> Tensor:
    """(steps + 1,) times from 1 down to 0, shifted."""
    return shift_time(torch.linspace(1.0, 0.0, steps + 1), shift).to(device)


def _pad_tokens(a: Tensor, ma: Tensor, length: int) -> tuple[Tensor, Tensor]:
    if a.shape[1] == length:
        return a, ma
    pad = length - a.shape[1]
    return (torch.cat([a, a.new_zeros(a.shape[0], pad, a.shape[2])], 1),
            torch.cat([ma, ma.new_zeros(ma.shape[0], pad)], 1))


@torch.no_grad()
def sample(model: nn.Module, shape: tuple[int, ...], text: Tensor, text_mask: Tensor, null_text: Tensor,
           null_mask: Tensor, cfg: SamplerConfig, flow: FlowConfig | None = None, seed: int = 0,
           fps: Tensor | None = None, size: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
    """Latents x0 (B, C, T, H, W) for ``shape``. ``text`` (B, L, E) / ``text_mask`` (B, L) condition;
    ``null_text`` (1, L0, E) / ``null_mask`` (1, L0) is the empty-caption embedding used for guidance.
    The initial noise is drawn on the CPU from ``seed`` so the same seed gives the same video on any device;
    ``noise`` (shaped ``shape``) replaces that draw (per-sample seeds in one batch)."""
    device = text.device
    B = shape[0]
    if noise is None:
        noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    x = noise.float().to(device)                                                          # (B, C, T, H, W)
    n_tokens = 1
    for s in grid_of(tuple(shape[2:]), model.cfg.patch):
        n_tokens *= s
    ts = time_grid(cfg.steps, shift_for(flow or FlowConfig(), n_tokens), device)
    guided = cfg.cfg_scale != 1.0
    if guided:
        L = max(text.shape[1], null_text.shape[1])
        text, text_mask = _pad_tokens(text, text_mask, L)
        nt, nm = _pad_tokens(null_text.expand(B, -1, -1), null_mask.expand(B, -1), L)
        ctx, ctx_mask = torch.cat([text, nt]), torch.cat([text_mask, nm])                # (2B, L, E)
        fps2 = None if fps is None else torch.cat([fps, fps])
        size2 = None if size is None else torch.cat([size, size])

    def velocity(xt: Tensor, t: float) -> Tensor:
        tt = torch.full((B,), float(t), device=device)
        if not guided:
            return model(xt, tt, text, text_mask, fps=fps, size=size).float()
        v = model(torch.cat([xt, xt]), torch.cat([tt, tt]), ctx, ctx_mask, fps=fps2, size=size2).float()
        v_c, v_u = v.chunk(2)
        return v_u + cfg.cfg_scale * (v_c - v_u)

    for i in range(cfg.steps):
        t0, t1 = float(ts[i]), float(ts[i + 1])
        v0 = velocity(x, t0)
        x_euler = x + (t1 - t0) * v0
        if cfg.method == "heun" and t1 > 0:
            # trapezoid of the slopes at both ends; the last step stays Euler (v at t = 0 is not needed)
            x = x + (t1 - t0) * 0.5 * (v0 + velocity(x_euler, t1))
        else:
            x = x_euler
    return x
