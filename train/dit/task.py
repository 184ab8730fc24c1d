"""The DiT as a ``TrainTask`` of the shared trainer: text-to-video flow matching on latent shards.

    reelforge train dit configs/train/dit/tiny.yaml --set trainer.steps=200

``DiTTrainConfig`` is the whole command's config (YAML under configs/train/dit/). The task reads latent
shards (data.py), takes text tokens from the shards or encodes captions on the fly, drops captions to
the empty one at ``data.caption_dropout`` (what classifier-free guidance needs), and evaluates the flow
loss at fixed timesteps on held-out shards plus sample videos for ``eval.prompts``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from reelforge.cluster import RayConfig
from reelforge.train.dit.data import (EncodedDatasetLatents, LatentDataConfig, LatentShardDataset,
                                     text_member)
from reelforge.train.dit.flow import FlowConfig, flow_loss, sample_t, validation_loss
from reelforge.train.dit.model import DiT, DiTConfig, flops_per_sample, grid_of
from reelforge.train.dit.sample import SamplerConfig
from reelforge.train.dit.text import TextEncoder, TextEncoderConfig
from reelforge.train.launch import LaunchConfig
from reelforge.train.task import TrainTask
from reelforge.train.trainer import TrainerConfig


@dataclass
class DiTModelSection:
    preset: str = "DiT-S"
    patch: list[int] = field(default_factory=lambda: [1, 2, 2])
    mlp_ratio: float = 4.0
    qk_norm: bool = True
    pooled_text: bool = True


@dataclass
class DiTEvalConfig:
    prompts: list[str] = field(default_factory=list)   # sampled into videos at each evaluation
    seed: int = 0
    val_batches: int = 4                                # held-out batches for the validation loss
    fps: float = 8.0


@dataclass
class DiTTrainConfig:
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    model: DiTModelSection = field(default_factory=DiTModelSection)
    flow: FlowConfig = field(default_factory=FlowConfig)
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    data: LatentDataConfig = field(default_factory=LatentDataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eval: DiTEvalConfig = field(default_factory=DiTEvalConfig)
    codec: str = "pixel:4"           # how the latents were made (decodes eval videos); see codec.py
    out_dir: str = "out/dit"         # the run: checkpoints/, metrics.jsonl, eval/, export/
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def null_text_path(latent_dir: str | Path, version: str = "") -> Path:
    """The empty caption's tokens beside the shards, written with the text embeddings."""
    return Path(latent_dir) / f"null_{text_member(version)}"


class DiTTask(TrainTask):
    name = "dit"

    def __init__(self, cfg: DiTTrainConfig):
        self.cfg = cfg
        self._encoder: TextEncoder | None = None
        self._null: tuple[Tensor, Tensor] | None = None
        self._probe = self.reader(cfg.data.path, 0, 1, 0)
        if isinstance(self._probe, EncodedDatasetLatents):
            self.latent_shape = self._probe.latent_shape
        else:
            self.latent_shape = tuple(self._probe.samples[0]["meta"]["latent_shape"])   # (C, T, H, W), first bucket
        self.text_dim = self._text_dim()
        self._t_last: float | None = None
        self.rank, self.world_size = 0, 1

    def reader(self, path: str, rank: int, world_size: int, seed: int):
        d = self.cfg.data
        cls = EncodedDatasetLatents if d.source == "dataset" else LatentShardDataset
        return cls(path, d.batch_size, rank, world_size, seed, d.caption_version)

    # --- text -------------------------------------------------------------------------------------
    def encoder(self) -> TextEncoder:
        if self._encoder is None:
            self._encoder = TextEncoder(self.cfg.text)
        return self._encoder

    def _text_dim(self) -> int:
        if self._probe.has_text:
            return int(self._probe.load(self._probe.samples[:1])["text"].shape[-1])
        return self.encoder().dim

    def null_text(self) -> tuple[Tensor, Tensor]:
        """(1, L0, E), (1, L0): from the shards' folder when written there, else from the encoder."""
        if self._null is None:
            path = null_text_path(self.cfg.data.path, self.cfg.data.caption_version)
            if path.exists():
                t = torch.from_numpy(np.load(path).astype(np.float32))
                self._null = (t[None], torch.ones(1, t.shape[0], dtype=torch.bool))
            else:
                self._null = self.encoder().empty()
        return self._null

    def text_of(self, batch: dict, device) -> tuple[Tensor, Tensor]:
        if "text" in batch:
            return batch["text"], batch["text_mask"]
        text, mask = self.encoder().encode(batch["caption"])
        return text.to(device), mask.to(device)

    def drop_captions(self, text: Tensor, mask: Tensor, p: float) -> tuple[Tensor, Tensor]:
        """Replace a random ``p`` share of the rows by the empty caption (torch RNG: restored on resume)."""
        if p <= 0:
            return text, mask
        drop = torch.rand(text.shape[0]) < p
        if not drop.any():
            return text, mask
        # on the device: a round trip through the host would stall the step (measured on an H200)
        null, null_mask = self.null_text()
        L = max(text.shape[1], null.shape[1])
        text, mask = _pad_to(text, mask, L)
        null, null_mask = _pad_to(null.to(text.device, text.dtype), null_mask.to(text.device), L)
        drop = drop.to(text.device)
        return torch.where(drop[:, None, None], null, text), torch.where(drop[:, None], null_mask, mask)

    # --- the TrainTask contract ---------------------------------------------------------------------
    def model_config(self) -> DiTConfig:
        m = self.cfg.model
        return DiTConfig.from_preset(m.preset, in_channels=self.latent_shape[0], text_dim=self.text_dim,
                                     patch=list(m.patch), mlp_ratio=m.mlp_ratio, qk_norm=m.qk_norm,
                                     pooled_text=m.pooled_text, default_fps=self.cfg.eval.fps)

    def build_model(self) -> nn.Module:
        return DiT(self.model_config())

    def param_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        return {"model": [p for p in model.parameters() if p.requires_grad]}

    def build_loader(self, rank: int, world_size: int, seed: int) -> LatentShardDataset:
        self.rank, self.world_size = rank, world_size
        return self.reader(self.cfg.data.path, rank, world_size, seed)

    def losses(self, model: nn.Module, batch: dict, step: int) -> tuple[dict[str, Tensor], dict[str, float]]:
        x0 = batch["latent"]                                                              # (B, C, T, H, W)
        text, mask = self.text_of(batch, x0.device)
        text, mask = self.drop_captions(text, mask, self.cfg.data.caption_dropout)
        n_tokens = math.prod(grid_of(tuple(x0.shape[2:]), self.cfg.model.patch))
        t = sample_t(self.cfg.flow, x0.shape[0], n_tokens, device=x0.device)
        noise = torch.randn_like(x0)
        fps, size = batch.get("fps"), batch.get("size")
        loss, _ = flow_loss(lambda xt, tt: model(xt, tt, text, mask, fps=fps, size=size), x0, t, noise)
        logs = {"t_mean": t.mean().detach(), "tokens_per_sample": float(n_tokens)}
        # tokens/s over the interval since the previous micro-batch of this rank (includes the optimizer
        # step), scaled to all ranks: the trainer logs samples/s and MFU, tokens/s is the DiT's own unit
        now = time.perf_counter()
        if self._t_last is not None:
            logs["tokens_per_s"] = n_tokens * x0.shape[0] * self.world_size / (now - self._t_last)
        self._t_last = now
        return {"model": loss}, logs

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        return list(model.blocks)

    def flops_per_sample(self, batch: dict) -> float | None:
        text_len = batch["text"].shape[1] if "text" in batch else self.cfg.text.max_length
        return flops_per_sample(self.model_config(), tuple(batch["latent"].shape[2:]), text_len)

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        metrics: dict[str, float] = {}
        device = next(model.parameters()).device
        if self.cfg.data.val_path:
            val = self.reader(self.cfg.data.val_path, 0, 1, 0)
            sums: dict[str, float] = {}
            n = 0
            for i, batch in zip(range(self.cfg.eval.val_batches), val):
                x0 = batch["latent"].to(device)
                text, mask = self.text_of(batch, device)
                text, mask = text.to(device), mask.to(device)
                fps, size = batch["fps"].to(device), batch["size"].to(device)
                vel = lambda xt, tt: model(xt, tt, text, mask, fps=fps, size=size)       # noqa: E731
                for k, v in validation_loss(vel, x0, self.cfg.flow.val_timesteps, seed=i).items():
                    sums[k] = sums.get(k, 0.0) + v
                n += 1
            metrics.update({k: v / max(1, n) for k, v in sums.items()})
        if self.cfg.eval.prompts and self.cfg.text.name:
            from reelforge.train.dit.generate import generate_videos, write_mp4

            videos = generate_videos(model, self.encoder(), self.cfg.codec, self.cfg.eval.prompts,
                                     self.latent_shape[1:], self.cfg.sampler, self.cfg.flow,
                                     seed=self.cfg.eval.seed, fps=self.cfg.eval.fps)
            folder = Path(out_dir) / f"step_{step:08d}"
            for i, v in enumerate(videos):
                write_mp4(v, folder / f"prompt_{i:02d}.mp4", self.cfg.eval.fps)
        return metrics

    def export(self, model: nn.Module, out_dir: Path) -> None:
        export_dit(model, self.cfg, self.latent_shape, out_dir)


def export_dit(model: nn.Module, cfg: DiTTrainConfig, latent_shape, out_dir: str | Path) -> Path:
    """``model.safetensors`` + ``dit.json``: the model config and what generation needs (text encoder,
    codec, default latent shape, flow and sampler settings)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()},
              str(out / "model.safetensors"))
    meta = {"model": model.cfg.to_dict(), "text": asdict(cfg.text), "codec": cfg.codec,
            "latent_shape": list(latent_shape), "flow": asdict(cfg.flow), "sampler": asdict(cfg.sampler),
            "fps": cfg.eval.fps, "caption_version": cfg.data.caption_version}
    (out / "dit.json").write_text(json.dumps(meta, indent=1) + "\n")
    return out


def load_dit(path: str | Path, device="cpu") -> tuple[DiT, dict]:
    """The exported model in eval mode and its ``dit.json`` dict; ``path`` is the export folder."""
    from safetensors.torch import load_file

    path = Path(path)
    if (path / "export").is_dir() and not (path / "dit.json").exists():
        path = path / "export"
    if not (path / "dit.json").exists():
        raise FileNotFoundError(f"{path} holds no exported DiT (dit.json + model.safetensors)")
    meta = json.loads((path / "dit.json").read_text())
    model = DiT(DiTConfig(**meta["model"]))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.to(device).eval(), meta


def _pad_to(tokens: Tensor, mask: Tensor, length: int) -> tuple[Tensor, Tensor]:
    """(B, L, E), (B, L) zero-padded on the right to ``length`` tokens (masks are prefixes)."""
    extra = length - tokens.shape[1]
    if extra <= 0:
        return tokens, mask
    return (torch.nn.functional.pad(tokens, (0, 0, 0, extra)),
            torch.nn.functional.pad(mask, (0, extra), value=False))
