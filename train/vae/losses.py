"""The VAE's training objective: reconstruction (L1 and/or L2), KL to N(0, I), a perceptual distance
when its weights are given by path, and a hinge GAN loss from a 3D patch discriminator switched on
after a warm-up step (its weight optionally balanced VQGAN-style at the decoder's last layer).

Perceptual weights are never downloaded: ``perceptual_path`` names a TorchScript file whose module maps
two frame batches (N, 3, H, W) in [-1, 1] to a distance per frame, (N,) or (N, 1, 1, 1) — an
LPIPS network exported with ``torch.jit.script(lpips_net).save(path)`` fits this contract.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from reelforge.train.vae.discriminator import hinge_d_loss, hinge_g_loss


@dataclass
class VAELossConfig:
    l1_weight: float = 1.0
    l2_weight: float = 0.0
    kl_weight: float = 1e-6          # LDM's scale: KL summed over latents vs reconstruction summed over pixels
    perceptual_path: str = ""        # TorchScript distance net (LPIPS-style); "" = no perceptual loss
    perceptual_weight: float = 0.1
    perceptual_frames: int = 4       # frames per clip the perceptual net sees (it is 2D and costly)
    disc_start: int = -1             # optimizer step at which the GAN losses start; -1 = no discriminator
    disc_weight: float = 0.1
    adaptive_weight: bool = False    # scale the GAN term by |grad rec| / |grad gan| at the decoder's last layer
    sample_posterior: bool = True    # train the decoder on samples (else on the mean)

    def __post_init__(self):
        for key in ("l1_weight", "l2_weight", "kl_weight", "perceptual_weight", "disc_weight"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0")
        if self.l1_weight == 0 and self.l2_weight == 0:
            raise ValueError("give a reconstruction loss: l1_weight or l2_weight > 0")

    @property
    def use_disc(self) -> bool:
        return self.disc_start >= 0


def load_perceptual(path: str) -> nn.Module:
    """The perceptual distance net from a local TorchScript file, frozen."""
    try:
        net = torch.jit.load(path, map_location="cpu")
    except (RuntimeError, ValueError, FileNotFoundError) as exc:
        raise ValueError(f"perceptual_path {path!r} is not a loadable TorchScript file: {exc}") from exc
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def frames_of(video: torch.Tensor, count: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B * k, C, H, W): ``count`` frames spread evenly over the clip."""
    t = video.shape[2]
    idx = torch.linspace(0, t - 1, min(count, t)).round().long().to(video.device)
    return video.index_select(2, idx).transpose(1, 2).flatten(0, 1)


def reconstruction_loss(cfg: VAELossConfig, x: torch.Tensor, y: torch.Tensor, perceptual: nn.Module | None):
    """Per-pixel mean reconstruction loss (+ perceptual); returns (loss, scalars to log)."""
    logs = {}
    loss = x.new_zeros(())
    if cfg.l1_weight:
        l1 = (y - x).abs().mean()
        loss = loss + cfg.l1_weight * l1
        logs["l1"] = float(l1.detach())
    if cfg.l2_weight:
        l2 = (y - x).pow(2).mean()
        loss = loss + cfg.l2_weight * l2
        logs["l2"] = float(l2.detach())
    if perceptual is not None and cfg.perceptual_weight:
        d = perceptual(frames_of(y, cfg.perceptual_frames), frames_of(x, cfg.perceptual_frames)).mean()
        loss = loss + cfg.perceptual_weight * d
        logs["perceptual"] = float(d.detach())
    return loss, logs


def adaptive_gan_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor) -> torch.Tensor:
    """VQGAN's balance: ||d rec / d w_last|| / ||d gan / d w_last||, clamped, no gradient through it."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, 1e4).detach()


def vae_losses(cfg: VAELossConfig, model: nn.Module, x: torch.Tensor, step: int,
               perceptual: nn.Module | None) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """``model`` holds ``vae`` and (when the GAN is on) ``disc``. x: (B, 3, T, H, W) in [-1, 1].
    Returns the losses per optimizer key ("vae", and "disc" from ``disc_start`` on) and scalars."""
    recon, posterior = model.vae(x, sample=cfg.sample_posterior)                # (B, 3, T, H, W)
    rec, logs = reconstruction_loss(cfg, x, recon, perceptual)
    # LDM sums the reconstruction over pixels and the KL over latents; both are divided by the pixel
    # count here, so kl_weight keeps LDM's meaning while the reconstruction stays a per-pixel mean
    kl = posterior.kl().mean() / x[0].numel()
    loss = rec + cfg.kl_weight * kl
    logs["kl"] = float(kl.detach())
    losses = {"vae": loss}
    if cfg.use_disc and step >= cfg.disc_start:
        g = hinge_g_loss(model.disc(recon))
        weight = adaptive_gan_weight(rec, g, model.vae.last_layer) if cfg.adaptive_weight else 1.0
        losses["vae"] = loss + cfg.disc_weight * weight * g
        # the discriminator sees the reconstruction detached: its loss writes no VAE gradient
        losses["disc"] = hinge_d_loss(model.disc(x), model.disc(recon.detach()))
        logs["g_loss"], logs["d_loss"] = float(g.detach()), float(losses["disc"].detach())
    return losses, logs
