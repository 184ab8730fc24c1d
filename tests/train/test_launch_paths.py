"""A relative path in a training config means on the Ray Train workers what it means on the command line:
`reelforge train vae configs/train/vae/tiny.yaml --set data.dataset=out/demo/dataset` (the README's command)
failed with "no index at out/demo/dataset" because Ray Train had moved each worker into its run folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from toy_task import ToyTask  # noqa: E402


def _task_reading(relative: str):
    def make(_):
        # what a task does with data.dataset: open it relative to the current directory
        if not Path(relative).is_file():
            raise FileNotFoundError(f"{relative} not found from {os.getcwd()}")
        return ToyTask()
    return make


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_train_workers_resolve_relative_paths_like_the_driver(tmp_path, monkeypatch, capfd):
    import toy_task
    from ray import cloudpickle

    from reelforge.cluster import RayConfig, shutdown_ray
    from reelforge.train.launch import LaunchConfig, launch
    from reelforge.train.trainer import TrainerConfig

    cloudpickle.register_pickle_by_value(toy_task)  # the workers cannot import tests/
    monkeypatch.delenv("RAY_CHDIR_TO_TRIAL_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "index.parquet").write_bytes(b"")
    cfg = TrainerConfig(steps=2, lr=1e-2, warmup_steps=0, log_every=1, tensorboard=False, ema_decay=0.0)
    try:
        launch(_task_reading("data/index.parquet"), None, cfg, LaunchConfig(num_workers=2),
               RayConfig(num_cpus=2, dashboard=False, progress_bars=False), "run")
    finally:
        shutdown_ray()
    assert (tmp_path / "run" / "export").is_dir()
    # and each line rank 0 prints reaches the log once (Ray Train's print patch doubled every one)
    out = capfd.readouterr()
    started = [line for line in (out.out + out.err).splitlines() if "training toy:" in line]
    assert len(started) == 1, started
