"""Rectified flow: shift, timestep sampling, the loss falling on a fixed batch, validation determinism."""
from __future__ import annotations

import pytest
import torch

from reelforge.train.dit.flow import (FlowConfig, flow_loss, interpolate, sample_t, shift_for, shift_time,
                                      validation_loss)
from reelforge.train.dit.model import DiT, DiTConfig


def test_shift_grows_with_tokens_and_keeps_endpoints():
    cfg = FlowConfig(base_tokens=256)
    assert shift_for(cfg, 64) == 1.0                          # never below 1: small inputs are not shifted back
    assert shift_for(cfg, 1024) == pytest.approx(2.0)
    assert shift_for(cfg, 10**9) == cfg.max_shift
    assert shift_for(FlowConfig(shift=3.0), 10) == 3.0
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    s = shift_time(t, 3.0)
    assert s[0] == 0 and s[-1] == 1 and bool((s[1:3] > t[1:3]).all())


def test_timesteps_in_range_and_shifted_toward_noise_for_long_sequences():
    cfg = FlowConfig()
    g = torch.Generator().manual_seed(0)
    short = sample_t(cfg, 4000, 256, g)
    long = sample_t(cfg, 4000, 256 * 16, torch.Generator().manual_seed(0))
    assert float(short.min()) > 0 and float(short.max()) < 1
    assert abs(float(short.mean()) - 0.5) < 0.02               # logit-normal(0, 1) is centred
    assert float(long.mean()) > float(short.mean()) + 0.15


def test_interpolation_endpoints():
    x0, eps = torch.randn(2, 3, 1, 2, 2), torch.randn(2, 3, 1, 2, 2)
    assert torch.equal(interpolate(x0, eps, torch.zeros(2)), x0)
    assert torch.equal(interpolate(x0, eps, torch.ones(2)), eps)


def test_flow_loss_falls_on_a_tiny_fixed_batch():
    torch.manual_seed(0)
    model = DiT(DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=8))
    x0 = torch.randn(2, 4, 2, 6, 6) * 0.5 + torch.linspace(-1, 1, 4).view(1, 4, 1, 1, 1)
    text = torch.randn(2, 3, 8)
    vel = lambda xt, t: model(xt, t, text)                    # noqa: E731
    cfg = FlowConfig()
    before = validation_loss(vel, x0, cfg.val_timesteps, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        t = sample_t(cfg, 2, 18, g)
        loss, per_sample = flow_loss(vel, x0, t, torch.randn(x0.shape, generator=g))
        assert per_sample.shape == (2,)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = validation_loss(vel, x0, cfg.val_timesteps, seed=1)
    assert after["val_loss"] < 0.7 * before["val_loss"], (before, after)
    assert set(after) == {f"val_loss_t{t:g}" for t in cfg.val_timesteps} | {"val_loss"}
    assert validation_loss(vel, x0, cfg.val_timesteps, seed=1) == after   # fixed noise: same numbers


def test_config_errors():
    with pytest.raises(ValueError):
        FlowConfig(val_timesteps=[0.0, 0.5])
    with pytest.raises(ValueError):
        FlowConfig(logit_std=0)
