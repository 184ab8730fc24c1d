"""Checkpoints: model, EMA, optimizers and step through ``torch.distributed.checkpoint`` (each rank
writes its own shards; replicated tensors are written once), plus one small file per rank with what is
rank-specific: the RNG states and the loader position.

A checkpoint directory:

    .metadata, __<rank>_0.distcp    DCP: {"train": model, ema, optimizers (one per param group), step}
    rank_<r>.pt                     {"rng": python/numpy/torch(/cuda) states, "loader": loader.state_dict()}
    meta.json                       step, world_size, parallel (written by rank 0)
    config.yaml                     the resolved run config (rank 0)

Every rank writes into its own directory and Ray Train merges them into one checkpoint (distinct file
names); without Ray every rank writes into the same directory. Resume needs the same world size (the
loader plans and FSDP shards depend on it); ``load_checkpoint`` says so when it differs.
"""
from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.checkpoint.stateful import Stateful

from reelforge.train.ema import EMA


class TrainState(Stateful):
    """What DCP saves and restores in place: the model, its optimizers, the EMA and the step."""

    def __init__(self, model: nn.Module, optimizers: dict[str, torch.optim.Optimizer], ema: EMA | None):
        self.model, self.optimizers, self.ema = model, optimizers, ema
        self.step = 0

    def state_dict(self) -> dict:
        keys = sorted(self.optimizers)
        model_sd, optim_sd = get_state_dict(self.model, [self.optimizers[k] for k in keys])
        state = {"model": model_sd, "optim": optim_sd, "step": torch.tensor(self.step)}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        keys = sorted(self.optimizers)
        set_state_dict(self.model, [self.optimizers[k] for k in keys], model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = int(state["step"])


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, train_state: TrainState, rank: int, world_size: int, loader_state: dict,
                    meta: dict, config_yaml: str | None) -> None:
    """Collective: every rank calls it with its own ``path`` (Ray Train) or the same one."""
    path.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # one process without a process group is a supported case
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.save({"train": train_state}, checkpoint_id=str(path))
    torch.save({"rng": rng_state(), "loader": loader_state}, path / f"rank_{rank}.pt")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # meta.json marks a complete checkpoint: every rank's file is written
    if rank == 0:
        (path / "meta.json").write_text(json.dumps({**meta, "step": train_state.step, "world_size": world_size}))
        if config_yaml is not None:
            (path / "config.yaml").write_text(config_yaml)


def load_checkpoint(path: Path, train_state: TrainState, rank: int, world_size: int) -> dict:
    """Restore model/optimizers/EMA/step in place and this rank's RNG; returns its loader state."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"{path} is not a checkpoint (no meta.json)")
    meta = json.loads(meta_file.read_text())
    if meta["world_size"] != world_size:
        raise ValueError(f"checkpoint {path} was written by {meta['world_size']} ranks, this run has {world_size}: "
                         "resume with the same number of workers (loader plans and shards depend on it)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({"train": train_state}, checkpoint_id=str(path))
    extra = torch.load(path / f"rank_{rank}.pt", weights_only=False)
    set_rng_state(extra["rng"])
    return extra["loader"]


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint with the highest step under ``root`` (``step_<n>`` folders holding meta.json)."""
    found = [p for p in Path(root).glob("**/step_*") if (p / "meta.json").exists()]
    return max(found, key=lambda p: json.loads((p / "meta.json").read_text())["step"]) if found else None
