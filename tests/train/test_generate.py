"""`reelforge generate` from an exported DiT, and the attribute oracle the quality number rests on."""
from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
import torch

from reelforge.samples import ATTRIBUTE_HELD_OUT, attribute_specs, render_frames
from reelforge.train.dit.attributes import held_out_prompts, oracle, seen_prompts
from reelforge.train.dit.codec import PixelCodec, load_codec
from reelforge.train.dit.model import DiT, DiTConfig
from reelforge.train.dit.task import DiTTrainConfig, export_dit
from reelforge.train.dit.text import TextEncoderConfig, make_tiny_t5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tmp_path_factory.mktemp("gen")
    t5 = make_tiny_t5(root / "t5", ["a red circle moves left", "a blue square"], d_model=24)
    torch.manual_seed(0)
    model = DiT(DiTConfig.from_preset("DiT-nano", in_channels=3, text_dim=24, patch=[1, 2, 2]))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    cfg = DiTTrainConfig(text=TextEncoderConfig(name=str(t5), max_length=16, device="cpu"), codec="pixel:4")
    cfg.sampler.steps, cfg.eval.fps = 3, 8.0
    return export_dit(model, cfg, (3, 4, 4, 6), root / "export")


def test_generate_writes_seeded_mp4s(exported, tmp_path):
    from reelforge.cli import main

    args = ["generate", "--checkpoint", str(exported), "--prompt", "a red circle moves left",
            "--prompt", "a blue square", "--out", str(tmp_path / "a"), "--seed", "3"]
    assert main(args) == 0
    records = json.loads((tmp_path / "a" / "prompts.json").read_text())
    assert [r["seed"] for r in records] == [3, 4]
    with av.open(records[0]["path"]) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (16, 24, 3)       # latent 4x6 × pixel:4
    main(args[:-4] + ["--out", str(tmp_path / "b"), "--seed", "3"])
    assert (tmp_path / "a" / "video_000.mp4").read_bytes() == (tmp_path / "b" / "video_000.mp4").read_bytes()
    # another size: any bucket
    assert main(args[:3] + ["--prompt", "a red circle", "--out", str(tmp_path / "c"), "--size", "32x32",
                            "--frames", "2"]) == 0
    with av.open(str(tmp_path / "c" / "video_000.mp4")) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 2 and frames[0].shape == (32, 32, 3)


def test_upsample_goes_through_the_recaption_package(exported, tmp_path, monkeypatch):
    import reelforge.recaption.prompt_upsample as pu
    from reelforge.cli import main

    seen = []

    def fake_upsample(prompts, cfg=None):
        seen.append((list(prompts), cfg.model))
        return [p + ", rendered in detail" for p in prompts]

    monkeypatch.setattr(pu, "upsample", fake_upsample)
    assert main(["generate", "--checkpoint", str(exported), "--prompt", "a red circle", "--out", str(tmp_path),
                 "--upsample", "--upsample-model", "/models/llm"]) == 0
    assert seen == [(["a red circle"], "/models/llm")]
    assert json.loads((tmp_path / "prompts.json").read_text())[0]["prompt"] == "a red circle, rendered in detail"


def test_oracle_reads_every_true_clip_through_the_codec():
    codec = PixelCodec(4)
    for held in (False, True):
        for spec in attribute_specs(0, held, variants=1)[::3]:
            video = np.stack(list(render_frames(spec)))
            _, color, direction = spec.name.split("_")[:3]
            for v in (video, codec.decode(codec.encode(torch.from_numpy(video)[None]))[0].numpy()):
                got = oracle(v)
                assert (got["color"], got["direction"]) == (color, direction), spec.name
    assert oracle(np.full((8, 64, 64, 3), 128, np.uint8))["color"] is None
    still = np.stack(list(render_frames(attribute_specs(0, False, 1)[0])))[[0] * 8]
    assert oracle(still)["direction"] is None


def test_held_out_pairs_never_reach_training_and_prompts_cover_them():
    train_names = {s.name for s in attribute_specs(0, held_out=False)}
    assert not any(f"_{c}_{d}_" in n for n in train_names for c, d in ATTRIBUTE_HELD_OUT)
    held = held_out_prompts()
    assert len(held) == 16 and {(p["color"], p["direction"]) for p in held} == set(ATTRIBUTE_HELD_OUT)
    assert len(seen_prompts()) == 12 and not {(p["color"], p["direction"]) for p in seen_prompts()} & set(ATTRIBUTE_HELD_OUT)
    assert "red circle moves left" in held[0]["prompt"]


def test_codec_errors():
    with pytest.raises(ValueError, match="factor"):
        load_codec("pixel:0")
