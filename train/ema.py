"""Exponential moving average of the trainable parameters (the weights evaluated and exported).

The shadow tensors have the parameters' own type and placement: plain tensors under DDP, DTensor shards
under FSDP2, so the EMA costs each rank what its parameters cost and is saved with them in the
distributed checkpoint.
"""
from __future__ import annotations

import torch
from torch import nn


class EMA:
    """``shadow = decay * shadow + (1 - decay) * param`` after every optimizer step.

    ``decay`` is warmed up as ``min(decay, (1 + n) / (10 + n))`` over the first updates, so an EMA of a
    short run is not dominated by the random initialisation. ``decay = 0`` keeps an exact copy.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        params = dict(model.named_parameters())
        self.shadow = {n: params[n].detach().clone().float() for n in self.names}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = dict(model.named_parameters())
        shadows = [self.shadow[n] for n in self.names]
        torch._foreach_lerp_(shadows, [params[n].detach().float() for n in self.names], 1.0 - decay)
        self.updates += 1

    def state_dict(self) -> dict:
        return {"updates": torch.tensor(self.updates), **{f"shadow.{n}": t for n, t in self.shadow.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.updates = int(state["updates"])
        for n in self.names:
            self.shadow[n].copy_(state[f"shadow.{n}"])
