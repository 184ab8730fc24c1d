"""Prompt upsampling with a tiny random Qwen2 LM loaded from disk: batched prompts, the fallback to the
user's prompt when the rewrite is unusable twice, the command-line options."""
from __future__ import annotations

import argparse

from reelforge.recaption import UpsampleConfig, upsample
from reelforge.recaption.captioner import GenerationSettings
from reelforge.recaption.prompt_upsample import add_upsample_arguments, upsample_from_args


def test_upsample_rewrites_and_falls_back(tiny_llm):
    cfg = UpsampleConfig(model=str(tiny_llm), min_words=1,
                         generation=GenerationSettings(max_new_tokens=12, min_new_tokens=12))
    one = upsample("a cat on a skateboard", cfg)
    assert isinstance(one, str) and one and one != "a cat on a skateboard"
    many = upsample(["a cat", "a dog in the rain"], cfg)
    assert len(many) == 2 and all(many)
    # random weights never write 500 words: both attempts fail and the prompt comes back unchanged
    strict = UpsampleConfig(model=str(tiny_llm), min_words=500, generation=GenerationSettings(max_new_tokens=4),
                            retry=GenerationSettings(max_new_tokens=4, do_sample=True))
    assert upsample(["keep me", "and me"], strict) == ["keep me", "and me"]


def test_command_line_options(tiny_llm):
    parser = argparse.ArgumentParser()
    add_upsample_arguments(parser)
    assert upsample_from_args(parser.parse_args([]), ["as is"]) == ["as is"]
    args = parser.parse_args(["--upsample", "--upsample-model", str(tiny_llm), "--upsample-set", "min_words=500",
                              "--upsample-set", "generation.max_new_tokens=4", "--upsample-set", "retry.max_new_tokens=4"])
    assert upsample_from_args(args, ["short"]) == ["short"]
