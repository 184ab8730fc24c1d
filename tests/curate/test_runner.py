"""The Ray adapter: stages run as tasks and actors; a worker that dies costs its rows, not the job."""
from __future__ import annotations

import os
import signal

import pytest

from reelforge.curate.runner import StageSpec, fit_to_cluster, missing_rows, run_stages
from reelforge.curate.stage import Resources, Stage


class AddOne(Stage):
    name = "add_one"
    outputs = ("y",)

    def process_row(self, row):
        return {"y": row["x"] + 1}


class Doubler(Stage):
    name = "doubler"
    outputs = ("z",)

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=4, concurrency=1)  # an actor, like a model stage

    def process_row(self, row):
        return {"z": row["y"] * 2}


class Segfault(Stage):
    """Kills its worker process on x == 3, as a crashing native decoder would."""

    name = "segfault"
    outputs = ("w",)

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=1)  # like scene_split: one video per task

    def process_row(self, row):
        if row["x"] == 3:
            os.kill(os.getpid(), signal.SIGSEGV)
        return {"w": 1}


@pytest.fixture(scope="module")
def ray_local():
    from reelforge.cluster import RayConfig, init_ray, shutdown_ray

    import sys

    from ray import cloudpickle

    # the stage classes live in this test module, which Ray's workers cannot import: ship them by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    init_ray(RayConfig(num_cpus=2, dashboard=False, progress_bars=False))
    yield
    shutdown_ray()


def _items(n):
    return [{"key": f"k{i}", "x": i, "status": "ok", "reason": ""} for i in range(n)]


def test_tasks_and_actors(ray_local):
    rows = list(run_stages(_items(10), [StageSpec(AddOne), StageSpec(Doubler)]))
    assert sorted(r["z"] for r in rows) == [2 * (i + 1) for i in range(10)]


def test_a_crashing_worker_loses_only_its_rows(ray_local):
    items = _items(6)
    rows = list(run_stages(items, [StageSpec(Segfault)]))
    returned = {r["key"] for r in rows}
    assert returned == {"k0", "k1", "k2", "k4", "k5"}  # the job went on; only the crashing row is lost
    failed = missing_rows(items, returned, "key", "segfault")
    assert [f["key"] for f in failed] == sorted(set(i["key"] for i in items) - returned)
    assert all(f["status"] == "failed" and "worker crashed" in f["reason"] for f in failed)


def test_actors_never_take_every_cpu():
    plans = fit_to_cluster([Resources(num_cpus=1), Resources(num_cpus=1, concurrency=1),
                            Resources(num_cpus=1, concurrency=1)], total_cpus=2)
    actor_cpus = sum(p.num_cpus for p in plans if p.concurrency)
    assert actor_cpus <= 1.0 and plans[0].num_cpus <= 2 - actor_cpus
