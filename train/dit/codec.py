"""The latent space the DiT works in: a video autoencoder's ``encode``/``decode``, chosen by config.

    codec = load_codec("pixel:4")            # fixed 4× average-pool "latents" (no learned weights)
    z = codec.encode(video)                  # (B, T, H, W, 3) uint8 → (B, C, T, H/4, W/4) float in ~[-1, 1]
    video = codec.decode(z)                  # back to (B, T, H, W, 3) uint8

``pixel:N`` is an honest stand-in while a learned VAE is absent: the DiT then denoises N×-downsampled
pixels, which keeps the colour and motion the quality check scores and trains in minutes on a CPU. A
learned VAE from train/vae (issue 14) plugs in behind the same three members — ``encode``, ``decode``,
``latent_channels`` / ``strides`` — via ``load_codec(path)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class PixelCodec:
    """Average-pool by ``factor`` in space; decode is bilinear upsampling. Not a learned model."""

    latent_channels = 3

    def __init__(self, factor: int = 4):
        if factor < 1:
            raise ValueError(f"pixel codec factor must be >= 1, got {factor}")
        self.factor = factor
        self.strides = (1, factor, factor)          # (time, height, width)
        self.name = f"pixel:{factor}"

    def encode(self, video: Tensor) -> Tensor:
        x = video.float().permute(0, 4, 1, 2, 3) / 127.5 - 1                             # (B, 3, T, H, W)
        B, C, T, H, W = x.shape
        x = x.transpose(1, 2).reshape(B * T, C, H, W)
        x = F.avg_pool2d(x, self.factor)                                                  # (B·T, 3, H/f, W/f)
        return x.reshape(B, T, C, H // self.factor, W // self.factor).transpose(1, 2)    # (B, 3, T, h, w)

    def decode(self, z: Tensor) -> Tensor:
        B, C, T, h, w = z.shape
        x = z.float().transpose(1, 2).reshape(B * T, C, h, w)
        x = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=False)
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return x.reshape(B, T, C, h * self.factor, w * self.factor).permute(0, 1, 3, 4, 2)   # (B, T, H, W, 3)


def load_codec(spec: str):
    """``pixel:N`` → PixelCodec(N). A learned VAE checkpoint comes from train/vae once its interface
    module exists; until then a path is a clear error rather than a silent fallback."""
    if spec.startswith("pixel"):
        _, _, n = spec.partition(":")
        return PixelCodec(int(n or 4))
    try:
        from reelforge.train.vae.interface import load_vae  # issue 14's interface
    except ImportError as exc:
        raise ValueError(f"codec {spec!r}: a learned VAE needs reelforge.train.vae.interface.load_vae, "
                         f"which this checkout lacks ({exc}); use codec: pixel:4") from exc
    return load_vae(spec)
