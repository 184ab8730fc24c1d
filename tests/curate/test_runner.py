"""The Ray adapter: rows stream out as they finish, a failure costs one row with its real reason, and a
worker that dies costs only the item that kills it."""
from __future__ import annotations

import os
import signal
import sys
import time

import numpy as np
import pytest

from reelforge.curate.runner import StageError, StageSpec, fit_to_cluster, missing_rows, plan_steps, run_stages
from reelforge.curate.stage import Resources, Stage, batch_len, row_at, rows_to_batch


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
        return Resources(num_cpus=1, batch_size=3)  # the killing row shares its block with two others

    def process_row(self, row):
        if row["x"] == 3:
            os.kill(os.getpid(), signal.SIGSEGV)
        return {"w": 1}


class Slow(Stage):
    """Like transcode: seconds per row, two rows per batch; stamps when each row was done."""

    name = "slow"
    outputs = ("done_at",)

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=2)

    def process_row(self, row):
        time.sleep(0.25)
        return {"done_at": time.time()}


class Cheap(Stage):
    """Like the basic filter: declares a huge batch, which used to hold every row back to the end."""

    name = "cheap"
    outputs = ("c",)

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=0.25, batch_size=256)

    def process_row(self, row):
        return {"c": 1}


class Fat(Stage):
    """1 MB per row, made as fast as possible; leaves a marker file per row it made."""

    name = "fat"
    outputs = ("payload", "frames")

    def __init__(self, marker_dir: str):
        self.marker_dir = marker_dir

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=1)

    def process_row(self, row):
        open(os.path.join(self.marker_dir, row["key"]), "w").close()
        return {"payload": os.urandom(1 << 20), "frames": np.zeros((2, 4, 4, 3), np.uint8)}


class BatchedBug(Stage):
    """A batched ``__call__`` (like the model stages) that raises for the whole batch on one row."""

    name = "batched_bug"
    outputs = ("v",)

    @classmethod
    def resources(cls, *config):
        return Resources(num_cpus=1, batch_size=4)

    def __call__(self, batch):
        rows = [row_at(batch, i) for i in range(batch_len(batch))]
        for r in rows:
            if r["x"] == 3:
                raise RuntimeError(f"cannot handle x={r['x']}")
            r["v"] = r["x"]
        return rows_to_batch(rows, like=batch)


class RowBug(Stage):
    name = "row_bug"
    outputs = ("v",)

    def process_row(self, row):
        return {"v": 1 / (row["x"] - 3)}  # ZeroDivisionError on x == 3: a bug, not bad data


class BadData(Stage):
    name = "bad_data"
    outputs = ("v",)

    def process_row(self, row):
        if row["x"] == 3:
            raise ValueError("frames must be (K, H, W, 3)")
        return {"v": 1}


class NoWeights(Stage):
    name = "no_weights"
    outputs = ("v",)

    def __init__(self):
        raise RuntimeError("weights /nope.pt do not load")


@pytest.fixture(scope="module")
def ray_local():
    from ray import cloudpickle

    from reelforge.cluster import RayConfig, init_ray, shutdown_ray

    # the stage classes live in this test module, which Ray's workers cannot import: ship them by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    init_ray(RayConfig(num_cpus=2, dashboard=False, progress_bars=False))
    yield
    shutdown_ray()


def _items(n):
    return [{"key": f"k{i}", "x": i, "status": "ok", "reason": ""} for i in range(n)]


def test_tasks_and_actors(ray_local):
    rows = list(run_stages(_items(10), [StageSpec(AddOne), StageSpec(Doubler)], errors="reraise"))
    assert sorted(r["z"] for r in rows) == [2 * (i + 1) for i in range(10)]
    assert all(not k.startswith("_rf") for r in rows for k in r)


def test_rows_arrive_while_later_rows_are_still_being_made(ray_local):
    arrived = []
    for row in run_stages(_items(12), [StageSpec(Slow), StageSpec(Cheap)], errors="reraise"):
        arrived.append((time.time(), row["done_at"]))
    assert len(arrived) == 12
    last_done = max(done for _, done in arrived)
    early = [t for t, _ in arrived if t < last_done]
    # the big batch of the cheap stage used to make all 12 arrive after the last one was done
    assert len(early) >= 6, arrived


def test_rows_alive_stay_bounded_behind_a_slow_consumer(ray_local, tmp_path):
    alive = []
    for n, row in enumerate(run_stages(_items(40), [StageSpec(Fat, (str(tmp_path),))], errors="reraise",
                                       drop=("frames",), buffer_bytes=8 << 20)):
        assert "frames" not in row and len(row["payload"]) == 1 << 20
        alive.append(len(os.listdir(tmp_path)) - n)  # made but not yet consumed
        time.sleep(0.05)  # a slow shard writer
    assert n == 39
    # without the budget ~30 of the 40 rows piled up (Ray's default is a share of the whole store)
    assert max(alive) <= 12, alive


def test_an_exception_costs_only_its_row_with_the_real_reason(ray_local):
    rows = {r["key"]: r for r in run_stages(_items(8), [StageSpec(BatchedBug), StageSpec(AddOne)],
                                            errors="record")}
    assert len(rows) == 8
    assert rows["k3"]["status"] == "failed"
    assert rows["k3"]["reason"] == "batched_bug: RuntimeError: cannot handle x=3"
    assert rows["k3"]["y"] is None or np.isnan(rows["k3"]["y"])  # later stages skip a failed row
    assert all(rows[f"k{i}"]["status"] == "ok" and rows[f"k{i}"]["y"] == i + 1 for i in range(8) if i != 3)


def test_reraise_policy_turns_a_bug_into_an_error(ray_local):
    with pytest.raises(StageError, match="ZeroDivisionError"):
        list(run_stages(_items(6), [StageSpec(RowBug)], errors="reraise"))
    with pytest.raises(StageError, match="cannot handle x=3"):
        list(run_stages(_items(6), [StageSpec(BatchedBug)], errors="reraise"))


def test_bad_data_is_a_row_under_either_policy(ray_local):
    rows = {r["key"]: r for r in run_stages(_items(6), [StageSpec(BadData)], errors="reraise")}
    assert rows["k3"]["status"] == "failed" and "bad_data: ValueError: frames must be" in rows["k3"]["reason"]
    assert sum(r["status"] == "ok" for r in rows.values()) == 5


def test_a_stage_that_cannot_start_fails_every_row_saying_why(ray_local):
    rows = list(run_stages(_items(4), [StageSpec(AddOne), StageSpec(NoWeights)], errors="record"))
    assert len(rows) == 4
    assert all(r["reason"] == "no_weights: cannot start: RuntimeError: weights /nope.pt do not load" for r in rows)


def test_a_dying_worker_costs_only_the_row_that_kills_it(ray_local):
    items = _items(6)
    rows = {r["key"]: r for r in run_stages(items, [StageSpec(Segfault)], errors="reraise")}
    assert set(rows) == {i["key"] for i in items}  # every item has a row
    assert rows["k3"]["status"] == "failed" and "worker died on this item" in rows["k3"]["reason"]
    # k4 and k5 shared the killing row's block: the isolating re-run brought them back
    assert all(rows[k]["status"] == "ok" and rows[k]["w"] == 1 for k in rows if k != "k3")
    assert missing_rows(items, set(rows), "key", "segfault") == []


def test_steps_fuse_stateless_stages_and_never_wait_for_more_rows_than_come():
    specs = [StageSpec(Slow), StageSpec(Cheap), StageSpec(Doubler), StageSpec(Cheap)]
    steps = plan_steps(specs, [s.cls.resources() for s in specs])
    assert [[s.name for s in chain] for chain, _ in steps] == [["slow", "cheap"], ["doubler"], ["cheap"]]
    # a chain takes its smallest batch: a one-video-per-task stage keeps videos in parallel tasks
    assert plan_steps([StageSpec(Cheap), StageSpec(Slow)], [Cheap.resources(), Slow.resources()])[0][1].batch_size == 2
    assert [res.batch_size for _, res in steps] == [2, 2, 2]  # a CPU actor waits for no more than come
    gpu = [s.cls.resources() for s in specs]
    gpu[2] = Resources(num_cpus=1, num_gpus=1, batch_size=16, concurrency=1)
    assert [res.batch_size for _, res in plan_steps(specs, gpu)] == [2, 16, 16]  # a GPU stage keeps its batch
    assert all(res.batch_size == 1 for _, res in plan_steps(specs, [s.cls.resources() for s in specs], True))


def test_actors_never_take_every_cpu_and_late_tasks_always_fit():
    plans = fit_to_cluster([Resources(num_cpus=1), Resources(num_cpus=1, concurrency=1),
                            Resources(num_cpus=1, concurrency=1), Resources(num_cpus=1)], total_cpus=2)
    actor_cpus = sum(p.num_cpus for p in plans if p.concurrency)
    assert actor_cpus <= 1.0
    # the task after the actors runs beside the first step's task instead of waiting for it to finish
    assert plans[3].num_cpus == 0.25 and plans[0].num_cpus + plans[3].num_cpus <= 2 - actor_cpus


# ---- run_tasks: one task per item (the build's per-video tasks) ---------------------------------------

class Square:
    """A task object (what curate/video_task.VideoTask is): built once per worker, called per item."""

    name = "square"

    def __init__(self, fail_on: int = -1, policy: str = "record"):
        self.fail_on = fail_on

    def __call__(self, item, isolate=False):
        if item["x"] == self.fail_on:
            raise KeyError(f"no square for {item['x']}")
        return dict(item, y=item["x"] ** 2, pid=os.getpid())


def test_run_tasks_pulls_items_only_as_slots_free_up(ray_local):
    from reelforge.curate.runner import run_tasks

    pulled = []

    def items():
        for i in range(12):
            pulled.append(i)
            yield {"key": f"k{i}", "x": i, "status": "ok", "reason": ""}

    seen_when = []
    rows = []
    for row in run_tasks(items(), StageSpec(Square), Resources(num_cpus=1), errors="reraise", max_in_flight=3):
        seen_when.append(len(pulled) - len(rows))  # items pulled but not yet returned
        rows.append(row)
    assert sorted(r["y"] for r in rows) == [i * i for i in range(12)]
    assert max(seen_when) <= 3, seen_when  # the driver never holds more than the window


def test_run_tasks_an_exception_is_the_items_row_or_stops_under_reraise(ray_local):
    from reelforge.curate.runner import run_tasks

    rows = {r["key"]: r for r in run_tasks(_items(5), StageSpec(Square, (2,)), Resources(num_cpus=1),
                                           errors="record")}
    assert rows["k2"]["status"] == "failed" and rows["k2"]["reason"] == "square: KeyError: 'no square for 2'"
    assert all(rows[f"k{i}"]["y"] == i * i for i in range(5) if i != 2)
    with pytest.raises(StageError, match="no square for 2"):
        list(run_tasks(_items(5), StageSpec(Square, (2,)), Resources(num_cpus=1), errors="reraise"))
