"""``reelforge encode``: latents from reelforge's own VAE and a tiny diffusers Wan VAE written into
shards that both readers serve as ``latent`` batches (with caption and the DiT's conditioning)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "shards"))
from shard_fixtures import clip_row, write_dataset  # noqa: E402

from reelforge.shards.buckets import BucketConfig, BucketTable  # noqa: E402
from reelforge.shards.index import build_index  # noqa: E402
from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset  # noqa: E402
from reelforge.shards.stream import StreamConfig, StreamLoader, stream_dataset  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/train/conftest.py

# 16x16x5 video (batch 2), 16x16 images (batch 2), and a 4-frame bucket no 4x-causal VAE can take
BUCKETS = BucketTable(buckets=[BucketConfig(16, 16, 5, 2, "v"), BucketConfig(16, 16, 1, 2, "i"),
                               BucketConfig(24, 40, 4, 1, "odd")], fps=8.0, max_upscale=1.0, min_crop_keep=0.5)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    clips = [clip_row(f"c{i}", 40, 40, 12, 8) for i in range(3)] + [clip_row("w0", 64, 40, 12, 8)]
    images = [{"clip_id": f"i{i}", "width": 40, "height": 40} for i in range(2)]
    root = write_dataset(tmp_path_factory.mktemp("enc") / "ds", clips, images=images)
    build_index(root, BUCKETS)
    return root


@pytest.fixture(scope="module")
def own_vae(tmp_path_factory) -> Path:
    from reelforge.train.vae.export import save_exported
    from reelforge.train.vae.model import VAE_PRESETS, VideoVAE
    torch.manual_seed(0)
    return save_exported(VideoVAE(VAE_PRESETS["tiny"]()), tmp_path_factory.mktemp("vae") / "tiny")


def _batches(root, **kw):
    return list(ShardLoader(VideoShardDataset(root, ReaderConfig(latents=True, **kw), 0, 1, seed=3)))


def _by_clip(batches) -> dict:
    return {c: b["latent"][i] for b in batches for i, c in enumerate(b["clip_id"])}


def test_encode_with_own_vae_and_read_latents(dataset, own_vae, tmp_path):
    from reelforge.cli import main
    from reelforge.train.vae.interface import load_vae
    out = tmp_path / "lat"
    assert main(["encode", str(dataset), "--vae", str(own_vae), "--out", str(out), "--batch-size", "2",
                 "--num-workers", "0"]) == 0
    report = pq.read_table(out / "encode.parquet").to_pylist()
    status = {r["clip_id"]: (r["status"], r["bucket"]) for r in report}
    assert status["w0"] == ("skipped", "odd") and "1 + 4k" in next(r["reason"] for r in report if r["clip_id"] == "w0")
    assert {k for k, v in status.items() if v[0] == "ok"} == {"c0", "c1", "c2", "i0", "i1"}
    info = json.loads((out / "latents.json").read_text())
    assert info["bucket_latent_shapes"] == {"v": [4, 2, 2, 2], "i": [4, 1, 2, 2]} and info["store"] == "mean_std"

    batches = _batches(out, latent_sample=False)
    shapes = sorted((b["bucket"], tuple(b["latent"].shape)) for b in batches)
    assert shapes == [("i", (2, 4, 1, 2, 2)), ("v", (2, 4, 2, 2, 2)), ("v", (2, 4, 2, 2, 2))]
    assert all("video" not in b for b in batches)
    v = next(b for b in batches if b["bucket"] == "v")
    assert v["caption"][0] == f"caption of {v['clip_id'][0]}"
    torch.testing.assert_close(v["fps"], torch.full((2,), 8.0))
    torch.testing.assert_close(v["frame_stride"], torch.ones(2))
    assert v["orig_size"].tolist() == [[40, 40], [40, 40]]
    # the stored mean is the VAE's encoding of the reader's centred crop (fp16 storage)
    vae = load_vae(str(own_vae))
    src = VideoShardDataset(dataset, ReaderConfig(dtype="float", random_offset=False, kinds=["video"]), 0, 1)
    row = next(i for i in range(src.table.num_rows) if src.row(i)["clip_id"] == v["clip_id"][0])
    from reelforge.shards.plan import PlannedBatch
    clip = src.load_batch(PlannedBatch("v", (row,)), 0)["video"].transpose(1, 2)
    with torch.no_grad():
        np.testing.assert_allclose(v["latent"][0].numpy(), vae.encode(clip).mean[0].numpy(), atol=2e-3, rtol=2e-3)

    # mean_std: a drawn sample differs from the mean, is fixed per (seed, epoch, clip), changes by epoch
    drawn, again, means = _by_clip(_batches(out)), _by_clip(_batches(out)), _by_clip(batches)
    k = v["clip_id"][0]
    assert torch.equal(drawn[k], again[k]) and not torch.equal(drawn[k], means[k])

    # the streaming reader serves the same latents
    cfg = StreamConfig(dataset_dir=str(out), resampled=False, latents=True, latent_sample=False, shuffle_buffer=1,
                       handler="raise")
    streamed = _by_clip(StreamLoader(stream_dataset(cfg)))
    assert streamed.keys() == means.keys()
    assert all(torch.equal(streamed[c], means[c]) for c in means)


def test_encode_with_a_tiny_diffusers_wan_vae(dataset, tmp_path):
    from diffusers import AutoencoderKLWan

    from reelforge.train.encode import EncodeConfig, encode_dataset
    torch.manual_seed(0)
    AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1, latents_mean=[0.0] * 4,
                     latents_std=[1.0] * 4).save_pretrained(tmp_path / "wan")
    summary = encode_dataset(dataset, tmp_path / "lat", EncodeConfig(vae=str(tmp_path / "wan"), store="sample",
                                                                     num_workers=0, where="kind = 'video'"))
    assert summary["encoded"] == 3 and summary["skipped"] == 1
    batches = _batches(tmp_path / "lat")
    assert [tuple(b["latent"].shape) for b in batches] == [(2, 4, 2, 2, 2), (2, 4, 2, 2, 2)]
    assert json.loads((tmp_path / "lat" / "latents.json").read_text())["vae"].endswith("wan")


def test_reader_refuses_latents_on_a_dataset_without_them(dataset):
    with pytest.raises(ValueError, match="reelforge encode"):
        VideoShardDataset(dataset, ReaderConfig(latents=True))


def test_encode_counts_and_names_the_samples_no_bucket_fits(own_vae, tmp_path, capsys):
    # the demo's clips are shorter than every 17-frame bucket of the default table: "encoded=1" of 10 said nothing
    from reelforge.cli import main
    clips = [clip_row("fits", 40, 40, 12, 8), clip_row("short", 40, 40, 3, 8), clip_row("tiny", 8, 8, 12, 8)]
    root = write_dataset(tmp_path / "ds", clips)
    build_index(root, BUCKETS)
    assert main(["encode", str(root), "--vae", str(own_vae), "--out", str(tmp_path / "lat"), "--num-workers", "0"]) == 0
    out, err = capsys.readouterr()
    assert "encoded=1 " in out and "unbucketed=2 " in out
    assert "2 selected sample(s) fit no bucket" in err and "--buckets" in err
