"""Parallelism applied to single-device model code: activation checkpointing, per-block
``torch.compile``, FSDP2 ``fully_shard`` or replicated data parallel with an explicit gradient
all-reduce. Model files never import this; the trainer calls ``parallelize`` once.

Why not ``DistributedDataParallel``: DDP's reducer only works when the wrapped module's ``forward`` is
called once per backward, but a task may call submodules directly and backpropagate several losses
into disjoint parameter groups (a VAE and its discriminator). ``allreduce_grads`` averages exactly the
gradients of the groups that step, bucketed into a few flat all-reduces, which is DDP's arithmetic
without its hooks (no compute/communication overlap; the large-model path is FSDP2).
"""
from __future__ import annotations

import functools
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.checkpoint import checkpoint

BUCKET_BYTES = 25 * 1024 * 1024  # DDP's default bucket size


def apply_activation_checkpointing(blocks: list[nn.Module]) -> None:
    """Recompute each block's activations in the backward pass instead of storing them."""
    for block in blocks:
        forward = block.forward
        # an instance attribute shadows the class method, so nn.Module.__call__ (and hooks) still run
        block.forward = functools.partial(checkpoint, forward, use_reentrant=False)


def apply_compile(blocks: list[nn.Module]) -> None:
    """Compile per block (torchtitan's choice: repeated blocks share one graph, compile stays short)."""
    for block in blocks:
        block.compile()


def apply_fsdp(model: nn.Module, blocks: list[nn.Module], param_dtype: torch.dtype | None,
               group_units: list[nn.Module] = ()) -> None:
    """FSDP2: each block its own unit (gathered just before use, freed after), then each param group's
    module (``group_units``: a generator and a discriminator are sharded apart), the rest in the root.

    Why separate units for separately-stepped modules: FSDP2 gathers a unit's parameters in its forward
    and frees them after its backward, re-gathering them in the pre-backward hook on that unit's outputs.
    A module called inside another unit's forward (a critic owned by the root) has no hook of its own, so
    a second backward through it (the discriminator's loss after the generator's) would run on freed
    weights; as its own unit it is re-gathered for every backward that reaches it."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=param_dtype, reduce_dtype=torch.float32)
    for unit in list(blocks) + list(group_units):
        fully_shard(unit, mp_policy=mp)
    fully_shard(model, mp_policy=mp)


def group_modules(model: nn.Module, groups: dict[str, list[nn.Parameter]]) -> dict[str, nn.Module]:
    """For each param group, the submodule whose parameters are exactly that group's (FSDP2 units).
    Raises when a group is not one submodule's parameters: FSDP2 could not shard it apart."""
    found = {}
    modules = [(n, m) for n, m in model.named_modules() if n]
    for key, params in groups.items():
        ids = {id(p) for p in params}
        match = [m for _, m in modules if {id(p) for p in m.parameters()} == ids]
        if not match:
            raise ValueError(f"parallel: fsdp with several param groups shards each group as its own unit, but "
                             f"group {key!r} is not exactly the parameters of one submodule; make each group one "
                             f"module's parameters (e.g. model.vae, model.disc) or use parallel: ddp")
        found[key] = match[0]
    return found


def parallelize(model: nn.Module, blocks: list[nn.Module], *, parallel: str, world_size: int,
                activation_checkpointing: bool, compile: bool, param_dtype: torch.dtype | None,
                group_units: list[nn.Module] = ()) -> None:
    """In place, in torchtitan's order: activation checkpointing, compile, then sharding."""
    if activation_checkpointing:
        apply_activation_checkpointing(blocks)
    if compile:
        apply_compile(blocks)
    if parallel == "fsdp" and world_size > 1:
        apply_fsdp(model, blocks, param_dtype, group_units)


def broadcast_params(model: nn.Module) -> None:
    """Replicated training: start every rank from rank 0's weights (and buffers)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def allreduce_grads(params: Iterable[nn.Parameter], world_size: int) -> None:
    """Average gradients across ranks (replicated mode). A parameter without a gradient on this rank
    gets zeros, so every rank sends buffers of the same layout and the collective cannot mismatch."""
    if world_size == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket, size = [], 0
    for p in params:
        bucket.append(p.grad)
        size += p.grad.numel() * p.grad.element_size()
        if size >= BUCKET_BYTES:
            _reduce_bucket(bucket, world_size)
            bucket, size = [], 0
    if bucket:
        _reduce_bucket(bucket, world_size)


def _reduce_bucket(grads: list[torch.Tensor], world_size: int) -> None:
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in group])
        dist.all_reduce(flat)
        flat.div_(world_size)
        offset = 0
        for g in group:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor shard gathered to the whole tensor (a collective: every rank must call it); plain as is."""
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def full_state(named: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` with every DTensor gathered, on CPU in fp32 (for evaluation and export)."""
    return {n: full_tensor(t).detach().float().cpu() for n, t in named.items()}
