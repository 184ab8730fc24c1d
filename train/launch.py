"""Running the trainer on N workers with Ray Train: the only module in train/ that touches Ray.

    launch(make_task, task_cfg, trainer_cfg, LaunchConfig(num_workers=2), ray_cfg, out_dir, config_yaml)

Ray Train's ``TorchTrainer`` starts one worker per rank and the process group (gloo on CPU, NCCL on
GPU); each worker builds the task from ``make_task(task_cfg)`` and runs ``Trainer`` with
``ray.train.get_context()``'s rank and world size, which the task hands to its shard reader. Checkpoints
go through ``ray.train.report``: every rank writes its files into a local folder and Ray Train gathers
them into ``OUT/ray/<name>/step_<n>``. A worker that dies is replaced and the group resumes from the
newest reported checkpoint (``max_failures``); ``trainer.resume`` resumes a stopped run the same way.
``mode: local`` runs one rank in this process without Ray (quick CPU runs, debugging).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from reelforge.cluster import RayConfig, init_ray
from reelforge.train.checkpoint import latest_checkpoint
from reelforge.train.task import TrainTask
from reelforge.train.trainer import Trainer, TrainerConfig


@dataclass
class LaunchConfig:
    mode: Literal["ray", "local"] = "ray"
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    max_failures: int = 0              # workers lost before the run gives up (each loss resumes from a checkpoint)
    name: str = "train"                # Ray Train run name: checkpoints under OUT/ray/<name>/

    def __post_init__(self):
        if self.num_workers < 1 or self.cpus_per_worker < 1 or self.max_failures < 0:
            raise ValueError("num_workers and cpus_per_worker must be >= 1, max_failures >= 0")
        if self.mode == "local" and (self.num_workers != 1):
            raise ValueError("mode: local runs one rank in this process; use mode: ray for num_workers > 1")


def _resume_path(trainer_cfg: TrainerConfig, out_dir: Path) -> Path | None:
    if trainer_cfg.resume == "latest":
        return latest_checkpoint(out_dir)
    return Path(trainer_cfg.resume) if trainer_cfg.resume else None


def launch(make_task: Callable[[Any], TrainTask], task_cfg: Any, trainer_cfg: TrainerConfig, launch_cfg: LaunchConfig,
           ray_cfg: RayConfig, out_dir: str | Path, config_yaml: str | None = None) -> dict:
    """Train; returns the last reported metrics (rank 0's)."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    resume = _resume_path(trainer_cfg, out_dir)
    if launch_cfg.mode == "local":
        trainer = Trainer(make_task(task_cfg), trainer_cfg, out_dir, resume_from=resume, config_yaml=config_yaml,
                          checkpoint_dir=lambda step: out_dir / "checkpoints" / f"step_{step:08d}")
        return trainer.fit()

    import ray.train
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    init_ray(ray_cfg)
    # Ray Train moves each worker into its run folder: a relative path in the config (the README's
    # `--set data.dataset=out/demo/dataset`) then named nothing. Off, a worker keeps the driver's directory
    # (a `ray job submit --working-dir` job's, on every node), so paths mean what they mean on the command line.
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    loop_cfg = {"make_task": make_task, "task_cfg": task_cfg, "trainer_cfg": trainer_cfg, "out_dir": str(out_dir),
                "config_yaml": config_yaml}
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=loop_cfg,
        torch_config=TorchConfig(backend="nccl" if launch_cfg.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=launch_cfg.num_workers, use_gpu=launch_cfg.use_gpu,
                                     resources_per_worker={"CPU": launch_cfg.cpus_per_worker}),
        run_config=RunConfig(name=launch_cfg.name, storage_path=str(out_dir / "ray"),
                             failure_config=FailureConfig(max_failures=launch_cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=trainer_cfg.keep_checkpoints)),
        resume_from_checkpoint=ray.train.Checkpoint.from_directory(str(resume)) if resume else None,
    )
    result = trainer.fit()
    return dict(result.metrics or {})


def _worker_loop(loop_cfg: dict) -> None:
    """One rank, inside a Ray Train worker (the process group already exists)."""
    import ray.train
    import torch
    from ray.train import Checkpoint
    from ray.train.torch import get_device

    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    device = get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    staging = Path(tempfile.mkdtemp(prefix=f"reelforge-ckpt-r{rank}-"))

    def report(step: int, metrics: dict, path: Path) -> None:
        # every rank reports (a barrier); Ray Train merges the ranks' folders into one checkpoint
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(path)),
                         checkpoint_dir_name=f"step_{step:08d}", delete_local_checkpoint_after_upload=True)

    task = loop_cfg["make_task"](loop_cfg["task_cfg"])
    kwargs = dict(config_yaml=loop_cfg["config_yaml"], reporter=report,
                  checkpoint_dir=lambda step: staging / f"step_{step:08d}")
    checkpoint = ray.train.get_checkpoint()  # set on resume and after a worker failure
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            trainer = Trainer(task, loop_cfg["trainer_cfg"], loop_cfg["out_dir"], rank, world_size, device,
                              resume_from=path, **kwargs)
    else:
        cfg = loop_cfg["trainer_cfg"]
        if cfg.resume:  # resolved by the driver into resume_from_checkpoint; nothing there means start fresh
            from dataclasses import replace
            cfg = replace(cfg, resume="")
        trainer = Trainer(task, cfg, loop_cfg["out_dir"], rank, world_size, device, **kwargs)
    trainer.fit()
