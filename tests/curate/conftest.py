"""Fixtures shared by the build tests: an embedded Ray and a tiny CLIP saved in the real formats."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_local():
    from reelforge.cluster import RayConfig, init_ray, shutdown_ray

    init_ray(RayConfig(num_cpus=2, dashboard=False, progress_bars=False))
    yield
    shutdown_ray()


@pytest.fixture(scope="session")
def tiny_clip_overrides(tmp_path_factory):
    """A randomly initialised open_clip model and a LAION-format linear head, saved in the real formats
    and loaded by the build through the same path real weights take."""
    import torch

    from reelforge.curate.clip_models import TINY_CLIP_CONFIG, save_random_clip

    d = tmp_path_factory.mktemp("clip")
    cfg_path, ckpt = save_random_clip(d, "e2e-tiny-clip")
    head = d / "head.pth"
    torch.manual_seed(0)
    torch.save({"weight": torch.randn(1, TINY_CLIP_CONFIG["embed_dim"]), "bias": torch.tensor([5.0])}, head)
    return ["curate.filters.aesthetic.model=e2e-tiny-clip", f"curate.filters.aesthetic.model_config={cfg_path}",
            f"curate.filters.aesthetic.pretrained={ckpt}", f"curate.filters.aesthetic.head={head}",
            "curate.filters.aesthetic.min_score=-1000",
            # random CLIP weights put unrelated clips close together: only exact copies are duplicates
            "curate.filters.dedup.threshold=0.99999"]


