"""`num_gpus: auto` on the model stages: a GPU slice for the task that runs them only when the cluster has
GPUs, decided from the cluster's resources where the build plans its tasks (never from the driver's
hardware). Checked on CPU with fake cluster-resource dicts."""
import pytest

from reelforge.config import ConfigError
from reelforge.curate.stage import Resources, gpu_request
from reelforge.curate.stages.aesthetic import AestheticConfig, AestheticStage
from reelforge.curate.stages.caption_match import CaptionMatchConfig, CaptionMatchStage
from reelforge.curate.stages.nsfw import NsfwConfig, NsfwStage

CPU_ONLY = {"CPU": 16.0, "memory": 1e10}
ONE_GPU = {"CPU": 16.0, "GPU": 1.0}


def test_auto_reserves_a_slice_only_on_a_cluster_with_gpus():
    ask = Resources(num_cpus=1.0, **gpu_request("nsfw", "auto", "auto"))
    assert ask.num_gpus == 0.0 and ask.auto_gpus
    assert ask.on_cluster(CPU_ONLY).num_gpus == 0.0
    assert ask.on_cluster(ONE_GPU).num_gpus == pytest.approx(1 / 16)  # the GPUs per CPU: 16 tasks share it
    assert ask.on_cluster({"CPU": 4.0, "GPU": 8.0}).num_gpus == 1.0   # never more than one per task
    shared = Resources(**gpu_request("nsfw", "auto", "auto", share=0.25))
    assert shared.on_cluster(ONE_GPU).num_gpus == 0.25
    assert shared.on_cluster(CPU_ONLY).num_gpus == 0.0
    assert not shared.on_cluster(ONE_GPU).auto_gpus   # decided once


def test_numbers_and_explicit_devices_are_not_auto():
    assert Resources(**gpu_request("nsfw", "auto", 0.5)).on_cluster(CPU_ONLY).num_gpus == 0.5
    assert Resources(**gpu_request("nsfw", "auto", 0.0)).on_cluster(ONE_GPU).num_gpus == 0.0
    assert Resources(**gpu_request("nsfw", "cuda", "auto")).num_gpus == 1.0   # cuda cannot run without one
    assert Resources(**gpu_request("nsfw", "cpu", "auto")).on_cluster(ONE_GPU).num_gpus == 0.0
    with pytest.raises(ValueError, match="nsfw: num_gpus must be a number >= 0 or 'auto'"):
        gpu_request("nsfw", "auto", "all")
    with pytest.raises(ValueError, match="gpu_share"):
        NsfwConfig(gpu_share=2.0)
    with pytest.raises(ValueError, match="num_gpus"):
        AestheticConfig(num_gpus=-1)


def test_model_stages_default_to_auto():
    for stage, cfg in ((NsfwStage, NsfwConfig()), (AestheticStage, AestheticConfig(pretrained="w.pt")),
                       (CaptionMatchStage, CaptionMatchConfig(pretrained="w.pt"))):
        ask = stage.resources(cfg)
        assert (ask.num_gpus, ask.on_cluster(CPU_ONLY).num_gpus) == (0.0, 0.0), stage.name
        assert ask.on_cluster(ONE_GPU).num_gpus == pytest.approx(1 / 16), stage.name
    # without weights there is nothing to put on a GPU, whatever the cluster has
    assert AestheticStage.resources(AestheticConfig()).on_cluster(ONE_GPU).num_gpus == 0.0
    assert CaptionMatchStage.resources(CaptionMatchConfig()).on_cluster(ONE_GPU).num_gpus == 0.0


def test_the_config_file_takes_auto_or_a_number():
    from reelforge.cli import _load_build_config

    cfg = _load_build_config(None, ["curate.filters.nsfw.num_gpus=0.5", "curate.filters.aesthetic.gpu_share=0.25"])
    assert cfg.curate.filters.nsfw.num_gpus == 0.5 and cfg.curate.filters.caption_match.num_gpus == "auto"
    with pytest.raises(ConfigError, match="curate.filters.nsfw"):
        _load_build_config(None, ["curate.filters.nsfw.num_gpus=many"])


def test_the_video_task_asks_ray_for_the_slice_the_cluster_allows(monkeypatch):
    """The default build's per-video task, planned by run_tasks against a fake cluster: the options Ray is
    given carry a GPU slice on a GPU cluster and none on a CPU-only one."""
    import ray

    from reelforge.cli import _load_build_config
    from reelforge.curate import runner
    from reelforge.curate.pipeline import stage_specs
    from reelforge.curate.video_task import VideoTask

    cfg = _load_build_config(None, [])
    task = runner.StageSpec(VideoTask, ("/nowhere", stage_specs(cfg.curate, "video"), stage_specs(cfg.curate, "clip"),
                                        cfg.shards))
    asked = []

    class FakeRemote:
        def options(self, **opts):
            asked.append(opts)
            return self

    monkeypatch.setattr(ray, "put", lambda obj: obj)
    monkeypatch.setattr(ray, "remote", lambda fn: FakeRemote())
    for cluster, gpus in ((CPU_ONLY, None), (ONE_GPU, 1 / 16)):
        monkeypatch.setattr(ray, "cluster_resources", lambda: cluster)
        asked.clear()
        assert list(runner.run_tasks(iter([]), task, VideoTask.resources(*task.args))) == []
        assert {o.get("num_gpus") for o in asked} == {gpus} and {o["num_cpus"] for o in asked} == {1.0}
