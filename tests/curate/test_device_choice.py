"""GPU use is asked for from the config and `device: auto` is decided on the worker, never on the driver.

The driver here pretends to have CUDA (``torch.cuda.is_available`` patched in this process only): a stage
planned on it must still ask Ray for no GPU unless its config says so, and a model loaded by a Ray worker
must resolve ``auto`` from what that worker sees (no GPU: this machine has none, and Ray hides GPUs from
actors that reserved none)."""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

from reelforge.curate.clip_models import gpus_to_reserve, save_random_clip
from reelforge.curate.onnx_models import providers
from reelforge.curate.runner import StageSpec, run_stages
from reelforge.curate.stage import Resources
from reelforge.curate.stages.aesthetic import AestheticConfig, AestheticStage
from reelforge.curate.stages.caption_match import CaptionMatchConfig, CaptionMatchStage
from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage
from reelforge.curate.stages.text_overlay import TextOverlayConfig, TextOverlayStage


@pytest.fixture
def driver_has_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_gpu_reservation_comes_from_the_config_not_the_driver(driver_has_cuda):
    for stage, cfg_cls in ((AestheticStage, AestheticConfig), (CaptionMatchStage, CaptionMatchConfig)):
        assert stage.resources(cfg_cls(pretrained="w.pt")).num_gpus == 0.0
        assert stage.resources(cfg_cls(pretrained="w.pt", num_gpus=0.5)).num_gpus == 0.5
        assert stage.resources(cfg_cls(pretrained="w.pt", device="cuda")).num_gpus == 1.0
        assert stage.resources(cfg_cls(num_gpus=1)).num_gpus == 0.0  # no weights: nothing to put on a GPU
    assert NsfwStage.resources(NsfwConfig()).num_gpus == 0.0
    assert NsfwStage.resources(NsfwConfig(num_gpus=0.25)).num_gpus == 0.25
    assert NsfwStage.resources(NsfwConfig(device="cuda")).num_gpus == 1.0
    assert TextOverlayStage.resources(TextOverlayConfig()).num_gpus == 0.0
    assert TextOverlayStage.resources(TextOverlayConfig(num_gpus=1)).num_gpus == 1.0
    assert gpus_to_reserve("cuda:1", 2) == 2
    with pytest.raises(ValueError, match="num_gpus"):
        AestheticConfig(num_gpus=-1)


def test_onnx_auto_needs_a_visible_gpu(monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert providers("auto")[0] == "CUDAExecutionProvider"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # a Ray worker that reserved no GPU
    assert providers("auto") == ["CPUExecutionProvider"]
    assert providers("cpu") == ["CPUExecutionProvider"]


class DeviceProbe(AestheticStage):
    """The aesthetic stage, also reporting where it resolved its device and in which process."""
    name = "device_probe"
    outputs = AestheticStage.outputs + ("device", "pid", "cuda_visible")

    def __call__(self, batch):
        out = super().__call__(batch)
        n = len(out["status"])
        out.update(device=[self.clip.device] * n, pid=[os.getpid()] * n,
                   cuda_visible=[os.environ.get("CUDA_VISIBLE_DEVICES")] * n)
        return out


@pytest.fixture(scope="module")
def ray_probe(ray_local):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/


def test_auto_is_resolved_on_the_worker(ray_probe, driver_has_cuda, tmp_path):
    cfg_path, ckpt = save_random_clip(tmp_path, "device-probe-clip")
    cfg = AestheticConfig(model="device-probe-clip", model_config=str(cfg_path), pretrained=str(ckpt),
                          device="auto", batch_size=2)
    # num_gpus auto (the default) on a cluster without GPUs: none reserved
    assert DeviceProbe.resources(cfg).on_cluster({"CPU": 2.0}) == Resources(num_cpus=0.5, num_gpus=0.0, batch_size=2,
                                                                             concurrency=1)
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    items = [{"clip_id": f"c{i}", "frames": frames, "status": "ok", "reason": ""} for i in range(2)]
    rows = list(run_stages(items, [StageSpec(DeviceProbe, (cfg,))], errors="reraise"))
    assert len(rows) == 2
    for r in rows:
        assert r["status"] == "ok" and len(r["clip_embedding"]) == 64
        # the driver says "cuda"; the worker that loaded the model decided for itself
        assert r["device"] == "cpu" and r["pid"] != os.getpid()
        assert r["cuda_visible"] == ""  # Ray hid the (absent) GPUs from an actor that reserved none


@pytest.mark.gpu
def test_the_gpu_goes_to_the_actor_that_reserved_it(ray_probe, tmp_path):
    """On a GPU machine: num_gpus=1 -> the worker sees its GPU and auto is cuda; num_gpus=0 -> the worker
    sees none (though the node has one) and auto is cpu."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cfg_path, ckpt = save_random_clip(tmp_path, "device-probe-gpu")
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    items = [{"clip_id": f"c{i}", "frames": frames, "status": "ok", "reason": ""} for i in range(2)]
    seen = {}
    for gpus in (1.0, 0.0):
        cfg = AestheticConfig(model="device-probe-gpu", model_config=str(cfg_path), pretrained=str(ckpt),
                              device="auto", num_gpus=gpus, batch_size=2)
        seen[gpus] = {(r["device"], r["cuda_visible"]) for r in
                      run_stages(items, [StageSpec(DeviceProbe, (cfg,))], errors="reraise")}
    print(seen)
    ((device, visible),) = seen[1.0]
    assert device == "cuda" and visible not in ("", None)
    assert seen[0.0] == {("cpu", "")}


def test_caption_pool_is_planned_from_the_cluster_not_the_driver(driver_has_cuda):
    from reelforge.recaption.runner import plan_pool

    # the driver "has" CUDA, the cluster has none: CPU actors (their Captioner resolves auto on the worker)
    cpu = plan_pool(0, 1.0, "transformers", {"CPU": 2.0})
    assert (cpu.actors, cpu.num_gpus) == (1, 0.0)
    gpu = plan_pool(0, 1.0, "transformers", {"CPU": 64.0, "GPU": 4.0})
    assert (gpu.actors, gpu.num_gpus) == (4, 1.0)  # one actor per GPU of the cluster
    assert plan_pool(0, 1.0, "openai", {"CPU": 64.0, "GPU": 4.0}).num_gpus == 0.0  # a remote server: no GPU here
