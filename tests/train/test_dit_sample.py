"""Sampling: determinism per seed, the ODE integrated in the right direction, Heun beating Euler, CFG."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from reelforge.train.dit.flow import FlowConfig
from reelforge.train.dit.model import DiT, DiTConfig
from reelforge.train.dit.sample import SamplerConfig, sample


class GaussianVelocity(nn.Module):
    """The exact velocity for data ~ N(0, σ²): the ODE maps noise ε to σ·ε, a known answer."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma, self.cfg = sigma, DiTConfig(patch=[1, 1, 1], hidden=48, heads=2)

    def forward(self, x, t, text, text_mask=None, fps=None, size=None):
        tt = t.view(-1, 1, 1, 1, 1)
        var = (1 - tt) ** 2 * self.sigma ** 2 + tt ** 2
        return x * (tt - (1 - tt) * self.sigma ** 2) / var


def _null(e=8):
    return torch.zeros(1, 1, e), torch.ones(1, 1, dtype=torch.bool)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_sampling_is_deterministic_per_seed(method):
    torch.manual_seed(0)
    model = DiT(DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    text, mask = torch.randn(2, 3, 8), torch.ones(2, 3, dtype=torch.bool)
    cfg = SamplerConfig(method=method, steps=4, cfg_scale=3.0)
    a = sample(model, (2, 4, 2, 6, 6), text, mask, *_null(), cfg, seed=7)
    b = sample(model, (2, 4, 2, 6, 6), text, mask, *_null(), cfg, seed=7)
    c = sample(model, (2, 4, 2, 6, 6), text, mask, *_null(), cfg, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.shape == (2, 4, 2, 6, 6) and torch.isfinite(a).all()


def test_ode_reaches_the_data_and_heun_is_more_accurate():
    sigma = 0.3
    model = GaussianVelocity(sigma)
    shape = (3, 2, 1, 4, 4)
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    text, mask = torch.zeros(3, 1, 8), torch.ones(3, 1, dtype=torch.bool)
    flow = FlowConfig(shift=1.0)
    errs = {}
    for method in ("euler", "heun"):
        x = sample(model, shape, text, mask, *_null(), SamplerConfig(method=method, steps=8, cfg_scale=1.0), flow, seed=5)
        errs[method] = float((x - sigma * noise).abs().max())
    fine = sample(model, shape, text, mask, *_null(), SamplerConfig("heun", 200, 1.0), flow, seed=5)
    assert torch.allclose(fine, sigma * noise, atol=2e-3)
    assert errs["heun"] < 0.5 * errs["euler"], errs   # the last step is Euler in both


def test_guidance_scale_one_skips_the_unconditional_pass_and_scale_changes_output():
    calls = []

    class Spy(GaussianVelocity):
        def forward(self, x, t, text, text_mask=None, fps=None, size=None):
            calls.append(x.shape[0])
            return super().forward(x, t, text) + text.mean(dim=(1, 2)).view(-1, 1, 1, 1, 1)

    model = Spy(0.5)
    text, mask = torch.ones(2, 2, 8), torch.ones(2, 2, dtype=torch.bool)
    null = (torch.zeros(1, 3, 8), torch.tensor([[True, False, False]]))   # other length: padded to match
    one = sample(model, (2, 1, 1, 2, 2), text, mask, *null, SamplerConfig("euler", 3, 1.0))
    assert calls == [2, 2, 2]
    calls.clear()
    guided = sample(model, (2, 1, 1, 2, 2), text, mask, *null, SamplerConfig("euler", 3, 4.0))
    assert calls == [4, 4, 4]
    assert not torch.allclose(one, guided)
