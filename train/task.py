"""What one model family brings to the shared trainer (train/trainer.py).

The trainer knows nothing model-specific: it asks a ``TrainTask`` for the model, the parameter groups
(one optimizer each), the data, the losses of a batch, the units to shard/checkpoint/compile, an
evaluation and an export. The VAE (train/vae/task.py) and the DiT (train/dit/) are tasks.

Call order on every rank:

    model  = task.build_model()                      # fp32, on CPU; the trainer moves and wraps it
    groups = task.param_groups(model)                # before wrapping: names the raw parameters
    blocks = task.blocks(model)                      # FSDP2 units / checkpointed / compiled per block
    loader = task.build_loader(rank, world_size, seed)
    for batch in loader:                             # the trainer moves tensors to the device
        losses, logs = task.losses(model, batch, step)   # model: the raw module (see below)
    task.evaluate(ema_model, step, out_dir)          # rank 0 only
    task.export(ema_model, out_dir)                  # rank 0 only, at the end

``model`` passed to ``losses`` is the module returned by ``build_model`` with its parameters possibly
sharded (FSDP2 shards in place) and its blocks possibly wrapped for activation checkpointing/compile;
under DDP the trainer passes the raw module and synchronises gradients itself (a task with several
submodules, e.g. a generator and a discriminator, may call any of them in any order).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class StatefulLoader(Protocol):
    """An iterable of batches whose position can be saved and restored (the shard readers' loaders)."""

    def __iter__(self): ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class TrainTask:
    """What one model family brings to the shared trainer.

    Subclasses override every method below except ``flops_per_sample`` and ``evaluate`` (optional).
    A task holds its own config section (model, losses, data); the trainer holds the optimisation one.
    """

    name: str = "task"

    def build_model(self) -> nn.Module:
        """The model as single-device code with fp32 parameters, on CPU. It may hold several submodules
        (a generator and a discriminator); ``param_groups`` says which parameters each optimizer steps.
        Must be deterministic given ``torch.manual_seed`` (the trainer seeds before calling it, so every
        rank builds the same initial weights)."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """One AdamW optimizer (and one LR schedule) per key, e.g. ``{"model": [...]}`` or
        ``{"vae": [...], "disc": [...]}``. The lists must be disjoint and together hold every trainable
        parameter. Called on the raw model before any wrapping; the trainer maps them onto the wrapped one."""
        raise NotImplementedError

    def build_loader(self, rank: int, world_size: int, seed: int) -> StatefulLoader:
        """This rank's batches: an iterable with ``state_dict()``/``load_state_dict()`` whose state is the
        exact position (the shard readers' ``ShardLoader``/``StreamLoader``). Every rank must yield the
        same number of batches per epoch (DDP/FSDP step together). A new ``iter()`` after an exhausted
        one starts the next epoch. ``rank``/``world_size`` come from Ray Train's context, never from a
        ``DistributedSampler``."""
        raise NotImplementedError

    def losses(self, model: nn.Module, batch: Any, step: int) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The loss to minimise per optimizer key (scalar tensors with grad; a key absent this step means
        that optimizer does not step, e.g. the discriminator before its warm-up ends), plus scalars to
        log (plain floats; the trainer averages them over gradient-accumulation micro-batches).
        ``batch`` is on the trainer's device (tensors moved, other values as given). Runs under the
        trainer's autocast. ``step`` is the optimizer step being computed (0-based).

        Several keys: each loss is backpropagated into its own parameter group only (the trainer calls
        ``torch.autograd.backward`` per key restricted to that group's parameters), so a generator loss
        that runs through the discriminator does not write discriminator gradients. Under
        ``parallel: fsdp`` with several groups, each group must be exactly one submodule's parameters
        (it becomes its own FSDP2 unit; see train/parallelize.py ``apply_fsdp``), and each loss is
        backpropagated in full with the other groups' gradients discarded, in the order of the dict."""
        raise NotImplementedError

    def blocks(self, model: nn.Module) -> list[nn.Module]:
        """Submodules that are units for FSDP2 ``fully_shard``, activation checkpointing and per-block
        ``torch.compile`` (transformer blocks, resolution stages). May be empty (the whole model is one
        unit). Each must be called through its ``forward`` (the trainer replaces modules in place)."""
        return []

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        """Rank 0 only, with the EMA weights (or the live ones when EMA is off), in eval mode under
        ``torch.no_grad``. Returns metrics to log (e.g. PSNR); may write files under ``out_dir``
        (reconstruction videos, a metrics jsonl)."""
        return {}

    def flops_per_sample(self, batch: Any) -> float | None:
        """Model FLOPs of one sample's forward + backward for this batch's shape (MFU). None: unknown."""
        return None

    def export(self, model: nn.Module, out_dir: Path) -> None:
        """Write the inference weights (safetensors) and the model config (json) under ``out_dir`` so the
        model can be loaded without the trainer. Rank 0, EMA weights, plain (unsharded) module."""
        raise NotImplementedError


def batch_size_of(batch: Any) -> int:
    """Samples in a batch: the first dimension of its first tensor (dict values, then sequence items)."""
    import torch

    values: Iterable = batch.values() if isinstance(batch, dict) else (batch if isinstance(batch, (list, tuple)) else [batch])
    for v in values:
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            return int(v.shape[0])
    raise ValueError("cannot tell the batch size: the batch holds no tensor")
