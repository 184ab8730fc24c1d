"""A 3D patch discriminator (PatchGAN over space-time): real or reconstructed, per patch.

Strided 3D convolutions with LeakyReLU and per-position RMS normalisation, ending in one logit per
space-time patch (receptive field ~ a few frames x 70 px), as in the 3D discriminators of MAGVIT and
Open-Sora's VAE. Input (B, 3, T, H, W) in [-1, 1]; output (B, 1, T', H', W') logits.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DiscriminatorConfig:
    channels: int = 64
    num_layers: int = 3          # strided layers (each halves H and W; the first two also halve T)


class RMSNorm3d(nn.Module):
    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        return x * x.pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt() * self.weight


class PatchDiscriminator3D(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig, in_channels: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv3d(in_channels, cfg.channels, (3, 4, 4), (1, 2, 2), (1, 1, 1)),
                                   nn.LeakyReLU(0.2)]
        ch = cfg.channels
        for i in range(1, cfg.num_layers):
            out = min(ch * 2, cfg.channels * 8)
            stride_t = 2 if i <= 2 else 1
            layers += [nn.Conv3d(ch, out, (3, 4, 4), (stride_t, 2, 2), (1, 1, 1), bias=False), RMSNorm3d(out),
                       nn.LeakyReLU(0.2)]
            ch = out
        layers += [nn.Conv3d(ch, ch, (3, 3, 3), 1, 1, bias=False), RMSNorm3d(ch), nn.LeakyReLU(0.2),
                   nn.Conv3d(ch, 1, (3, 3, 3), 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, 1, T', H/2^L, W/2^L)
        return self.net(x)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
