"""Any video VAE behind one small interface: reelforge's own (train/vae/model.py) and diffusers'
pretrained ``AutoencoderKLWan`` / ``AutoencoderKLLTXVideo``, by local path or hub id.

    vae = load_vae("out/vae/export")                     # reelforge's export folder
    vae = load_vae("/models/wan-vae", kind="wan")        # a diffusers folder (or hub id, when online)
    dist = vae.encode(video)                             # video (B, 3, T, H, W) in [-1, 1]
    z = vae.normalize(dist.mean)                         # what a DiT trains on
    video = vae.decode(vae.denormalize(z))

Contract: ``encode`` returns the posterior's ``mean`` and ``std`` (B, Z, T', H', W') with
T' = 1 + (T - 1) / temporal_compression, H' = H / spatial_compression; ``decode`` maps raw (not
normalized) latents back to (B, 3, T, H, W) in about [-1, 1]. ``normalize`` applies the VAE's latent
statistics (a scalar scale/shift, or per-channel mean/std for Wan and LTX-Video) so latents have about
unit variance.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass
class Posterior:
    mean: torch.Tensor   # (B, Z, T', H', W')
    std: torch.Tensor    # (B, Z, T', H', W')

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps


class VAEInterface:
    """What the encoder command and a DiT need from a video VAE."""

    name: str
    temporal_compression: int
    spatial_compression: int
    latent_channels: int
    latents_mean: torch.Tensor   # (Z,) or scalar: subtracted before scaling
    latents_scale: torch.Tensor  # (Z,) or scalar: multiplied after the shift (1/std)

    def encode(self, video: torch.Tensor) -> Posterior:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _stat(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        t = t.to(z.device, z.dtype)
        return t.view(1, -1, 1, 1, 1) if t.dim() == 1 else t

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self._stat(self.latents_mean, z)) * self._stat(self.latents_scale, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return z / self._stat(self.latents_scale, z) + self._stat(self.latents_mean, z)

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """(Z, T', H', W') for a clip of ``frames`` x ``height`` x ``width``."""
        if (frames - 1) % self.temporal_compression or height % self.spatial_compression or width % self.spatial_compression:
            raise ValueError(f"{self.name}: clips need 1 + {self.temporal_compression}k frames and sides divisible "
                             f"by {self.spatial_compression}, got {frames}x{height}x{width}")
        return (self.latent_channels, 1 + (frames - 1) // self.temporal_compression,
                height // self.spatial_compression, width // self.spatial_compression)

    def info(self) -> dict:
        """Recorded next to pre-extracted latents (shards/SPEC.md)."""
        def as_list(t):
            return t.flatten().tolist()
        return {"vae": self.name, "temporal_compression": self.temporal_compression,
                "spatial_compression": self.spatial_compression, "latent_channels": self.latent_channels,
                "latents_mean": as_list(self.latents_mean), "latents_scale": as_list(self.latents_scale)}


class ReelforgeVAE(VAEInterface):
    def __init__(self, model, name: str = "reelforge"):
        self.model, self.name = model, name
        cfg = model.cfg
        self.temporal_compression, self.spatial_compression = cfg.temporal_compression, cfg.spatial_compression
        self.latent_channels = cfg.latent_channels
        self.latents_mean = torch.tensor(cfg.shift_factor)
        self.latents_scale = torch.tensor(cfg.scaling_factor)

    def encode(self, video: torch.Tensor) -> Posterior:
        dist = self.model.encode(video)
        return Posterior(dist.mean, dist.std)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z)


class DiffusersVAE(VAEInterface):
    """``AutoencoderKLWan`` (4x8x8, 16 channels) or ``AutoencoderKLLTXVideo`` (8x32x32, 128 channels)."""

    def __init__(self, model, kind: str, name: str):
        self.model, self.kind, self.name = model, kind, name
        c = model.config
        if kind == "wan":
            self.temporal_compression = int(c.scale_factor_temporal or 4)
            self.spatial_compression = int(c.scale_factor_spatial or 8)
            self.latent_channels = int(c.z_dim)
            self.latents_mean = torch.tensor(c.latents_mean, dtype=torch.float32)
            self.latents_scale = 1.0 / torch.tensor(c.latents_std, dtype=torch.float32)
        else:
            self.temporal_compression = int(model.temporal_compression_ratio)
            self.spatial_compression = int(model.spatial_compression_ratio)
            self.latent_channels = int(c.latent_channels)
            # the LTX-Video pipeline: (z - mean) * scaling_factor / std
            self.latents_mean = model.latents_mean.detach().float().cpu()
            self.latents_scale = float(c.scaling_factor) / model.latents_std.detach().float().cpu()

    def encode(self, video: torch.Tensor) -> Posterior:
        dist = self.model.encode(video.to(self.model.dtype)).latent_dist
        return Posterior(dist.mean.float(), dist.std.float())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z.to(self.model.dtype)).sample.float()


DIFFUSERS_CLASSES = {"wan": "AutoencoderKLWan", "ltx": "AutoencoderKLLTXVideo"}


def detect_kind(path: str) -> str:
    """``reelforge``, ``wan`` or ``ltx`` from a local folder's config.json; hub ids need ``kind``."""
    config = Path(path) / "config.json"
    if not config.exists():
        raise ValueError(f"{path}: no config.json; give kind (reelforge, wan, ltx) for a hub id")
    name = json.loads(config.read_text()).get("_class_name", "")
    for kind, cls in {"reelforge": "ReelforgeVideoVAE", **DIFFUSERS_CLASSES}.items():
        if name == cls:
            return kind
    raise ValueError(f"{path}: config.json names {name!r}, not one of ReelforgeVideoVAE, "
                     f"{', '.join(DIFFUSERS_CLASSES.values())}")


def load_vae(path_or_id: str, kind: str = "auto", device: str | torch.device = "cpu",
             dtype: torch.dtype = torch.float32) -> VAEInterface:
    """A VAE by local folder or hub id, in eval mode on ``device``. ``kind``: auto (from the folder's
    config.json), reelforge, wan, ltx. Nothing is downloaded unless a hub id is given and the hub is
    reachable (set HF_HUB_OFFLINE=1 to forbid it)."""
    if kind == "auto":
        kind = detect_kind(path_or_id)
    if kind == "reelforge":
        from reelforge.train.vae.export import load_exported
        return ReelforgeVAE(load_exported(path_or_id).to(device=device, dtype=dtype).eval(), name=str(path_or_id))
    if kind not in DIFFUSERS_CLASSES:
        raise ValueError(f"unknown VAE kind {kind!r}: auto, reelforge, {', '.join(DIFFUSERS_CLASSES)}")
    import diffusers
    cls = getattr(diffusers, DIFFUSERS_CLASSES[kind])
    model = cls.from_pretrained(path_or_id, torch_dtype=dtype).to(device).eval()
    return DiffusersVAE(model, kind, name=str(path_or_id))
