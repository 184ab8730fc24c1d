"""A tiny task for trainer tests: a two-group model (a regressor and a "critic") over a synthetic,
resumable loader, so the loop, the per-group backward, checkpoints and resume are tested in seconds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from reelforge.train.task import TrainTask


class ToyLoader:
    """Deterministic batches per (seed, rank, epoch, position), with the readers' state contract."""

    def __init__(self, rank: int, world_size: int, seed: int, batches_per_epoch: int = 5, batch_size: int = 4):
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.n, self.bs = batches_per_epoch, batch_size
        self.epoch, self.position = 0, 0

    def __iter__(self):
        if self.position >= self.n:
            self.epoch, self.position = self.epoch + 1, 0
        while self.position < self.n:
            g = torch.Generator().manual_seed(hash((self.seed, self.rank, self.epoch, self.position)) % 2**31)
            x = torch.randn(self.bs, 8, generator=g)
            self.position += 1
            yield {"x": x, "y": x @ torch.arange(8.0).unsqueeze(1) / 8, "id": [f"{self.epoch}:{self.position}"]}

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state):
        self.epoch, self.position = state["epoch"], state["position"]


class ToyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 1))
        self.critic = nn.Linear(1, 1)

    def forward(self, x):
        return self.net(x)


class ToyTask(TrainTask):
    name = "toy"

    def __init__(self, critic_from: int = 2, noise: bool = True, crash_at: int = 0, crash_marker: str = ""):
        self.critic_from, self.noise = critic_from, noise
        # crash_at: rank 1 dies (os._exit) at that step once, the marker file remembering it did
        self.crash_at, self.crash_marker = crash_at, crash_marker
        self.seen: list[str] = []
        self.rank = 0

    def build_model(self):
        return ToyModel()

    def param_groups(self, model):
        return {"model": list(model.net.parameters()), "critic": list(model.critic.parameters())}

    def build_loader(self, rank, world_size, seed):
        self.rank = rank
        return ToyLoader(rank, world_size, seed)

    def losses(self, model, batch, step):
        if self.crash_at and step == self.crash_at and self.rank == 1 and not os.path.exists(self.crash_marker):
            open(self.crash_marker, "w").close()
            os._exit(1)  # a real worker death, mid-epoch
        self.seen += batch["id"]
        pred = model(batch["x"])
        if self.noise:  # draws from the torch RNG: resume must restore it
            pred = pred + 0.01 * torch.randn_like(pred)
        losses = {"model": (pred - batch["y"]).pow(2).mean() + 0.1 * model.critic(pred).mean()}
        if step >= self.critic_from:
            losses["critic"] = model.critic(pred.detach()).pow(2).mean()
        return losses, {"pred_mean": float(pred.detach().mean())}

    def blocks(self, model):
        return [model.net[0], model.net[2]]

    def evaluate(self, model, step, out_dir):
        x = torch.ones(2, 8)
        return {"eval_mse": float((model(x) - x @ torch.arange(8.0).unsqueeze(1) / 8).pow(2).mean())}

    def export(self, model, out_dir: Path):
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors")
        (out_dir / "config.json").write_text(json.dumps({"toy": True}))
