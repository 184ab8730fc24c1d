"""The diffusion transformer over spacetime patches of VAE latents (DiT with adaLN-zero, text cross-attention).

Reads top to bottom: patchify → embedders → 3D RoPE → attention → block → final layer → the model →
FLOPs → presets. Single-device code; FSDP2, activation checkpointing and compile live in
train/parallelize.py (applied to ``model.blocks``), the flow-matching math in flow.py.

    cfg = DiTConfig.from_preset("DiT-S", in_channels=16, text_dim=4096)
    model = DiT(cfg)
    v = model(x, t, text, text_mask, fps=fps, size=size)   # x: (B, C, T, H, W) latents, t: (B,) in [0, 1]

Shape letters: B batch, C latent channels, T/H/W latent frames/rows/cols, N = T'·H'·W' patch tokens,
L text tokens, D hidden width, h heads, d head width.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class DiTConfig:
    in_channels: int = 4                 # latent channels of the VAE
    patch: list[int] = field(default_factory=lambda: [1, 2, 2])   # (pt, ph, pw) spacetime patch
    hidden: int = 384
    depth: int = 12
    heads: int = 6
    mlp_ratio: float = 4.0
    text_dim: int = 4096                 # width of the frozen text encoder's tokens
    qk_norm: bool = True                 # RMSNorm on q and k: keeps attention logits bounded in bf16
    rope_theta: float = 10000.0
    pooled_text: bool = True             # masked-mean text added to the adaLN vector (global attributes)
    default_fps: float = 24.0            # micro-conditioning used when a batch carries no fps / size
    default_size: list[int] = field(default_factory=lambda: [256, 256])   # (height, width) in pixels

    def __post_init__(self):
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"patch must be three positive ints (pt, ph, pw), got {self.patch}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        if (self.hidden // self.heads) % 2 or self.hidden // self.heads < 6:
            # RoPE rotates pairs, split into (t, h, w) parts
            raise ValueError(f"head width {self.hidden // self.heads} must be even and >= 6 for 3D RoPE")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "DiTConfig":
        if name not in DIT_PRESETS:
            raise ValueError(f"unknown DiT preset {name!r}; choose from {sorted(DIT_PRESETS)}")
        return cls(**{**DIT_PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------------------
# Spacetime patches
# ------------------------------------------------------------------------------------------------

def grid_of(shape: tuple[int, int, int], patch) -> tuple[int, int, int]:
    """Patch grid (T', H', W') of a latent (T, H, W); a ragged edge is padded up, never dropped."""
    return tuple(-(-s // p) for s, p in zip(shape, patch))


def patchify(x: Tensor, patch) -> Tensor:
    """(B, C, T, H, W) → (B, N, pt·ph·pw·C), tokens in (t, h, w) raster order. Pads T/H/W up to
    multiples of the patch with zeros (unpatchify crops them off again)."""
    pt, ph, pw = patch
    B, C, T, H, W = x.shape
    gt, gh, gw = grid_of((T, H, W), patch)
    x = F.pad(x, (0, gw * pw - W, 0, gh * ph - H, 0, gt * pt - T))
    x = x.reshape(B, C, gt, pt, gh, ph, gw, pw)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)                      # (B, T', H', W', pt, ph, pw, C)
    return x.reshape(B, gt * gh * gw, pt * ph * pw * C)


def unpatchify(x: Tensor, patch, shape: tuple[int, int, int], channels: int) -> Tensor:
    """Inverse of ``patchify``: (B, N, pt·ph·pw·C) → (B, C, T, H, W) for the original latent ``shape``."""
    pt, ph, pw = patch
    T, H, W = shape
    gt, gh, gw = grid_of(shape, patch)
    B = x.shape[0]
    x = x.reshape(B, gt, gh, gw, pt, ph, pw, channels)
    x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)                      # (B, C, T', pt, H', ph, W', pw)
    x = x.reshape(B, channels, gt * pt, gh * ph, gw * pw)
    return x[:, :, :T, :H, :W]


# ------------------------------------------------------------------------------------------------
# Embedding layers: timestep, micro-conditioning scalars, text
# ------------------------------------------------------------------------------------------------

def sinusoidal(x: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """(B,) float → (B, dim) [cos | sin] features (DiT/ADM)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device, dtype=torch.float32) / half)
    args = x.float()[:, None] * freqs[None]                    # (B, dim/2)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ScalarEmbedder(nn.Module):
    """A scalar per sample (timestep, fps, height, width) → (B, D) through sinusoids and an MLP."""

    def __init__(self, hidden: int, scale: float, freq_dim: int = 256):
        super().__init__()
        self.scale, self.freq_dim = scale, freq_dim            # scale maps the scalar to ~[0, 1000]
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))

    def forward(self, s: Tensor) -> Tensor:
        return self.mlp(sinusoidal(s * self.scale, self.freq_dim).to(self.mlp[0].weight.dtype))   # (B, D)


class TextProjection(nn.Module):
    """Frozen text-encoder tokens (B, L, text_dim) → the model width (B, L, D)."""

    def __init__(self, text_dim: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, hidden))

    def forward(self, y: Tensor) -> Tensor:
        return self.mlp(y)


# ------------------------------------------------------------------------------------------------
# 3D rotary position embedding: any T'×H'×W' grid, computed for the batch's own bucket
# ------------------------------------------------------------------------------------------------

def rope_3d(grid: tuple[int, int, int], head_dim: int, theta: float, device) -> tuple[Tensor, Tensor]:
    """cos, sin of shape (N, d/2) for tokens in (t, h, w) raster order. The head width is split into a
    time part and two equal space parts (Wan2.1's split: d - 4·(d//6), 2·(d//6), 2·(d//6)), so a bucket
    never seen in training still gets well-defined relative positions."""
    dh = 2 * (head_dim // 6)
    dims = (head_dim - 2 * dh, dh, dh)
    axes = [torch.arange(n, device=device, dtype=torch.float32) for n in grid]
    pos = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)   # (N, 3)
    angles = []
    for a, d in enumerate(dims):
        inv = theta ** (-torch.arange(0, d, 2, device=device, dtype=torch.float32) / d)   # (d_a/2,)
        angles.append(pos[:, a:a + 1] * inv[None])            # (N, d_a/2)
    angles = torch.cat(angles, dim=-1)                         # (N, d/2)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate consecutive pairs of x (B, h, N, d) by the per-token angles (N, d/2)."""
    x2 = x.float().reshape(*x.shape[:-1], -1, 2)               # (B, h, N, d/2, 2)
    x0, x1 = x2.unbind(-1)
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)


# ------------------------------------------------------------------------------------------------
# Attention (SDPA: flash / memory-efficient kernels on GPU, the math path on CPU)
# ------------------------------------------------------------------------------------------------

class Attention(nn.Module):
    """Self-attention over patch tokens (with RoPE) or cross-attention to text tokens (``context``)."""

    def __init__(self, dim: int, heads: int, qk_norm: bool, cross: bool = False):
        super().__init__()
        self.heads, self.head_dim, self.cross = heads, dim // heads, cross
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, mask: Tensor | None = None,
                rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        B, N, D = x.shape
        src = x if context is None else context
        q = self.q(x).view(B, N, self.heads, self.head_dim).transpose(1, 2)                 # (B, h, N, d)
        k, v = self.kv(src).view(B, src.shape[1], 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # (B, h, S, d)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        attn_mask = None if mask is None else mask[:, None, None, :]                          # (B, 1, 1, S)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)                 # (B, h, N, d)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))                                # (B, N, D)


# ------------------------------------------------------------------------------------------------
# Core block: adaLN-zero self-attention, cross-attention to text, adaLN-zero MLP
# ------------------------------------------------------------------------------------------------

def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """One unit for FSDP2 / checkpointing / compile. Freshly initialised it is the identity: the adaLN
    gates and the cross-attention output start at zero (initialize_weights)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, qk_norm: bool):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, qk_norm)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)             # not modulated: text conditions through attention
        self.cross = Attention(dim, heads, qk_norm, cross=True)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hid = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hid), nn.GELU(approximate="tanh"), nn.Linear(hid, dim))
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: Tensor, c: Tensor, text: Tensor, text_mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        # rope passed as two tensors (not a tuple) so checkpoint / compile see plain tensor arguments
        sh_a, sc_a, g_a, sh_m, sc_m, g_m = self.adaLN(c).chunk(6, dim=-1)                    # 6 × (B, D)
        x = x + g_a[:, None] * self.attn(modulate(self.norm1(x), sh_a, sc_a), rope=(cos, sin))  # (B, N, D)
        x = x + self.cross(self.norm2(x), context=text, mask=text_mask)                    # (B, N, D)
        x = x + g_m[:, None] * self.mlp(modulate(self.norm3(x), sh_m, sc_m))               # (B, N, D)
        return x


class FinalLayer(nn.Module):
    def __init__(self, dim: int, out: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))                           # (B, N, p·C)


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------

class DiT(nn.Module):
    """Predicts the flow velocity of latents x at time t given text tokens and (fps, size)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        D, p = cfg.hidden, cfg.patch
        patch_dim = p[0] * p[1] * p[2] * cfg.in_channels
        self.x_embed = nn.Linear(patch_dim, D)                # a Conv3d with stride = kernel, as a matmul
        self.t_embed = ScalarEmbedder(D, scale=1000.0)         # t ∈ [0, 1] → the DiT's 0..1000 range
        self.fps_embed = ScalarEmbedder(D, scale=10.0)         # fps ~ 8..60
        self.h_embed = ScalarEmbedder(D, scale=1.0)            # pixels
        self.w_embed = ScalarEmbedder(D, scale=1.0)
        self.text_proj = TextProjection(cfg.text_dim, D)
        self.pool_proj = nn.Linear(D, D) if cfg.pooled_text else None
        self.blocks = nn.ModuleList(DiTBlock(D, cfg.heads, cfg.mlp_ratio, cfg.qk_norm) for _ in range(cfg.depth))
        self.final = FinalLayer(D, patch_dim)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """All initialisation in one place: xavier linears, then the adaLN-zero and zero-output layers."""
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self.apply(_basic)
        for emb in (self.t_embed, self.fps_embed, self.h_embed, self.w_embed):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        for emb in (self.fps_embed, self.h_embed, self.w_embed):
            nn.init.zeros_(emb.mlp[2].weight)                  # micro-conditioning starts neutral
        if self.pool_proj is not None:
            nn.init.zeros_(self.pool_proj.weight)
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN[-1].weight)               # adaLN-zero: every gate starts at 0
            nn.init.zeros_(blk.adaLN[-1].bias)
            nn.init.zeros_(blk.cross.proj.weight)              # ungated cross-attention starts silent too
            nn.init.zeros_(blk.cross.proj.bias)
        nn.init.zeros_(self.final.adaLN[-1].weight)
        nn.init.zeros_(self.final.adaLN[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    def condition(self, t: Tensor, fps: Tensor | None, size: Tensor | None, text: Tensor | None,
                  text_mask: Tensor | None) -> Tensor:
        """The adaLN vector c (B, D): timestep + fps + pixel size (+ pooled projected text)."""
        B, cfg = t.shape[0], self.cfg
        if fps is None:
            fps = torch.full((B,), cfg.default_fps, device=t.device)
        if size is None:
            size = torch.tensor(cfg.default_size, device=t.device, dtype=torch.float32).expand(B, 2)
        c = self.t_embed(t) + self.fps_embed(fps.float()) + self.h_embed(size[:, 0].float()) + self.w_embed(size[:, 1].float())
        if self.pool_proj is not None and text is not None:
            w = text_mask.to(text.dtype)[..., None]                                          # (B, L, 1)
            pooled = (text * w).sum(1) / w.sum(1).clamp(min=1)                               # (B, D)
            c = c + self.pool_proj(pooled)
        return c                                                                             # (B, D)

    def forward(self, x: Tensor, t: Tensor, text: Tensor, text_mask: Tensor | None = None,
                fps: Tensor | None = None, size: Tensor | None = None) -> Tensor:
        """x (B, C, T, H, W) latents, t (B,) in [0, 1] (1 = pure noise), text (B, L, text_dim) frozen
        encoder tokens, text_mask (B, L) bool (True = real token), fps (B,), size (B, 2) pixel (h, w).
        Returns the predicted velocity, shaped like x."""
        B, C, T, H, W = x.shape
        grid = grid_of((T, H, W), self.cfg.patch)
        if text_mask is None:
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        # a row of only padding would make SDPA softmax over nothing (NaN): keep its first token
        text_mask = text_mask.clone()
        text_mask[:, 0] |= ~text_mask.any(dim=1)
        y = self.text_proj(text)                                                             # (B, L, D)
        c = self.condition(t, fps, size, y, text_mask)                                       # (B, D)
        h = self.x_embed(patchify(x, self.cfg.patch).to(self.x_embed.weight.dtype))         # (B, N, D)
        cos, sin = rope_3d(grid, self.cfg.hidden // self.cfg.heads, self.cfg.rope_theta, x.device)  # (N, d/2)
        for blk in self.blocks:
            h = blk(h, c, y, text_mask, cos, sin)                                            # (B, N, D)
        out = self.final(h, c)                                                               # (B, N, p·C)
        return unpatchify(out, self.cfg.patch, (T, H, W), C).to(x.dtype)                    # (B, C, T, H, W)


# ------------------------------------------------------------------------------------------------
# FLOPs (for MFU): matmul FLOPs only, as MFU is conventionally counted
# ------------------------------------------------------------------------------------------------

def flops_per_sample(cfg: DiTConfig, latent_shape: tuple[int, int, int], text_len: int) -> float:
    """Forward + backward FLOPs of one sample (3 × forward; 2 FLOPs per multiply-add)."""
    n = math.prod(grid_of(latent_shape, cfg.patch))
    D, L, hid = cfg.hidden, text_len, int(cfg.hidden * cfg.mlp_ratio)
    patch_dim = math.prod(cfg.patch) * cfg.in_channels
    per_block = (
        n * (4 * D * D)                # self-attention q, k, v, out
        + 2 * n * n * D                # q·kᵀ and attn·v
        + n * (2 * D * D) + L * (2 * D * D)   # cross q, out on tokens; k, v on text
        + 2 * n * L * D                # cross q·kᵀ and attn·v
        + n * (2 * D * hid)            # MLP
    )
    fwd = cfg.depth * per_block + n * 2 * D * patch_dim + L * (cfg.text_dim * D + D * D)
    return 3 * 2 * float(fwd)


# ------------------------------------------------------------------------------------------------
# Presets: the keys are also the config / CLI choices
# ------------------------------------------------------------------------------------------------

DIT_PRESETS = {
    "DiT-nano": dict(hidden=48, depth=2, heads=2),     # unit tests
    "DiT-T": dict(hidden=128, depth=4, heads=4),       # CPU demo (~1.6 M parameters in the blocks)
    "DiT-S": dict(hidden=384, depth=12, heads=6),
    "DiT-B": dict(hidden=768, depth=12, heads=12),
    "DiT-L": dict(hidden=1024, depth=24, heads=16),
    "DiT-XL": dict(hidden=1152, depth=28, heads=16),
}
