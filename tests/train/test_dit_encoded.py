"""The DiT trained from a `reelforge encode` dataset (issue 14's latents) through the shared shard
reader: latents normalised by latents.json, captions encoded on the fly by the frozen text encoder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "shards"))
from shard_fixtures import clip_row, write_dataset  # noqa: E402

from reelforge.shards.buckets import BucketConfig, BucketTable  # noqa: E402
from reelforge.shards.index import build_index  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> Path:
    from reelforge.train.encode import EncodeConfig, encode_dataset
    from reelforge.train.vae.export import save_exported
    from reelforge.train.vae.model import VAE_PRESETS, VideoVAE

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        root = tmp_path_factory.mktemp("dit_enc")
        clips = [clip_row(f"c{i}", 40, 40, 12, 8) for i in range(4)]
        ds = write_dataset(root / "ds", clips)
        build_index(ds, BucketTable(buckets=[BucketConfig(16, 16, 5, 2, "v")], fps=8.0, max_upscale=1.0,
                                    min_crop_keep=0.5))
        torch.manual_seed(0)
        vae = save_exported(VideoVAE(VAE_PRESETS["tiny"]()), root / "vae")
        encode_dataset(ds, root / "lat", EncodeConfig(vae=str(vae), batch_size=2, num_workers=0))
        return root / "lat"
    finally:
        torch.set_num_threads(n)


def test_dit_trains_on_an_encoded_dataset(encoded, tmp_path):
    import json

    from reelforge.train.dit.data import EncodedDatasetLatents, LatentDataConfig
    from reelforge.train.dit.task import DiTModelSection, DiTTask, DiTTrainConfig
    from reelforge.train.dit.text import TextEncoderConfig, make_tiny_t5
    from reelforge.train.launch import LaunchConfig
    from reelforge.train.trainer import Trainer, TrainerConfig

    info = json.loads((encoded / "latents.json").read_text())
    reader = EncodedDatasetLatents(encoded, 2, seed=0)
    batch = next(iter(reader))
    assert tuple(batch["latent"].shape[1:]) == tuple(info["bucket_latent_shapes"]["v"])
    assert batch["size"][0].tolist() == [16.0, 16.0] and len(batch["caption"]) == 2
    assert float(batch["fps"][0]) > 0
    t5 = make_tiny_t5(tmp_path / "t5", [c for c in batch["caption"]] + ["clip"], d_model=24)
    cfg = DiTTrainConfig(
        trainer=TrainerConfig(steps=2, lr=1e-3, ema_decay=0.0, log_every=1, tensorboard=False),
        model=DiTModelSection(preset="DiT-nano", patch=[1, 2, 2]),
        text=TextEncoderConfig(name=str(t5), max_length=16, device="cpu"),
        data=LatentDataConfig(source="dataset", path=str(encoded), batch_size=2, caption_dropout=0.5),
        launch=LaunchConfig(mode="local"))
    task = DiTTask(cfg)
    assert task.latent_shape == tuple(info["bucket_latent_shapes"]["v"]) and task.text_dim == 24
    trainer = Trainer(task, cfg.trainer, tmp_path / "run")
    trainer.fit()
    assert len(trainer.history) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)
    assert (tmp_path / "run" / "export" / "dit.json").exists()
