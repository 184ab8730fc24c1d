"""The transformers captioner on a tiny random Qwen2.5-VL loaded from disk like a hub checkpoint:
batched generation with left padding gives each clip what it gets alone; video and image inputs;
frame sampling."""
from __future__ import annotations

import numpy as np
import pytest

from reelforge.recaption.captioner import Captioner, CaptionerConfig, Clip, GenerationSettings
from reelforge.recaption.frames import FrameConfig, frame_indices, sample_frames
from reelforge.recaption.templates import load_template


@pytest.fixture(scope="module")
def captioner(tiny_vlm):
    return Captioner(CaptionerConfig(model=str(tiny_vlm), batch_size=4), load_template("dense-v1"))


def _clips():
    rng = np.random.default_rng(0)
    # different sizes -> different numbers of video tokens -> rows of different lengths, left padded
    return [Clip("a", rng.integers(0, 255, (4, 56, 84, 3), np.uint8), 2.0),
            Clip("b", rng.integers(0, 255, (4, 112, 112, 3), np.uint8), 2.0),
            Clip("c", rng.integers(0, 255, (6, 56, 56, 3), np.uint8), 3.0)]


def test_loads_through_the_auto_classes_and_takes_video(captioner):
    assert type(captioner.model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert captioner.use_video and captioner.processor.tokenizer.padding_side == "left"
    assert "<|video_pad|>" in captioner.prompt(4) and "camera motion" in captioner.prompt(4)


def test_batched_generation_matches_one_clip_at_a_time(captioner):
    settings = GenerationSettings(max_new_tokens=10, min_new_tokens=10)
    clips = _clips()
    batched = captioner.generate(clips, settings)
    alone = [captioner.generate([c], settings)[0] for c in clips]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert all(g.tokens == 10 for g in batched)  # min = max: every row generates exactly 10 tokens


def test_image_input_path(tiny_vlm):
    cap = Captioner(CaptionerConfig(model=str(tiny_vlm), video_input="images"), load_template("short-v1"))
    assert not cap.use_video and cap.prompt(3).count("<|image_pad|>") == 3
    out = cap.generate(_clips()[:2], GenerationSettings(max_new_tokens=4, min_new_tokens=4))
    assert [g.tokens for g in out] == [4, 4]


def test_frame_sampling():
    cfg = FrameConfig(num_frames=8)
    assert cfg.count(100, 25.0) == 8
    per_s = FrameConfig(sampling="fps", fps=2.0, min_frames=4, max_frames=16)
    assert per_s.count(250, 25.0) == 16 and per_s.count(25, 25.0) == 4 and per_s.count(100, 25.0) == 8
    assert frame_indices(16, 4) == [2, 6, 10, 14] and frame_indices(3, 4) == [0, 1, 1, 2]
    from shard_fixtures import encode_mp4, make_frames
    frames, fps = sample_frames(encode_mp4(make_frames(0, 16, 96, 64), 8), FrameConfig(num_frames=4, max_pixels=48 * 32))
    assert frames.shape == (4, 32, 48, 3) and fps == pytest.approx(2.0)
    with pytest.raises(ValueError):
        sample_frames(b"\0" * 1000, cfg)


def test_7b_preset_has_the_qwen25_vl_7b_shapes():
    """The bench's --preset 7b (built on the meta device here: no memory, no init)."""
    import torch

    from reelforge.recaption.random_model import build_vlm
    model, processor = build_vlm("7b", device="meta", dtype=torch.bfloat16)
    assert 8.2e9 < sum(p.numel() for p in model.parameters()) < 8.4e9  # Qwen2.5-VL-7B-Instruct: 8.29 B
    assert processor.video_processor.size.longest_edge == 360 * 420


@pytest.mark.gpu
def test_gpu_path_is_bf16(tiny_vlm):
    cap = Captioner(CaptionerConfig(model=str(tiny_vlm)), load_template("dense-v1"))
    assert cap.device == "cuda" and str(next(cap.model.parameters()).dtype) == "torch.bfloat16"
    assert cap.model.config._attn_implementation == "sdpa"
    out = cap.generate(_clips(), GenerationSettings(max_new_tokens=6, min_new_tokens=6))
    assert [g.tokens for g in out] == [6, 6, 6]
