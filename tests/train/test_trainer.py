"""The shared trainer on a toy task: exact resume (one process, two gloo ranks, and a 2-worker Ray Train
run whose worker is killed mid-epoch), per-group backward, LR schedule, EMA, export."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_task import ToyTask  # noqa: E402

from reelforge.train.trainer import Trainer, TrainerConfig, lr_factor  # noqa: E402


pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_thread")]  # tests/train/conftest.py


def _cfg(**kw):
    base = dict(steps=8, lr=1e-2, warmup_steps=2, log_every=1, ema_decay=0.9, tensorboard=False)
    return TrainerConfig(**{**base, **kw})


def _losses(history):
    return [(h["step"], h["loss"], h.get("loss/critic")) for h in history]


def test_stop_and_resume_gives_the_same_losses(tmp_path):
    full = Trainer(ToyTask(), _cfg(tensorboard=True), tmp_path / "full")
    full.fit()
    first = Trainer(ToyTask(), _cfg(stop_after=3), tmp_path / "cut")
    first.fit()
    assert first.state.step == 3 and not (tmp_path / "cut" / "export").exists()
    rest = Trainer(ToyTask(), _cfg(resume="latest"), tmp_path / "cut")
    assert rest.state.step == 3
    rest.fit()
    assert _losses(first.history) + _losses(rest.history) == _losses(full.history)
    assert len(full.history) == 8 and full.history[-1]["loss/critic"] is not None
    # the resumed run saw exactly the batches the unbroken run saw after step 3 (loader position restored)
    assert first.task.seen + rest.task.seen == full.task.seen
    # EMA, export, logs
    exported = (tmp_path / "full" / "export" / "model.safetensors")
    assert exported.exists() and (tmp_path / "full" / "tb").is_dir()
    rows = [json.loads(line) for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == list(range(1, 9))
    assert any(r["kind"] == "eval" and "eval_mse" in r for r in rows)
    ckpts = sorted(p.name for p in (tmp_path / "full" / "checkpoints").iterdir())
    assert ckpts == ["step_00000008"]


def test_each_loss_updates_only_its_group(tmp_path):
    # critic_from=100: the critic never has a loss of its own, so its weights must not move even though
    # the model's loss runs through it
    t = Trainer(ToyTask(critic_from=100), _cfg(steps=3, ema_decay=0), tmp_path)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit()
    after = t.model.state_dict()
    assert torch.equal(before["critic.weight"], after["critic.weight"])
    assert not torch.equal(before["net.0.weight"], after["net.0.weight"])


def test_grad_accumulation_takes_micro_batches(tmp_path):
    t = Trainer(ToyTask(noise=False, critic_from=100), _cfg(steps=2, grad_accum=2, ema_decay=0), tmp_path)
    t.fit()
    assert len(t.task.seen) == 4  # 2 steps x 2 micro-batches, logged once per step
    assert [h["step"] for h in t.history] == [1, 2]


def test_lr_schedule():
    cfg = TrainerConfig(steps=10, lr=1.0, warmup_steps=2, schedule="cosine", min_lr_ratio=0.1)
    f = [lr_factor(cfg, s) for s in range(10)]
    assert f[0] == 0.5 and f[1] == 1.0 and f[2] == 1.0
    assert all(x >= y for x, y in zip(f[2:], f[3:])) and f[-1] > 0.1
    assert lr_factor(TrainerConfig(steps=10, schedule="constant"), 7) == 1.0


def test_bad_param_groups_are_refused(tmp_path):
    class Missing(ToyTask):
        def param_groups(self, model):
            return {"model": list(model.net.parameters())}
    with pytest.raises(ValueError, match="no param group"):
        Trainer(Missing(), _cfg(), tmp_path)


def _gloo_worker(rank, world_size, port, out):
    """One rank: an unbroken run, then a run stopped at step 3 and its resumption (one process group)."""
    import torch.distributed as dist
    torch.set_num_threads(1)  # spawned ranks do not inherit the fixture's setting
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        runs = {}
        for name, run_dir, kw in [("full", "full", {}), ("cut", "cut", {"stop_after": 3}),
                                  ("rest", "cut", {"resume": "latest"})]:
            t = Trainer(ToyTask(), _cfg(**kw), Path(out, run_dir), rank, world_size)
            t.fit()
            runs[name] = _losses(t.history)
        # FSDP2 (one loss per step: the critic never gets its own): same losses as replicated, exact resume
        for name, run_dir, kw in [("ddp1", "ddp1", {}), ("fsdp", "fsdp", {"parallel": "fsdp"}),
                                  ("fsdp_cut", "fsdp_cut", {"parallel": "fsdp", "stop_after": 3}),
                                  ("fsdp_rest", "fsdp_cut", {"parallel": "fsdp", "resume": "latest"})]:
            t = Trainer(ToyTask(critic_from=100, noise=False), _cfg(**kw), Path(out, run_dir), rank, world_size)
            t.fit()
            runs[name] = _losses(t.history)
        # FSDP2 with two losses per step (the GAN shape: the model's loss runs through the critic, the
        # critic's loss through a second forward of it; each group sharded as its own unit)
        for name, kw in [("ddp_gan", {}), ("fsdp_gan", {"parallel": "fsdp"}),
                         ("fsdp_gan_accum", {"parallel": "fsdp", "grad_accum": 2}), ("ddp_gan_accum", {"grad_accum": 2})]:
            t = Trainer(ToyTask(critic_from=2, noise=False), _cfg(**kw), Path(out, name), rank, world_size)
            t.fit()
            runs[name] = _losses(t.history)
        if rank == 0:
            Path(out, "histories.json").write_text(json.dumps(runs))
    finally:
        dist.destroy_process_group()


def test_two_ranks_resume_exactly(tmp_path):
    """Two gloo ranks without Ray: the per-rank loader state and RNG come back from the checkpoint;
    FSDP2 gives the replicated run's losses and resumes exactly too, with one loss per step and with
    two (a model and a critic stepped by their own optimizers, with and without grad accumulation)."""
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_gloo_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    runs = json.loads((tmp_path / "histories.json").read_text())
    assert len(runs["full"]) == 8 and runs["cut"] + runs["rest"] == runs["full"]
    assert runs["fsdp_cut"] + runs["fsdp_rest"] == runs["fsdp"]
    np.testing.assert_allclose([x[1] for x in runs["fsdp"]], [x[1] for x in runs["ddp1"]], rtol=1e-4)
    for fsdp, ddp in (("fsdp_gan", "ddp_gan"), ("fsdp_gan_accum", "ddp_gan_accum")):
        assert [x[2] for x in runs[fsdp]][2:] and all(x[2] is not None for x in runs[fsdp][2:])
        np.testing.assert_allclose([x[1:] for x in runs[fsdp][2:]], [x[1:] for x in runs[ddp][2:]], rtol=1e-4)
        np.testing.assert_allclose([x[1] for x in runs[fsdp]], [x[1] for x in runs[ddp]], rtol=1e-4)
    assert (tmp_path / "cut" / "checkpoints" / "step_00000003" / "rank_1.pt").exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_ray_train_two_workers_killed_mid_epoch_resume_same_losses(tmp_path):
    """2 Ray Train workers (gloo); rank 1 dies by os._exit at step 5 (mid-epoch), Ray Train replaces the
    group and it resumes from the newest checkpoint: the losses match an unbroken run step for step."""
    import toy_task
    from ray import cloudpickle

    from reelforge.cluster import RayConfig, shutdown_ray
    from reelforge.train.launch import LaunchConfig, launch

    cloudpickle.register_pickle_by_value(toy_task)  # the workers cannot import tests/
    ray_cfg = RayConfig(num_cpus=2, dashboard=False, progress_bars=False)
    cfg = _cfg(checkpoint_every=2)
    marker = tmp_path / "crashed"
    try:
        launch(lambda _: ToyTask(), None, cfg, LaunchConfig(num_workers=2), ray_cfg, tmp_path / "a")
        launch(lambda _: ToyTask(crash_at=5, crash_marker=str(marker)), None, cfg,
               LaunchConfig(num_workers=2, max_failures=1), ray_cfg, tmp_path / "b")
    finally:
        shutdown_ray()
    assert marker.exists()

    def losses(run):
        out = {}
        for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines():
            row = json.loads(line)
            if row["kind"] == "train":
                out[row["step"]] = row["loss"]  # a step redone after the restart overwrites its first try
        return out
    assert losses("b") == losses("a") and sorted(losses("a")) == list(range(1, 9))
    assert (tmp_path / "b" / "ray" / "train" / "step_00000008" / "rank_1.pt").exists()


def test_fsdp_units_are_the_param_groups_modules():
    """Under FSDP2 with several losses each param group must be one submodule (its own unit)."""
    from reelforge.train.parallelize import group_modules
    from toy_task import ToyModel

    model = ToyModel()
    units = group_modules(model, {"model": list(model.net.parameters()), "critic": list(model.critic.parameters())})
    assert units == {"model": model.net, "critic": model.critic}
    with pytest.raises(ValueError, match="'split' is not exactly the parameters of one submodule"):
        group_modules(model, {"split": [model.net[0].weight, model.critic.weight]})
