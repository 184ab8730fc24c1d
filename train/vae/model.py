"""The video VAE: a 3D causal convolutional encoder/decoder with a diagonal Gaussian posterior.

Causal in time: every temporal convolution sees only the current and earlier frames (left padding by
repeating the first frame), and the first frame is compressed alone, so an image is a one-frame video
and a clip of T = 1 + 4k frames has 1 + k latent frames (4x8x8 compression by default).

Because nothing looks ahead in time and the norms are per position (channel RMSNorm, not GroupNorm over
the clip), encoding frame 0 and then chunks of 4 frames, each convolution carrying the last frames of
its input as a cache, gives the whole-clip result (to float rounding): ``encode_chunked`` /
``decode_chunked`` trade time for memory on long clips. Large frames are cut into overlapping spatial
tiles whose results are blended linearly across the overlap (``tiled_encode`` / ``tiled_decode``),
which approximates the whole-frame result within a measured tolerance (tests/train/test_vae.py).

Layout everywhere: video (B, C, T, H, W) in [-1, 1]; latents (B, Z, 1 + (T-1)/4, H/8, W/8).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class VAEConfig:
    base_channels: int = 64
    channel_mult: list[int] = field(default_factory=lambda: [1, 2, 4, 4])  # one entry per level
    num_res_blocks: int = 2
    latent_channels: int = 4            # 4 (Open-Sora 1.2-like) or 16 (CogVideoX / Wan-like)
    temporal_down: list[bool] = field(default_factory=lambda: [False, True, True])  # per level transition
    spatial_down: list[bool] = field(default_factory=list)   # per level transition; [] = all True
    in_channels: int = 3
    patch_size: int = 1                  # pixels folded into channels first (LTX-Video style): cheap full-res
    scaling_factor: float = 1.0          # the DiT sees (z - shift_factor) * scaling_factor
    shift_factor: float = 0.0

    def __post_init__(self):
        if not self.spatial_down:
            self.spatial_down = [True] * (len(self.channel_mult) - 1)
        for key in ("temporal_down", "spatial_down"):
            if len(getattr(self, key)) != len(self.channel_mult) - 1:
                raise ValueError(f"{key} needs {len(self.channel_mult) - 1} entries (one per level transition), "
                                 f"got {len(getattr(self, key))}")
        if min(self.latent_channels, self.base_channels, self.num_res_blocks, self.patch_size) < 1:
            raise ValueError("latent_channels, base_channels, num_res_blocks and patch_size must be >= 1")

    @property
    def spatial_compression(self) -> int:
        return self.patch_size * 2 ** sum(self.spatial_down)

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_down)


# Presets: keys are the config's `vae.preset` choices. tiny: CPU tests and demos; S/B: real training.
VAE_PRESETS = {
    "tiny": lambda: VAEConfig(base_channels=32, channel_mult=[1, 2, 2], num_res_blocks=1, latent_channels=4,
                              temporal_down=[True, True], spatial_down=[True, False], patch_size=4),
    "S": lambda: VAEConfig(base_channels=64, channel_mult=[1, 2, 4, 4], num_res_blocks=2, latent_channels=4),
    "B": lambda: VAEConfig(base_channels=128, channel_mult=[1, 2, 4, 4], num_res_blocks=2, latent_channels=16),
}


# ----------------------------------------------------------------------------------------------------
# Causal building blocks (each holds its own streaming cache for chunked encode/decode)
# ----------------------------------------------------------------------------------------------------

class Streaming(nn.Module):
    """A module that can run over a clip in temporal chunks: ``streaming`` on, state kept between calls."""

    streaming: bool = False

    def reset_stream(self) -> None:
        pass


class CausalConv3d(Streaming):
    """Conv3d padded on the left in time only (first frame repeated), symmetric in space."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int, int] = (3, 3, 3),
                 stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.time_pad = kernel[0] - 1
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride, padding=(0, kernel[1] // 2, kernel[2] // 2))
        self.cache: torch.Tensor | None = None

    def reset_stream(self) -> None:
        self.cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C', T, H', W')
        if self.time_pad:
            if self.streaming and self.cache is not None:
                x = torch.cat([self.cache, x], dim=2)                             # (B, C, pad + T, H, W)
            else:
                x = torch.cat([x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1), x], dim=2)
            if self.streaming:
                self.cache = x[:, :, -self.time_pad:].detach()
        return self.conv(x)


class RMSNorm(nn.Module):
    """Per-position channel RMS norm: no statistic spans time or space, so chunks and tiles see the
    same normalisation as the whole clip."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, 1, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W)
        rms = x.float().pow(2).mean(dim=1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * rms).type_as(x) * self.weight


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1, self.conv1 = RMSNorm(cin), CausalConv3d(cin, cout)
        self.norm2, self.conv2 = RMSNorm(cout), CausalConv3d(cout, cout)
        self.skip = nn.Conv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, cin, T, H, W) -> (B, cout, T, H, W)
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C p^2, T, H/p, W/p)
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.reshape(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def unpatchify(x: torch.Tensor, p: int) -> torch.Tensor:  # (B, C p^2, T, h, w) -> (B, C, T, h p, w p)
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.reshape(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c, t, h * p, w * p)


class Downsample(Streaming):
    """2x in space (strided conv) unless ``spatial`` is off; optionally 2x in time, the first frame of
    the clip kept alone: T = 1 + 2m -> 1 + m (a chunk after the first: 2m -> m)."""

    def __init__(self, channels: int, temporal: bool, spatial: bool = True):
        super().__init__()
        self.temporal = temporal
        s = 2 if spatial else 1
        self.spatial = nn.Conv3d(channels, channels, (1, 3, 3), stride=(1, s, s), padding=(0, 1, 1))
        self.time_conv = CausalConv3d(channels, channels, (3, 1, 1)) if temporal else None
        self.seen = False

    def reset_stream(self) -> None:
        self.seen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C, T', H/s, W/s)
        x = self.spatial(x)
        if not self.temporal:
            return x
        x = self.time_conv(x)
        head, rest = (x[:, :, :0], x) if (self.streaming and self.seen) else (x[:, :, :1], x[:, :, 1:])
        if self.streaming:
            self.seen = True
        if rest.shape[2] % 2:
            raise ValueError(f"temporal downsampling needs an even number of frames after the first, got {rest.shape[2]}")
        b, c, t, h, w = rest.shape
        rest = rest.reshape(b, c, t // 2, 2, h, w).mean(dim=3)                    # (B, C, t/2, H, W)
        return torch.cat([head, rest], dim=2)


class Upsample(Streaming):
    """The inverse: 2x in space (nearest + conv) unless ``spatial`` is off; optionally 2x in time, the
    first frame kept single: 1 + m -> 1 + 2m (a chunk after the first: m -> 2m)."""

    def __init__(self, channels: int, temporal: bool, spatial: bool = True):
        super().__init__()
        self.temporal, self.spatial = temporal, spatial
        self.time_conv = CausalConv3d(channels, channels, (3, 1, 1)) if temporal else None
        self.conv = CausalConv3d(channels, channels, (1, 3, 3))
        self.seen = False

    def reset_stream(self) -> None:
        self.seen = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> (B, C, T', 2H, 2W)
        if self.temporal:
            x = self.time_conv(x)
            head, rest = (x[:, :, :0], x) if (self.streaming and self.seen) else (x[:, :, :1], x[:, :, 1:])
            if self.streaming:
                self.seen = True
            x = torch.cat([head, rest.repeat_interleave(2, dim=2)], dim=2)
        if self.spatial:
            b, c, t, h, w = x.shape
            x = F.interpolate(x.reshape(b, c * t, h, w), scale_factor=2, mode="nearest").reshape(b, c, t, 2 * h, 2 * w)
        return self.conv(x)


# ----------------------------------------------------------------------------------------------------
# Encoder, decoder, posterior
# ----------------------------------------------------------------------------------------------------

class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult]
        self.patch = cfg.patch_size
        self.conv_in = CausalConv3d(cfg.in_channels * self.patch ** 2, chs[0])
        self.levels = nn.ModuleList()
        cin = chs[0]
        for i, ch in enumerate(chs):
            blocks = [ResBlock(cin if j == 0 else ch, ch) for j in range(cfg.num_res_blocks)]
            if i < len(chs) - 1:
                blocks.append(Downsample(ch, cfg.temporal_down[i], cfg.spatial_down[i]))
            self.levels.append(nn.Sequential(*blocks))
            cin = ch
        self.mid = ResBlock(chs[-1], chs[-1])
        self.norm_out = RMSNorm(chs[-1])
        self.conv_out = CausalConv3d(chs[-1], 2 * cfg.latent_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, 2Z, T/4', H/8, W/8)
        x = patchify(x, self.patch)                       # (B, 3p^2, T, H/p, W/p)
        h = self.conv_in(x)                               # (B, c0, T, H/p, W/p)
        for level in self.levels:
            h = level(h)                                  # ... (B, c_last, 1 + (T-1)/4, H/8, W/8)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, 2Z, T', H', W'): mean and log-variance


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        chs = [cfg.base_channels * m for m in cfg.channel_mult][::-1]
        ups, sups = cfg.temporal_down[::-1], cfg.spatial_down[::-1]
        self.conv_in = CausalConv3d(cfg.latent_channels, chs[0])
        self.mid = ResBlock(chs[0], chs[0])
        self.levels = nn.ModuleList()
        cin = chs[0]
        for i, ch in enumerate(chs):
            blocks = [ResBlock(cin if j == 0 else ch, ch) for j in range(cfg.num_res_blocks)]
            if i < len(chs) - 1:
                blocks.append(Upsample(ch, ups[i], sups[i]))
            self.levels.append(nn.Sequential(*blocks))
            cin = ch
        self.norm_out = RMSNorm(chs[-1])
        self.patch = cfg.patch_size
        self.conv_out = CausalConv3d(chs[-1], cfg.in_channels * self.patch ** 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z, T', H', W') -> (B, 3, T, H, W)
        h = self.mid(self.conv_in(z))                     # (B, c_top, T', H', W')
        for level in self.levels:
            h = level(h)                                  # ... (B, c0, 1 + 4(T'-1), 8H'/p, 8W'/p)
        return unpatchify(self.conv_out(F.silu(self.norm_out(h))), self.patch)  # (B, 3, T, 8H', 8W')


class DiagonalGaussian:
    """The posterior q(z|x) = N(mean, diag(std^2)); log-variance clamped as in LDM for stability."""

    def __init__(self, moments: torch.Tensor):  # (B, 2Z, T', H', W')
        self.mean, logvar = moments.float().chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def kl(self) -> torch.Tensor:
        """KL to N(0, I) per sample, summed over latent elements: (B,)."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


# ----------------------------------------------------------------------------------------------------
# The VAE
# ----------------------------------------------------------------------------------------------------

class VideoVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output weight (the GAN's adaptive weight balances gradients at it)."""
        return self.decoder.conv_out.conv.weight

    def check_input(self, x: torch.Tensor) -> None:
        tc, sc = self.cfg.temporal_compression, self.cfg.spatial_compression
        if x.dim() != 5 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"expected video (B, {self.cfg.in_channels}, T, H, W), got {tuple(x.shape)}")
        t, h, w = x.shape[2:]
        if (t - 1) % tc or h % sc or w % sc:
            raise ValueError(f"T must be 1 + {tc}k and H, W multiples of {sc}; got T={t}, H={h}, W={w}")

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:  # (B, 3, T, H, W) -> q(z|x)
        self.check_input(x)
        return DiagonalGaussian(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, Z, T', H', W') -> (B, 3, T, H, W)
        return self.decoder(z)

    def forward(self, x: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, DiagonalGaussian]:
        posterior = self.encode(x)
        z = posterior.sample() if sample else posterior.mean
        return self.decode(z), posterior

    # --- chunked and tiled -----------------------------------------------------------------------------
    def _stream(self, module: nn.Module, on: bool) -> None:
        for m in module.modules():
            if isinstance(m, Streaming):
                m.streaming = on
                m.reset_stream()

    def encode_chunked(self, x: torch.Tensor, chunk_latents: int = 1) -> torch.Tensor:
        """Moments (B, 2Z, T', H', W') computed frame 0 first, then ``chunk_latents`` latent frames
        (4 video frames each) at a time with causal caches: equal to ``encoder(x)`` up to rounding."""
        self.check_input(x)
        tc = self.cfg.temporal_compression
        bounds = [0, 1] + list(range(1 + tc * chunk_latents, x.shape[2], tc * chunk_latents)) + [x.shape[2]]
        bounds = sorted(set(bounds))
        self._stream(self.encoder, True)
        try:
            return torch.cat([self.encoder(x[:, :, a:b]) for a, b in zip(bounds, bounds[1:])], dim=2)
        finally:
            self._stream(self.encoder, False)

    def decode_chunked(self, z: torch.Tensor, chunk_latents: int = 1) -> torch.Tensor:
        """``decode(z)`` one latent chunk at a time (first latent frame -> the first video frame)."""
        bounds = sorted(set([0, 1] + list(range(1, z.shape[2], chunk_latents)) + [z.shape[2]]))
        self._stream(self.decoder, True)
        try:
            return torch.cat([self.decoder(z[:, :, a:b]) for a, b in zip(bounds, bounds[1:])], dim=2)
        finally:
            self._stream(self.decoder, False)

    def tiled_encode(self, x: torch.Tensor, tile: int = 256, overlap: int = 128, chunk_latents: int = 4,
                     blend: int | None = None) -> torch.Tensor:
        """Moments of a large clip from overlapping ``tile``-pixel tiles (each encoded chunked), blended
        over ``blend`` latent pixels in the middle of each overlap (``_tiled``)."""
        s = self.cfg.spatial_compression
        return _tiled(lambda t: self.encode_chunked(t, chunk_latents), x, tile, overlap, 1.0 / s, blend)

    def tiled_decode(self, z: torch.Tensor, tile: int = 32, overlap: int = 16, chunk_latents: int = 4,
                     blend: int | None = None) -> torch.Tensor:
        """A large clip from overlapping ``tile``-latent-pixel tiles of z (each decoded chunked), blended
        over ``blend`` video pixels in the middle of each overlap."""
        s = self.cfg.spatial_compression
        return _tiled(lambda t: self.decode_chunked(t, chunk_latents), z, tile, overlap, float(s), blend)

    def config_dict(self) -> dict:
        return {"_class_name": "ReelforgeVideoVAE", **asdict(self.cfg)}


def _ramp(n: int, overlap: int, blend: int, left: bool, right: bool, device) -> torch.Tensor:
    """1-D tile weights. Where a neighbour overlaps, the outer ``(overlap - blend) / 2`` pixels get weight
    0 (a tile's border pixels saw zero padding instead of the neighbour's content) and the central
    ``blend`` pixels of the overlap ramp linearly from one tile to the other (no visible seam)."""
    w = torch.ones(n, device=device)
    margin = (overlap - blend) // 2
    ramp = torch.arange(1, blend + 1, device=device, dtype=torch.float32) / (blend + 1)
    if left and overlap:
        w[:margin] = 0
        w[margin:margin + blend] = ramp
    if right and overlap:
        w[n - margin:] = 0
        w[n - margin - blend:n - margin] = torch.minimum(w[n - margin - blend:n - margin], ramp.flip(0))
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, size - tile, step)) + [size - tile]
    return sorted(set(starts))


def _tiled(fn, x: torch.Tensor, tile: int, overlap: int, scale: float, blend: int | None = None) -> torch.Tensor:
    """Run ``fn`` on overlapping spatial tiles of x (B, C, T, H, W) and blend; ``scale`` maps input
    pixels to output pixels (1/8 for encode, 8 for decode). The result equals the whole-frame one
    wherever ``(overlap - blend) / 2`` output pixels cover the network's receptive field radius; with
    less, tile borders are approximations (a trained VAE's effective receptive field is small).
    ``blend`` (output pixels) defaults to half the overlap."""
    if overlap >= tile:
        raise ValueError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    H, W = x.shape[-2:]
    out = weight = None
    ys, xs = _starts(H, tile, overlap), _starts(W, tile, overlap)
    for y0 in ys:
        for x0 in xs:
            part = fn(x[..., y0:y0 + tile, x0:x0 + tile])                       # (B, C', T', h', w')
            if out is None:
                out = x.new_zeros(*part.shape[:3], int(H * scale), int(W * scale), dtype=part.dtype)
                weight = x.new_zeros(int(H * scale), int(W * scale), dtype=part.dtype)
            h, w = part.shape[-2:]
            oy, ox, ov = int(y0 * scale), int(x0 * scale), int(overlap * scale)
            bl = ov // 2 if blend is None else min(blend, ov)
            wy = _ramp(h, ov, bl, y0 > 0, y0 != ys[-1], x.device)
            wx = _ramp(w, ov, bl, x0 > 0, x0 != xs[-1], x.device)
            mask = (wy[:, None] * wx[None, :]).to(part.dtype)                  # (h', w')
            out[..., oy:oy + h, ox:ox + w] += part * mask
            weight[oy:oy + h, ox:ox + w] += mask
    return out / weight
