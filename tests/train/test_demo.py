"""The demo's text-to-video half: a learned VAE as the DiT's codec (normalised latents, calibrated on
data), and the dataset report linking the generated videos."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

pytestmark = pytest.mark.usefixtures("one_thread")   # tests/train/conftest.py


@pytest.fixture(scope="module")
def vae_export(tmp_path_factory) -> Path:
    from reelforge.train.vae.export import save_exported
    from reelforge.train.vae.model import VAE_PRESETS, VideoVAE

    torch.manual_seed(0)
    cfg = VAE_PRESETS["tiny"]()
    cfg.latent_channels = 16
    return save_exported(VideoVAE(cfg), tmp_path_factory.mktemp("vae") / "export")


def _videos(n: int = 4, t: int = 9, size: int = 32) -> torch.Tensor:
    """(n, 3, t, size, size) in [-1, 1]: smooth gradients with a bright square, so latents vary."""
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-1, 1, size)
    base = x[None, :] * torch.rand(n, 3, 1, 1, generator=g) + x[:, None] * 0.3                 # (n, 3, size, size)
    v = base[:, :, None].expand(n, 3, t, size, size).clone()
    v[:, 0, :, 8:16, 8:16] = 1.0
    return v.clamp(-1, 1)


def test_vae_codec_serves_calibrated_latents_and_decodes_to_frames(vae_export):
    from reelforge.train.dit.codec import VAECodec, load_codec
    from reelforge.train.vae.export import calibrate_export

    clips = _videos()
    raw = load_codec(str(vae_export))
    assert isinstance(raw, VAECodec) and raw.strides == (4, 8, 8) and raw.latent_channels == 16
    uint8 = ((clips.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().to(torch.uint8)                 # (n, T, H, W, 3)
    before = raw.encode(uint8)
    shift, scale = calibrate_export(vae_export, clips)
    codec = load_codec(str(vae_export))
    z = codec.encode(uint8)
    assert z.shape == (4, 16, 3, 4, 4)
    # normalised by the calibration: zero mean and unit variance on the clips it was measured on
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    torch.testing.assert_close(z, (before - shift) * scale, rtol=1e-4, atol=1e-4)
    # decode undoes the normalisation: the same frames as the raw VAE decoding its raw latents
    frames = codec.decode(z)
    assert frames.shape == (4, 9, 32, 32, 3) and frames.dtype == torch.uint8
    assert (frames.int() - raw.decode(before).int()).abs().max() <= 1


def test_demo_config_follows_the_codec(vae_export):
    from reelforge.train.dit.codec import load_codec
    from reelforge.train.dit.demo import clip_frames, default_patch, demo_config

    pixel, vae = load_codec("pixel:4"), load_codec(str(vae_export))
    assert (default_patch(pixel), clip_frames(pixel)) == ([2, 4, 4], 8)
    assert (default_patch(vae), clip_frames(vae)) == ([1, 2, 2], 9)
    cfg = demo_config({"train": "", "val": "", "latent_shape": [16, 3, 8, 8]}, Path(""), steps=10,
                      codec=str(vae_export), patch=[1, 2, 2])
    assert cfg.flow.base_tokens == 3 * 4 * 4 and cfg.codec == str(vae_export)


def test_the_report_links_the_demo_pages(tmp_path):
    from reelforge.train.dit.demo import link_from_report

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    page = link_from_report(dataset, {"videos": [{}] * 3, "color_acc": 1.0, "direction_acc": 0.5}).read_text()
    assert "Made from this dataset" in page
    assert "href='../t2v/index.html'" in page and "href='../index.html'" in page
    assert "3 videos generated from held-out prompts" in page and "direction 50%" in page


def test_attribute_clip_loader_splits_ranks_and_resumes():
    from reelforge.train.dit.demo import AttributeClipLoader

    clips = torch.arange(10.0).view(10, 1, 1, 1, 1).expand(10, 3, 2, 1, 1)                   # clip i is all i
    ids = lambda b: b["video"][:, 0, 0, 0, 0].long().tolist()                                 # noqa: E731
    ranks = [AttributeClipLoader(clips, 2, r, 2, seed=3) for r in range(2)]
    epoch = [[ids(b) for b in r] for r in ranks]
    assert [len(e) for e in epoch] == [2, 2]                                                  # 10 // (2 × 2)
    seen = [i for e in epoch for b in e for i in b]
    assert len(seen) == len(set(seen)) == 8                                                   # disjoint across ranks
    assert next(iter(ranks[0]))["video"].shape == (2, 2, 3, 1, 1)                            # (B, T, C, H, W)
    whole = AttributeClipLoader(clips, 2, seed=3)
    run = [ids(b) for _ in range(2) for b in whole]                                           # two epochs
    cut = AttributeClipLoader(clips, 2, seed=3)
    it = iter(cut)
    first = [ids(next(it)) for _ in range(3)]
    rest = AttributeClipLoader(clips, 2, seed=3)
    rest.load_state_dict(cut.state_dict())
    resumed = first + [ids(b) for b in rest] + [ids(b) for b in rest]
    assert resumed == run and run[:5] != run[5:]                                              # epochs reshuffle


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_demo_trains_a_vae_and_the_dit_in_its_latents(tmp_path):
    """The --vae-minutes path end to end at toy size: the VAE on the attribute clips (trainer, export,
    calibration, reconstruction checks), then the DiT on its latents, generation, scoring, pages."""
    import json

    from reelforge.train.dit.demo import run_t2v, train_demo_vae

    vae = train_demo_vae(tmp_path / "vae", steps=2)
    assert vae["steps"] == 2 and Path(vae["export"], "model.safetensors").exists()
    assert 0 < vae["scale"] and 0 < vae["attribute_psnr"] < 100
    assert set(vae["oracle_on_reconstructions"]) == {"color", "direction"}
    t2v = run_t2v(tmp_path / "t2v", steps=2, codec=vae["export"], vae=vae)
    assert t2v["latent_shape"] == [16, 3, 8, 8] and t2v["patch"] == [1, 2, 2]
    saved = json.loads((tmp_path / "t2v" / "t2v.json").read_text())
    assert saved["vae"]["export"] == vae["export"] and len(saved["videos"]) == 16
    assert "tiny VAE trained 2 steps" in (tmp_path / "t2v" / "index.html").read_text()
