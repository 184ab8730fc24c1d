"""The one module of ``curate`` that touches Ray: it maps stages over a Ray Dataset.

Each stage becomes one ``map_batches``: stages that declare ``concurrency`` run as that many long-lived
actors (models load once per actor), the others as stateless tasks. Batches cross the boundary as
plain ``dict[str, list]`` (see ``curate.stage``), converted here to and from Ray's numpy batches.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from reelforge.curate.stage import Batch, Resources, Stage


# how often a crashed task is retried before its rows are given up (and recorded as failed)
RETRIES = 2


@dataclass
class StageSpec:
    """A stage class and the arguments of its constructor; built lazily on each Ray worker."""

    cls: type[Stage]
    args: tuple = ()


def _from_ray(batch: dict[str, np.ndarray]) -> Batch:
    out = {}
    for k, v in batch.items():
        if isinstance(v, np.ndarray) and v.dtype != object and v.ndim == 1:
            out[k] = v.tolist()
        else:
            out[k] = list(v)
    return out


def _to_ray(batch: Batch) -> dict[str, np.ndarray]:
    out = {}
    for k, col in batch.items():
        vals = list(col)
        if all(isinstance(v, np.ndarray) for v in vals) and len({v.shape for v in vals}) == 1 and vals:
            out[k] = np.stack(vals)  # fixed-shape tensor column
            continue
        if any(isinstance(v, (list, tuple)) and v and isinstance(v[0], dict) for v in vals):
            # lists of records (e.g. planned clip spans) cross as JSON: Arrow cannot type them when
            # some rows are empty, and pickled fallbacks are slow and noisy
            vals = [json.dumps(v) if isinstance(v, (list, tuple)) else v for v in vals]
        arr = np.empty(len(vals), dtype=object)
        arr[:] = vals
        out[k] = arr
    return out


class _StageActor:
    def __init__(self, cls: type[Stage], args: tuple):
        self.stage = cls(*args)

    def __call__(self, batch):
        return _to_ray(self.stage(_from_ray(batch)))


def _stage_task(batch, cls: type[Stage], args: tuple):
    return _to_ray(cls(*args)(_from_ray(batch)))


def fit_to_cluster(plans: list[Resources], total_cpus: float) -> list[Resources]:
    """Shrink CPU requests so the pipeline can always make progress.

    Actors hold their CPUs for the whole run: if a model stage's actors took every core, the task
    stages feeding them could never be scheduled and the job would hang. Actors therefore get at most
    half the cluster between them, and each task at most what the actors leave free (Ray's CPU counts
    are scheduling units, so a fraction still runs at full speed).
    """
    actor_cpus = sum(r.num_cpus * r.concurrency for r in plans if r.concurrency)
    scale = min(1.0, 0.5 * total_cpus / actor_cpus) if actor_cpus else 1.0
    free = max(total_cpus - actor_cpus * scale, 0.25)
    return [replace(r, num_cpus=r.num_cpus * scale) if r.concurrency else replace(r, num_cpus=min(r.num_cpus, free))
            for r in plans]


def missing_rows(items: list[dict], returned: set[str], key: str, stage_names: str) -> list[dict]:
    """Failed rows for the items whose worker crashed, so that every input still ends with a row."""
    return [dict(item, status="failed", reason=f"{stage_names}: worker crashed on this item "
                                               f"(retried {RETRIES}x; e.g. a decoder segfault or out of memory)")
            for item in items if item[key] not in returned]


def run_stages(items: list[dict], specs: list[StageSpec]) -> Iterator[dict]:
    """Stream the rows that come out of ``specs`` applied to ``items`` (order not preserved)."""
    import ray

    if not items:
        return
    # a row whose worker dies (a decoder segfault, OOM) is retried, then its block is dropped instead of
    # failing the whole job; callers record every item that did not come back (see missing_rows)
    ray.data.DataContext.get_current().max_errored_blocks = -1
    ds = ray.data.from_items(items, override_num_blocks=min(len(items), 1000))
    plans = fit_to_cluster([spec.cls.resources(*spec.args) for spec in specs],
                           float(ray.cluster_resources().get("CPU", 1.0)))
    for spec, res in zip(specs, plans):
        common = dict(batch_size=res.batch_size, num_cpus=res.num_cpus, batch_format="numpy")
        if res.num_gpus:
            common["num_gpus"] = res.num_gpus
        if res.concurrency:
            ds = ds.map_batches(_StageActor, fn_constructor_args=(spec.cls, spec.args),
                                compute=ray.data.ActorPoolStrategy(size=res.concurrency),
                                max_restarts=RETRIES, max_task_retries=RETRIES, **common)
        else:
            ds = ds.map_batches(_stage_task, fn_args=(spec.cls, spec.args), max_retries=RETRIES, **common)
    for batch in ds.iter_batches(batch_size=1, batch_format="numpy", prefetch_batches=2):
        yield {k: _plain(v[0]) for k, v in batch.items()}


def _plain(v: Any) -> Any:
    """Undo Ray's containers: numpy scalars → Python, object arrays (lists, list of dicts) → lists.
    Numeric arrays (frames) stay arrays."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.dtype == object:
        return [_plain(x) for x in v]
    return v
