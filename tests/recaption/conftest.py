"""Fixtures for the captioning tests: a tiny random Qwen2.5-VL saved like a hub checkpoint, a tiny text LM,
a small indexed dataset of generated clips, and an embedded Ray."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # caption_fixtures
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))  # shard_fixtures
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory) -> Path:
    """Path of a random-weight Qwen2.5-VL (config, weights, BPE tokenizer, processors, chat template)."""
    from reelforge.recaption.random_model import build_vlm
    out = tmp_path_factory.mktemp("tiny-vlm")
    build_vlm("tiny", out)
    return out


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory) -> Path:
    from reelforge.recaption.random_model import build_llm
    out = tmp_path_factory.mktemp("tiny-llm")
    build_llm("tiny", out)
    return out


@pytest.fixture(scope="session")
def ray_session():
    from reelforge.cluster import RayConfig, init_ray, shutdown_ray
    init_ray(RayConfig(num_cpus=2, dashboard=False, progress_bars=False))
    yield
    shutdown_ray()


