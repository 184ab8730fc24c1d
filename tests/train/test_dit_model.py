"""The DiT network: exact patch round trips, adaLN-zero identity at init, RoPE, masks, presets."""
from __future__ import annotations

import pytest
import torch

from reelforge.train.dit.model import (DIT_PRESETS, DiT, DiTBlock, DiTConfig, apply_rope, flops_per_sample,
                                       patchify, rope_3d, unpatchify)


def _cfg(**kw) -> DiTConfig:
    return DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=16, **kw)


def _randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Move every zero-initialised layer off zero so the test sees the whole network at work."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("shape,patch", [
    ((1, 8, 8), (1, 2, 2)), ((5, 18, 32), (1, 2, 2)), ((3, 9, 11), (1, 2, 2)),    # ragged H and W
    ((4, 6, 10), (2, 2, 2)), ((5, 6, 6), (2, 3, 3)), ((2, 3, 5), (1, 1, 1)),
])
def test_patchify_unpatchify_round_trip_is_exact(shape, patch):
    x = torch.randn(2, 4, *shape)
    tokens = patchify(x, patch)
    n = 1
    for s, p in zip(shape, patch):
        n *= -(-s // p)
    assert tokens.shape == (2, n, 4 * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, patch, shape, 4), x)


def test_patch_tokens_are_in_raster_order():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 1, 2, 4, 4)
    tokens = patchify(x, (1, 2, 2))                           # (1, 8, 4)
    assert tokens[0, 0].tolist() == [0, 1, 4, 5]              # t=0, top-left 2x2 patch
    assert tokens[0, 1].tolist() == [2, 3, 6, 7]              # next along W
    assert tokens[0, 4].tolist() == [16, 17, 20, 21]          # t=1 starts after the 2x2 grid of t=0


def test_fresh_adaln_zero_block_is_identity():
    torch.manual_seed(0)
    model = DiT(_cfg())
    blk: DiTBlock = model.blocks[0]
    x, c, y = torch.randn(2, 12, 48), torch.randn(2, 48), torch.randn(2, 5, 48)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    cos, sin = rope_3d((3, 2, 2), 24, 10000.0, "cpu")
    assert torch.equal(blk(x, c, y, mask, cos, sin), x)
    # and the whole fresh model predicts zero velocity (zero final layer), for any input
    out = model(torch.randn(2, 4, 3, 4, 4), torch.rand(2), torch.randn(2, 5, 16), mask)
    assert torch.equal(out, torch.zeros_like(out))
    _randomize(blk)
    assert not torch.allclose(blk(x, c, y, mask, cos, sin), x)


def test_rope_depends_only_on_relative_position():
    d = 24
    cos, sin = rope_3d((6, 5, 7), d, 10000.0, "cpu")
    grid = torch.arange(6 * 5 * 7).reshape(6, 5, 7)
    q, k = torch.randn(1, 1, 1, d), torch.randn(1, 1, 1, d)

    def score(pq, pk):
        iq, ik = grid[pq].item(), grid[pk].item()
        rq = apply_rope(q, cos[iq:iq + 1], sin[iq:iq + 1])
        rk = apply_rope(k, cos[ik:ik + 1], sin[ik:ik + 1])
        return float((rq * rk).sum())

    # the same offset (1, 2, -3) at two places gives the same score; another offset a different one
    assert score((0, 0, 3), (1, 2, 0)) == pytest.approx(score((4, 2, 6), (5, 4, 3)), abs=1e-5)
    assert score((0, 0, 3), (1, 2, 0)) != pytest.approx(score((0, 0, 3), (2, 2, 0)), abs=1e-3)


def test_padding_text_tokens_do_not_change_the_output():
    torch.manual_seed(0)
    model = DiT(_cfg())
    _randomize(model)
    x, t = torch.randn(1, 4, 2, 6, 6), torch.tensor([0.4])
    y = torch.randn(1, 3, 16)
    short = model(x, t, y, torch.ones(1, 3, dtype=torch.bool))
    padded_y = torch.cat([y, torch.randn(1, 4, 16)], 1)         # junk in the padding must be ignored
    padded = model(x, t, padded_y, torch.tensor([[1, 1, 1, 0, 0, 0, 0]], dtype=torch.bool))
    assert torch.allclose(short, padded, atol=1e-5)
    assert not torch.allclose(short, model(x, t, torch.randn(1, 3, 16)), atol=1e-3)   # text matters


def test_any_bucket_and_fps_size_conditioning():
    torch.manual_seed(0)
    model = DiT(_cfg())
    _randomize(model)
    y = torch.randn(2, 4, 16)
    for shape in [(1, 4, 4), (3, 6, 10), (4, 7, 5)]:
        x = torch.randn(2, 4, *shape)
        assert model(x, torch.rand(2), y).shape == x.shape
    x, t = torch.randn(2, 4, 2, 4, 4), torch.rand(2)
    a = model(x, t, y, fps=torch.tensor([24.0, 24.0]), size=torch.tensor([[64.0, 64.0]] * 2))
    b = model(x, t, y, fps=torch.tensor([8.0, 8.0]), size=torch.tensor([[64.0, 64.0]] * 2))
    c = model(x, t, y, fps=torch.tensor([24.0, 24.0]), size=torch.tensor([[32.0, 96.0]] * 2))
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)


def test_presets_and_config_errors():
    assert {"DiT-S", "DiT-B", "DiT-L", "DiT-XL"} <= set(DIT_PRESETS)
    for name in DIT_PRESETS:
        cfg = DiTConfig.from_preset(name)
        assert cfg.hidden % cfg.heads == 0
    with pytest.raises(ValueError, match="unknown DiT preset"):
        DiTConfig.from_preset("DiT-Z")
    with pytest.raises(ValueError, match="patch"):
        DiTConfig(patch=[1, 2])
    with pytest.raises(ValueError, match="divisible"):
        DiTConfig(hidden=50, heads=4)


def test_flops_grow_with_tokens_and_match_the_linear_count():
    cfg = DiTConfig.from_preset("DiT-S", in_channels=4, text_dim=64)
    small, big = flops_per_sample(cfg, (1, 16, 16), 8), flops_per_sample(cfg, (4, 32, 32), 8)
    assert big > 16 * small                                    # attention is quadratic in tokens
    # with no text and attention excluded, 6 · params_in_blocks · tokens is the classic estimate
    n = 64
    blocks_linear = sum(p.numel() for b in DiT(DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=16)).blocks
                        for name, p in b.named_parameters() if name.endswith("weight") and p.dim() == 2
                        and not name.startswith("adaLN"))
    nano = DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=16)
    approx = flops_per_sample(nano, (1, 16, 16), 1)
    assert approx > 6 * blocks_linear * n * 0.9
