"""The latent space the DiT works in: a video autoencoder's ``encode``/``decode``, chosen by config.

    codec = load_codec("pixel:4")            # fixed 4× average-pool "latents" (no learned weights)
    z = codec.encode(video)                  # (B, T, H, W, 3) uint8 → (B, C, T, H/4, W/4) float in ~[-1, 1]
    video = codec.decode(z)                  # back to (B, T, H, W, 3) uint8

``pixel:N`` is a fixed stand-in for a learned VAE: the DiT then denoises N×-downsampled pixels, which
keeps the colour and motion the quality check scores and trains in minutes on a CPU. A learned VAE
(a train/vae export, or a diffusers Wan / LTX-Video VAE) is ``load_codec(path)``: ``VAECodec`` puts any
``train/vae/interface.py`` VAE behind the same members — ``encode``, ``decode``, ``latent_channels``,
``strides``, ``name`` — with the VAE's latent normalisation applied, so its latents have the scale the
DiT trains on (the same ``normalize`` that ``reelforge encode`` datasets are served with).
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


class VAECodec:
    """A learned video VAE (``train/vae/interface.py``) in the codec's uint8 interface. ``encode`` gives
    the normalised posterior mean; ``decode`` undoes the normalisation. Clips need T = 1 + k·(temporal
    compression) frames and sides divisible by the spatial compression (the VAE's own check says so)."""

    def __init__(self, vae, spec: str):
        self.vae = vae
        self.name = spec
        self.latent_channels = vae.latent_channels
        self.strides = (vae.temporal_compression, vae.spatial_compression, vae.spatial_compression)

    @torch.no_grad()
    def encode(self, video: Tensor, batch_size: int = 8) -> Tensor:
        out = []
        for i in range(0, video.shape[0], batch_size):
            x = video[i:i + batch_size].float().permute(0, 4, 1, 2, 3) / 127.5 - 1                 # (b, 3, T, H, W)
            out.append(self.vae.normalize(self.vae.encode(x).mean).float())                      # (b, Z, T', h, w)
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, z: Tensor, batch_size: int = 8) -> Tensor:
        out = []
        for i in range(0, z.shape[0], batch_size):
            x = self.vae.decode(self.vae.denormalize(z[i:i + batch_size].float())).float()       # (b, 3, T, H, W)
            out.append(((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1))
        return torch.cat(out)                                                                    # (B, T, H, W, 3)


def load_codec(spec: str):
    """``pixel:N`` → PixelCodec(N); anything else is a VAE folder (or hub id) for
    ``train/vae/interface.load_vae``, wrapped as a ``VAECodec``."""
    if spec.startswith("pixel"):
        _, _, n = spec.partition(":")
        return PixelCodec(int(n or 4))
    from reelforge.train.vae.interface import load_vae
    return VAECodec(load_vae(spec), spec)
