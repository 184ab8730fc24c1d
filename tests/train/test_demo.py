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
