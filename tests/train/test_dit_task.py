"""The DiT on the shared trainer: latent shards in, loss down, resume reproduces the loss curve, export
loads back, and a 2-worker Ray Train run."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from reelforge.train.dit.data import LatentDataConfig, LatentShardDataset, write_latent_shards
from reelforge.train.dit.task import DiTModelSection, DiTTask, DiTTrainConfig, load_dit, null_text_path
from reelforge.train.launch import LaunchConfig
from reelforge.train.trainer import Trainer, TrainerConfig


def _latents(root: Path, n: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        shape = (3, 2, 4, 4) if i % 4 else (3, 1, 4, 6)      # two buckets
        samples.append({"key": f"s{seed}_{i:03d}", "latent": rng.standard_normal(shape).astype(np.float32) * 0.5,
                        "text": rng.standard_normal((int(rng.integers(1, 5)), 8)).astype(np.float32),
                        "meta": {"caption": f"clip {i}", "fps": 8.0, "width": 16, "height": 16}})
    write_latent_shards(root, samples, shard_size=7)
    np.save(null_text_path(root), np.zeros((1, 8), np.float16))
    return root


@pytest.fixture(scope="module")
def latent_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("latents")
    return _latents(root / "train", 24, 0), _latents(root / "val", 8, 1)


def _cfg(latent_dirs, **trainer) -> DiTTrainConfig:
    train, val = latent_dirs
    return DiTTrainConfig(
        trainer=TrainerConfig(**{"steps": 6, "lr": 1e-3, "ema_decay": 0.9, "log_every": 1, "tensorboard": False,
                                 **trainer}),
        model=DiTModelSection(preset="DiT-nano", patch=[1, 2, 2]),
        data=LatentDataConfig(path=str(train), val_path=str(val), batch_size=4, caption_dropout=0.3),
        launch=LaunchConfig(mode="local"))


def test_reader_buckets_ranks_and_resume(latent_dirs):
    train, _ = latent_dirs
    ds = LatentShardDataset(train, 4, seed=3)
    assert len(ds.samples) == 24 and ds.has_text
    batches = list(ds)
    assert {tuple(b["latent"].shape[1:]) for b in batches} == {(3, 2, 4, 4), (3, 1, 4, 6)}
    assert all(b["text"].shape[0] == 4 and b["text_mask"][:, 0].all() for b in batches)
    # two ranks: same number of batches, disjoint samples
    r0, r1 = (LatentShardDataset(train, 4, r, 2, seed=3) for r in (0, 1))
    k0, k1 = ([k for b in r for k in b["key"]] for r in (r0, r1))
    assert len(r0.plan(0)) == len(r1.plan(0)) and not set(k0) & set(k1)
    # resume mid-epoch: the rest of the epoch, exactly
    it = iter(ds)
    next(it)
    state = ds.state_dict()
    rest = [b["key"] for b in it]
    again = LatentShardDataset(train, 4, seed=3)
    again.load_state_dict(state)
    assert [b["key"] for b in again] == rest


def test_resume_reproduces_the_loss_curve(latent_dirs, tmp_path):
    cfg = _cfg(latent_dirs, checkpoint_every=3)
    full = Trainer(DiTTask(cfg), cfg.trainer, tmp_path / "full")
    full.fit()
    stopped_cfg = replace(cfg.trainer, stop_after=3)
    Trainer(DiTTask(cfg), stopped_cfg, tmp_path / "resumed").fit()
    resumed = Trainer(DiTTask(cfg), replace(cfg.trainer, resume="latest"), tmp_path / "resumed")
    assert resumed.state.step == 3
    resumed.fit()
    a = [h["loss"] for h in full.history]
    b = [h["loss"] for h in resumed.history]
    assert len(a) == 6 and len(b) == 3
    assert np.allclose(a[3:], b, rtol=1e-5, atol=1e-7), (a, b)
    # the loss falls over a few more steps (caption dropout and timestep draws included)
    metrics = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if m.get("kind") == "eval"]
    assert evals and "val_loss" in evals[-1] and "val_loss_t0.5" in evals[-1]
    assert any("tokens_per_s" in m for m in metrics)
    # the export loads back into the same network
    model, meta = load_dit(tmp_path / "full" / "export")
    assert meta["latent_shape"][0] == 3 and model.cfg.text_dim == 8
    x = torch.randn(1, 3, 2, 4, 4)
    assert model(x, torch.tensor([0.5]), torch.randn(1, 2, 8)).shape == x.shape


def test_flops_per_sample_counts_the_batch_shape(latent_dirs):
    task = DiTTask(_cfg(latent_dirs))
    batch = next(iter(task.build_loader(0, 1, 0)))
    f = task.flops_per_sample(batch)
    assert f > 0 and task.flops_per_sample({**batch, "latent": batch["latent"].repeat(1, 1, 2, 2, 2)}) > 8 * f


@pytest.mark.slow
def test_two_worker_ray_train_run(latent_dirs, tmp_path):
    from reelforge.cluster import RayConfig, shutdown_ray
    from reelforge.train.launch import launch

    cfg = _cfg(latent_dirs, steps=3, checkpoint_every=3)
    cfg = replace(cfg, launch=LaunchConfig(mode="ray", num_workers=2, name="dit2"),
                  ray=RayConfig(num_cpus=2, dashboard=False, progress_bars=False))
    try:
        metrics = launch(DiTTask, cfg, cfg.trainer, cfg.launch, cfg.ray, tmp_path)
    finally:
        shutdown_ray()
    assert metrics.get("step") == 3
    assert (tmp_path / "export" / "dit.json").exists()


CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "train" / "dit"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_dit_config_loads(path):
    from reelforge.config import load_config

    cfg = load_config(DiTTrainConfig, path)
    assert cfg.model.preset and cfg.out_dir


def test_demo_yaml_mirrors_the_demo_config():
    from reelforge.config import load_config
    from reelforge.train.dit.demo import demo_config

    yaml_cfg = load_config(DiTTrainConfig, CONFIGS / "demo.yaml")
    code = demo_config({"train": "", "val": "", "latent_shape": [3, 8, 16, 16]}, Path(""), steps=300)
    for section in ("model", "flow", "sampler", "codec"):
        assert getattr(yaml_cfg, section) == getattr(code, section), section
    assert (yaml_cfg.data.batch_size, yaml_cfg.data.caption_dropout) == (code.data.batch_size, code.data.caption_dropout)
    for key in ("lr", "schedule", "min_lr_ratio", "ema_decay", "grad_clip"):
        assert getattr(yaml_cfg.trainer, key) == getattr(code.trainer, key), key


def test_caption_dropout_swaps_rows_for_the_empty_caption(latent_dirs):
    task = DiTTask(_cfg(latent_dirs))
    text = torch.randn(64, 3, 8)
    mask = torch.ones(64, 3, dtype=torch.bool)
    torch.manual_seed(0)
    t, m = task.drop_captions(text, mask, 0.5)
    dropped = m.sum(1) == 1                                   # the null caption here is one (zero) token
    assert 16 < int(dropped.sum()) < 48
    assert torch.equal(t[dropped, 0], torch.zeros(int(dropped.sum()), 8))
    assert torch.equal(t[~dropped], text[~dropped]) and bool(m[~dropped].all())
    assert task.drop_captions(text, mask, 0.0)[0] is text
