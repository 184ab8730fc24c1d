"""Parallelism for the DiT, applied from outside the model (torchtitan's split): per-block activation
checkpointing, per-block ``torch.compile`` and FSDP2 ``fully_shard`` per block then the root.

The shared trainer does the same through ``DiTTask.blocks()``; this function is for code that holds a
DiT without the trainer (benchmarks, multi-GPU sampling). The order matters: checkpoint inside compile
inside the FSDP unit, so each block's all-gather wraps one compiled, recomputable graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ParallelConfig:
    activation_checkpointing: bool = False
    compile: bool = False
    fsdp: bool = False                   # needs an initialised process group
    param_dtype: str = "bfloat16"        # FSDP2 mixed precision: compute dtype of gathered parameters
    reduce_dtype: str = "float32"


def parallelize(model: nn.Module, cfg: ParallelConfig, mesh=None) -> nn.Module:
    """Wrap ``model.blocks`` in place and return the model (sharded in place under FSDP2)."""
    blocks: nn.ModuleList = model.blocks
    for i, block in enumerate(blocks):
        if cfg.activation_checkpointing:
            from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

            # recompute the block in backward: activation memory O(1 block) instead of O(depth)
            block = checkpoint_wrapper(block, preserve_rng_state=False)
        if cfg.compile:
            block.compile(fullgraph=False, dynamic=False)   # per block: one small graph compiled once,
        blocks[i] = block                                      # reused by every identical block
    if cfg.fsdp:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=getattr(torch, cfg.param_dtype),
                                  reduce_dtype=getattr(torch, cfg.reduce_dtype))
        for i, block in enumerate(blocks):
            # the last block's parameters are needed right away by backward: keep them gathered
            fully_shard(block, mesh=mesh, mp_policy=mp, reshard_after_forward=i < len(blocks) - 1)
        fully_shard(model, mesh=mesh, mp_policy=mp)
    return model
