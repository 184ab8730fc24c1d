"""Parallelism applied from outside (train/parallelize.py, the trainer's): activation checkpointing of the
DiT's blocks leaves outputs and gradients unchanged."""
from __future__ import annotations

import copy

import torch

from reelforge.train.dit.model import DiT, DiTConfig
from reelforge.train.parallelize import apply_activation_checkpointing


def test_activation_checkpointing_same_loss_and_grads():
    torch.manual_seed(0)
    plain = DiT(DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=8))
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
    wrapped = copy.deepcopy(plain)
    apply_activation_checkpointing(list(wrapped.blocks))
    assert all("checkpoint" in repr(b.forward) for b in wrapped.blocks)
    x, t, y = torch.randn(2, 4, 2, 4, 4), torch.rand(2), torch.randn(2, 3, 8)
    losses = []
    for m in (plain, wrapped):
        loss = m(x, t, y).pow(2).mean()
        loss.backward()
        losses.append(loss.detach())
    assert torch.allclose(*losses)
    for (name, a), b in zip(plain.named_parameters(), wrapped.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name
