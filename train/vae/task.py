"""The VAE as a trainer task, and the one config of ``reelforge train vae``.

    VAETrainConfig
      out_dir   the run folder
      trainer   TrainerConfig        (train/trainer.py)
      vae       VAESection           preset + overrides (train/vae/model.py VAE_PRESETS)
      loss      VAELossConfig        (train/vae/losses.py)
      disc      DiscriminatorConfig  (train/vae/discriminator.py; used when loss.disc_start >= 0)
      data      VAEDataConfig        training shards, held-out clips for evaluation
      launch    LaunchConfig         (train/launch.py: Ray Train workers)
      ray       RayConfig            (reelforge/cluster.py)

Training batches come from the indexed shard reader as float video in [-1, 1], (B, T, C, H, W), and
are transposed to the VAE's (B, C, T, H, W). Bucket shapes must suit the VAE (T = 1 + 4k, sides
divisible by 8); 1-frame buckets train the same model on images.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from reelforge.cluster import RayConfig
from reelforge.shards.buckets import BucketConfig, BucketTable
from reelforge.train.launch import LaunchConfig
from reelforge.train.task import TrainTask
from reelforge.train.trainer import TrainerConfig
from reelforge.train.vae.discriminator import DiscriminatorConfig, PatchDiscriminator3D
from reelforge.train.vae.losses import VAELossConfig, load_perceptual, vae_losses
from reelforge.train.vae.model import VAE_PRESETS, VAEConfig, VideoVAE


@dataclass
class VAESection:
    preset: str = "tiny"              # a VAE_PRESETS key
    latent_channels: int = 0          # 0: the preset's
    scaling_factor: float = 1.0       # recorded in the export for the DiT (z - shift) * scale
    shift_factor: float = 0.0

    def __post_init__(self):
        if self.preset not in VAE_PRESETS:
            raise ValueError(f"preset must be one of {sorted(VAE_PRESETS)}, got {self.preset!r}")

    def build(self) -> VAEConfig:
        cfg = VAE_PRESETS[self.preset]()
        changes = {"scaling_factor": self.scaling_factor, "shift_factor": self.shift_factor}
        if self.latent_channels:
            changes["latent_channels"] = self.latent_channels
        return dataclasses.replace(cfg, **changes)


@dataclass
class VAEDataConfig:
    dataset: str = ""                        # dataset folder (index.parquet + shards/) or its index
    where: str | None = None                 # training subset, e.g. "clip_id >= '4'"
    buckets: BucketTable | None = None       # None: the index's table
    num_workers: int = 2                     # DataLoader workers per rank
    eval_dataset: str = ""                   # held-out clips: another dataset ("" = the training one) ...
    eval_where: str | None = None            # ... and/or a filter, e.g. "clip_id < '4'"
    eval_clips: int = 8
    eval_frames: int = 17                    # every held-out clip at this fixed shape
    eval_height: int = 128
    eval_width: int = 128
    eval_videos: int = 2                     # side-by-side mp4s written per evaluation

    def __post_init__(self):
        if self.num_workers < 0 or self.eval_clips < 0 or self.eval_videos < 0:
            raise ValueError("num_workers, eval_clips and eval_videos must be >= 0")


@dataclass
class VAETrainConfig:
    out_dir: str = "out/vae"                 # run folder: config, metrics, tb/, eval/, checkpoints, export/
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    vae: VAESection = field(default_factory=VAESection)
    loss: VAELossConfig = field(default_factory=VAELossConfig)
    disc: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: VAEDataConfig = field(default_factory=VAEDataConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    ray: RayConfig = field(default_factory=RayConfig)


class VAEWithDisc(nn.Module):
    """The trained modules: ``vae`` and, when the GAN is configured, ``disc``."""

    def __init__(self, vae: VideoVAE, disc: nn.Module | None):
        super().__init__()
        self.vae = vae
        self.disc = disc

    def forward(self, x: torch.Tensor):
        return self.vae(x)


class VAETask(TrainTask):
    name = "vae"

    def __init__(self, cfg: VAETrainConfig):
        self.cfg = cfg
        self.vae_cfg = cfg.vae.build()
        self.perceptual = load_perceptual(cfg.loss.perceptual_path) if cfg.loss.perceptual_path else None
        self._eval_clips: list[torch.Tensor] | None = None
        self._flops: dict[tuple, float] = {}

    def build_model(self) -> nn.Module:
        disc = PatchDiscriminator3D(self.cfg.disc) if self.cfg.loss.use_disc else None
        return VAEWithDisc(VideoVAE(self.vae_cfg), disc)

    def param_groups(self, model):
        groups = {"vae": list(model.vae.parameters())}
        if model.disc is not None:
            groups["disc"] = list(model.disc.parameters())
        return groups

    def build_loader(self, rank, world_size, seed):
        from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset
        if not self.cfg.data.dataset:
            raise ValueError("data.dataset is required: a dataset folder with index.parquet and shards/")
        reader = ReaderConfig(buckets=self.cfg.data.buckets, where=self.cfg.data.where, dtype="float")
        ds = VideoShardDataset(self.cfg.data.dataset, reader, rank, world_size, seed)
        for b in ds._by_bucket:
            bucket = ds.buckets[b]
            self._check_shape(bucket.num_frames, bucket.height, bucket.width, f"bucket {b}")
        return ShardLoader(ds, num_workers=self.cfg.data.num_workers)

    def _check_shape(self, t: int, h: int, w: int, what: str) -> None:
        tc, sc = self.vae_cfg.temporal_compression, self.vae_cfg.spatial_compression
        if (t - 1) % tc or h % sc or w % sc:
            raise ValueError(f"{what} ({t}x{h}x{w}) does not suit the VAE: T must be 1 + {tc}k, H and W multiples of {sc}")

    def losses(self, model, batch, step):
        x = batch["video"].transpose(1, 2)                                      # (B, C, T, H, W)
        return vae_losses(self.cfg.loss, model, x, step, self.perceptual)

    def blocks(self, model):
        # resolution levels: FSDP units, activation-checkpointing and compile granularity
        return list(model.vae.encoder.levels) + list(model.vae.decoder.levels)

    def flops_per_sample(self, batch) -> float | None:
        """Forward + backward FLOPs of the VAE (x3 the forward, counted once per shape on the meta device)."""
        shape = tuple(batch["video"].shape[1:])
        if shape not in self._flops:
            from torch.utils.flop_counter import FlopCounterMode
            with torch.device("meta"):
                vae = VideoVAE(self.vae_cfg)
                x = torch.empty(1, shape[1], shape[0], shape[2], shape[3])
            counter = FlopCounterMode(display=False)
            with counter:
                vae(x)
            self._flops[shape] = 3.0 * counter.get_total_flops()
        return self._flops[shape]

    def eval_clips(self) -> list[torch.Tensor]:
        """The held-out clips (C, T, H, W) in [-1, 1] at the fixed eval shape, read once."""
        if self._eval_clips is None:
            self._eval_clips = load_eval_clips(self.cfg.data, self._check_shape)
        return self._eval_clips

    def evaluate(self, model, step, out_dir):
        from reelforge.train.vae.evaluate import evaluate_reconstruction
        clips = self.eval_clips()
        if not clips:
            return {}
        return evaluate_reconstruction(model.vae, clips, step, out_dir, self.perceptual, self.cfg.data.eval_videos)

    def export(self, model, out_dir: Path) -> None:
        from reelforge.train.vae.export import save_exported
        save_exported(model.vae, out_dir)


def load_eval_clips(data: VAEDataConfig, check=None) -> list[torch.Tensor]:
    """Up to ``eval_clips`` video clips of the held-out selection, centred in time, at the eval shape."""
    from reelforge.shards.reader import ReaderConfig, VideoShardDataset
    if data.eval_clips == 0 or not (data.eval_dataset or data.dataset):
        return []
    if check is not None:
        check(data.eval_frames, data.eval_height, data.eval_width, "the eval shape")
    table = BucketTable(buckets=[BucketConfig(data.eval_height, data.eval_width, data.eval_frames, 1, name="eval")],
                        fps=(data.buckets.fps if data.buckets else BucketTable().fps), max_upscale=4.0,
                        min_crop_keep=0.1)
    reader = ReaderConfig(buckets=table, where=data.eval_where, kinds=["video"], dtype="float", random_offset=False,
                          remainder="drop")
    ds = VideoShardDataset(data.eval_dataset or data.dataset, reader, 0, 1, seed=0)
    rows = sorted(range(ds.table.num_rows), key=lambda i: ds.table["clip_id"][i].as_py())[:data.eval_clips]
    from reelforge.shards.plan import PlannedBatch
    clips = []
    for i in rows:
        batch = ds.load_batch(PlannedBatch("eval", (i,)), epoch=0)
        if not batch["failed"]:
            clips.append(batch["video"][0].transpose(0, 1).contiguous())       # (C, T, H, W)
    return clips


def make_vae_task(cfg: VAETrainConfig) -> VAETask:
    return VAETask(cfg)
