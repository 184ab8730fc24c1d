"""The one module of ``curate`` that touches Ray: it runs the build's per-video tasks (``run_tasks``,
below) and maps stages over a Ray Dataset (``run_stages``).

``run_tasks`` runs one Ray task per item (the build: one per video, ``curate/video_task.py``) with a
bounded number in flight, and isolates an item whose worker keeps dying (see its docstring). The rest of
this docstring is about ``run_stages``, which streams rows through stage steps (task pools and actor
pools). Since issue 16 the build itself no longer calls it (its tasks write their own shards); it is kept,
with its tests, as the way to run stages over rows with model stages on shared actors (GPU batching).

Consecutive stateless stages run together as one task per batch (their rows, sampled frames included,
never cross the object store between them); a stage that declares ``concurrency`` runs as that many
long-lived actors (models load once per actor). Batches cross the boundary as plain ``dict[str, list]``
(see ``curate.stage``), converted here to and from Ray's numpy batches.

Rows stream: each comes back to the caller (the shard writer) as soon as its last stage is done.
Ray Data starts a ``map_batches`` task only once ``batch_size`` rows are waiting for it, so a cheap
stage declaring ``batch_size=256`` behind a transcode that emits two rows at a time used to hold every
row of a video back until the last clip was transcoded (and then hand them to the driver all at once).
Here a CPU stage never waits for more rows than the step before it emits per batch (a CPU model
gains next to nothing from bigger batches); a GPU stage keeps its ``batch_size`` (batching is what
it is for), so rows pass it in bursts of that many.

Failures cost one row. A Python exception anywhere in a stage, even one that escapes a batched
``__call__``, is caught on the worker; the batch is re-run row by row and only the row that raises is
marked failed, with the stage, the exception type and its message (or, under the ``reraise`` policy,
the job stops with the worker's traceback: ``StageError``). A worker that dies (a decoder segfault,
the OOM killer) is retried by Ray; if its block is still lost, the lost items are re-run one item per
block, so only the item that kills its worker ends as a failed row saying so.
"""
from __future__ import annotations

import json
import traceback
import warnings
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np

from reelforge.curate.stage import DATA_ERRORS, Batch, Resources, Stage, batch_len, error_policy, error_reason, \
    row_at, rows_to_batch


# how often a crashed task is retried before its rows are given up (and recorded as failed)
RETRIES = 2
# retries of the isolating re-run (one item per block) of items whose worker died in the first pass
ISOLATED_RETRIES = 1
SEQ = "_rf_seq"             # position of a row's item in ``items``: tells which items came back
ERROR = "_rf_stage_error"   # a worker traceback the ``reraise`` policy turns into StageError on the driver
# object-store bytes the pass may hold in finished-but-unconsumed and in-between blocks, per cluster CPU:
# Ray Data's own cap is a share of the whole object store, which let ~60 of 80 finished 1-MB rows pile
# up behind a slow consumer; with this cap a slow shard writer holds the workers back instead
BUFFER_BYTES_PER_CPU = 128 << 20
# CPUs of a task stage that comes after an actor stage (see fit_to_cluster)
LATE_TASK_CPUS = 0.25


class StageError(RuntimeError):
    """A stage raised a non-data exception under the ``reraise`` error policy; carries its traceback."""


@dataclass
class StageSpec:
    """A stage class and the arguments of its constructor; built lazily on each Ray worker."""

    cls: type[Stage]
    args: tuple = ()

    @property
    def name(self) -> str:
        return self.cls.name


# ---- conversion to and from Ray's numpy batches ----------------------------------------------------

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


def _plain(v: Any) -> Any:
    """Undo Ray's containers: numpy scalars → Python, object arrays (lists, list of dicts) → lists.
    Numeric arrays (frames) stay arrays."""
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray) and v.dtype == object:
        return [_plain(x) for x in v]
    return v


# ---- what runs on a worker ---------------------------------------------------------------------------

class StageChain:
    """Stages applied in order to one batch, each under the error policy; runs as a task or an actor."""

    def __init__(self, specs: list[StageSpec], policy: str, drop: tuple[str, ...] = ()):
        self.specs, self.policy, self.drop = specs, policy, drop
        self.stages: list[Stage | None] = []
        self.setup_error: tuple[int, BaseException] | None = None
        for i, spec in enumerate(specs):
            try:
                stage = spec.cls(*spec.args)
            except Exception as exc:  # e.g. weights that do not load: every row says so, nothing hangs
                self.setup_error = (i, exc)
                break
            stage.on_error = policy
            self.stages.append(stage)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return _to_ray(self.run(_from_ray(batch)))

    def run(self, b: Batch) -> Batch:
        """The stages on a plain columnar batch (what a per-video task calls in its own process)."""
        for i, spec in enumerate(self.specs):
            if self.setup_error and self.setup_error[0] == i:
                b = self._fail_all(b, spec, self.setup_error[1], "cannot start: ")
                break
            b = self._apply(self.stages[i], spec, b)
        for k in self.drop:
            b.pop(k, None)
        return b

    def _apply(self, stage: Stage, spec: StageSpec, batch: Batch) -> Batch:
        try:
            return stage(batch)
        except Exception:
            pass
        # the batch raised as a whole: run its rows one at a time so only the row that raises pays
        out = []
        for i in range(batch_len(batch)):
            one = {k: v[i:i + 1] for k, v in batch.items()}
            try:
                out.extend(_rows(stage(one)))
            except Exception as exc:
                out.extend(_rows(self._fail_all(one, spec, exc)))
        return rows_to_batch(out, like=batch)

    def _fail_all(self, batch: Batch, spec: StageSpec, exc: BaseException, what: str = "") -> Batch:
        """Every row of ``batch`` failed by ``exc`` in ``spec``'s stage (rows already failed keep their reason)."""
        try:
            reason, tb = error_reason(spec.name, exc, self.policy), None
            reason = reason.replace(f"{spec.name}: ", f"{spec.name}: {what}", 1)
        except Exception:
            reason, tb = f"{spec.name}: {type(exc).__name__}: {exc}"[:500], "".join(traceback.format_exception(exc))
        rows = []
        for row in _rows(batch):
            defaults = {k: None for k in spec.cls.outputs}
            row = {**defaults, **row}
            if row.get("status", "ok") != "failed":
                row.update(status="failed", reason=reason)
            if tb:
                row[ERROR] = f"stage {spec.name} raised (policy reraise):\n{tb}"
            rows.append(row)
        return rows_to_batch(rows, like=batch)


def _rows(batch: Batch) -> list[dict]:
    return [row_at(batch, i) for i in range(batch_len(batch))]


# ---- planning ----------------------------------------------------------------------------------------

def fit_to_cluster(plans: list[Resources], total_cpus: float) -> list[Resources]:
    """Shrink CPU requests so the pipeline can always make progress, and rows keep flowing.

    Actors hold their CPUs for the whole run: if a model stage's actors took every core, the task
    stages feeding them could never be scheduled and the job would hang. Actors therefore get at most
    half the cluster between them, and each task at most what the actors leave free (Ray's CPU counts
    are scheduling units, so a fraction still runs at full speed).

    A task stage after an actor (e.g. a cheap signature after the model scorers) only sees rows as fast
    as the first steps make them; asking a whole core, it would wait for the first step's tasks (which
    always have input) to leave one free, and rows would pile up until the first step ran out of work.
    It gets ``LATE_TASK_CPUS``, which Ray Data's per-operator reservation always covers, and the first
    steps leave that much room.
    """
    actor_cpus = sum(r.num_cpus * r.concurrency for r in plans if r.concurrency)
    scale = min(1.0, 0.5 * total_cpus / actor_cpus) if actor_cpus else 1.0
    free = max(total_cpus - actor_cpus * scale, 0.25)
    first_actor = next((i for i, r in enumerate(plans) if r.concurrency), len(plans))
    late = [i for i, r in enumerate(plans) if i > first_actor and not r.concurrency]
    early_free = max(free - LATE_TASK_CPUS * len(late), 0.25)
    out = []
    for i, r in enumerate(plans):
        if r.concurrency:
            out.append(replace(r, num_cpus=r.num_cpus * scale))
        else:
            out.append(replace(r, num_cpus=min(r.num_cpus, LATE_TASK_CPUS if i in late else early_free)))
    return out


def plan_steps(specs: list[StageSpec], plans: list[Resources], isolate: bool = False
               ) -> list[tuple[list[StageSpec], Resources]]:
    """Group stages into ``map_batches`` steps: each actor stage alone, each run of stateless stages as one
    task step (the most CPUs/GPUs and the smallest batch any of them asks for). Batch sizes never make rows wait for more rows
    than the previous step emits per batch, except at a GPU stage (see the module docstring);
    ``isolate`` makes every batch one row (the re-run of items whose worker died)."""
    steps: list[tuple[list[StageSpec], Resources]] = []
    for spec, res in zip(specs, plans):
        if steps and not res.concurrency and not steps[-1][1].concurrency:
            chain, prev = steps[-1]
            steps[-1] = (chain + [spec], replace(prev, num_cpus=max(prev.num_cpus, res.num_cpus),
                                                 num_gpus=max(prev.num_gpus, res.num_gpus),
                                                 batch_size=min(prev.batch_size, res.batch_size)))
            continue
        if steps and not res.num_gpus:
            res = replace(res, batch_size=min(res.batch_size, steps[-1][1].batch_size))
        steps.append(([spec], res))
    if isolate:
        steps = [(chain, replace(res, batch_size=1)) for chain, res in steps]
    return steps


def missing_rows(items: list[dict], returned: set[str], key: str, stage_names: str) -> list[dict]:
    """Failed rows for items that never came back, so every input still ends with a row.

    ``run_stages`` already yields such a row for each item it loses; this is the caller's safety net."""
    return [dict(item, status="failed", reason=f"{stage_names}: worker crashed on this item "
                                               f"(retried {RETRIES}x; e.g. a decoder segfault or out of memory)")
            for item in items if item[key] not in returned]


# ---- running -----------------------------------------------------------------------------------------

def run_stages(items: list[dict], specs: list[StageSpec], errors: str | None = None,
               drop: tuple[str, ...] = (), buffer_bytes: int | None = None) -> Iterator[dict]:
    """Stream one row per item: ``specs`` applied to it, in completion order (not input order).

    ``errors``: ``record`` | ``reraise`` (default ``$REELFORGE_STAGE_ERRORS``, else ``record``); under
    ``reraise`` a non-data exception in a stage raises ``StageError`` here. ``drop``: columns the caller
    does not need (e.g. sampled frames), removed on the worker so they never reach the driver.
    ``buffer_bytes``: the object-store budget of the pass (default ``BUFFER_BYTES_PER_CPU`` per CPU).
    Every item yields exactly one row: an item whose worker died even when run alone yields a failed
    row saying so.
    """
    if not items:
        return
    policy = error_policy(errors)
    seq_items = [dict(item, **{SEQ: i}) for i, item in enumerate(items)]
    seen: set[int] = set()
    _set_budget(buffer_bytes)
    for row in _run_pass(seq_items, specs, policy, drop, isolate=False):
        seen.add(row[SEQ])
        yield _finish(row)
    lost = [it for it in seq_items if it[SEQ] not in seen]
    if lost:
        for row in _run_pass(lost, specs, policy, drop, isolate=True):
            seen.add(row[SEQ])
            yield _finish(row)
    names = "/".join(s.name for s in specs)
    for item in seq_items:
        if item[SEQ] not in seen:
            yield _finish(dict(item, status="failed", reason=(
                f"{names}: worker died on this item (retried {RETRIES}x, then alone {ISOLATED_RETRIES}x; "
                f"a native crash such as a decoder segfault, or out of memory)")))


def _set_budget(buffer_bytes: int | None) -> None:
    import ray
    from ray.data import DataContext, ExecutionResources

    if buffer_bytes is None:
        buffer_bytes = int(BUFFER_BYTES_PER_CPU * max(1.0, ray.cluster_resources().get("CPU", 1.0)))
    DataContext.get_current().execution_options.resource_limits = ExecutionResources(object_store_memory=buffer_bytes)


def _finish(row: dict) -> dict:
    tb = row.pop(ERROR, None)
    if tb:
        raise StageError(tb)
    row.pop(SEQ, None)
    return row


def _run_pass(items: list[dict], specs: list[StageSpec], policy: str, drop: tuple[str, ...],
              isolate: bool) -> Iterator[dict]:
    import ray

    # a block whose worker died past its retries is dropped instead of failing the whole job: the
    # caller's pass re-runs the lost items alone, then records the ones that still kill their worker
    ray.data.DataContext.get_current().max_errored_blocks = -1
    retries = ISOLATED_RETRIES if isolate else RETRIES
    ds = ray.data.from_items(items, override_num_blocks=len(items) if isolate else min(len(items), 1000))
    cluster = ray.cluster_resources()
    plans = fit_to_cluster([spec.cls.resources(*spec.args).on_cluster(cluster) for spec in specs],
                           float(cluster.get("CPU", 1.0)))
    steps = plan_steps(specs, plans, isolate)
    for n, (chain, res) in enumerate(steps):
        args = (chain, policy, drop if n == len(steps) - 1 else ())
        common = dict(batch_size=res.batch_size, num_cpus=res.num_cpus, batch_format="numpy")
        if res.num_gpus:
            common["num_gpus"] = res.num_gpus
        with warnings.catch_warnings():
            # retries have no named parameter yet; the deprecation note would print on every build
            warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
            if res.concurrency:
                ds = ds.map_batches(StageChain, fn_constructor_args=args,
                                    compute=ray.data.ActorPoolStrategy(size=res.concurrency),
                                    max_restarts=retries, max_task_retries=retries, **common)
            else:
                ds = ds.map_batches(_run_chain, fn_args=args, max_retries=retries, **common)
    # batch_size=None: each block as it is produced, no re-batching wait on the driver
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
        for i in range(len(batch[SEQ])):
            yield {k: _plain(v[i]) for k, v in batch.items()}


def _run_chain(batch, chain: list[StageSpec], policy: str, drop: tuple[str, ...]):
    return StageChain(chain, policy, drop)(batch)


# ---- one task per item -------------------------------------------------------------------------------
# A task that holds a whole unit of work (a video: probe, split, transcode, score, write its shards) runs
# as one Ray task per item. Its class is built once per worker process (models load once per worker,
# as in an actor) and called for every item that worker runs.

# retries of the isolating re-run of an item whose worker died in every normal attempt: the task records
# what it is about to do before each step of that re-run, so each attempt skips one more thing that kills
# its worker (see curate/video_task.py)
TASK_ISOLATED_RETRIES = 3
_TASKS: dict[str, Any] = {}   # per worker process: the StageSpec and policy -> the task object built from them


def task_slots(resources: Resources) -> int:
    """How many tasks asking for ``resources`` the cluster runs at once (by CPUs; at least 1)."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    return max(1, int(cpus / max(resources.num_cpus, 1e-3)))


def run_tasks(items: Iterator[dict] | list[dict], spec: StageSpec, resources: Resources,
              errors: str | None = None, max_in_flight: int | None = None) -> Iterator[dict]:
    """Stream ``spec.cls(*spec.args, policy)(item, isolate)`` for each item, in completion order.

    At most ``max_in_flight`` tasks (default: twice the cluster's CPUs) are submitted at once, and the
    items are pulled from the iterator only as slots free up: the driver holds what is in flight, never
    the whole run. A task whose worker dies is retried by Ray (``RETRIES``); if every attempt dies it is
    run again with ``isolate=True`` (``TASK_ISOLATED_RETRIES`` attempts), and if that dies too the item
    yields a failed row saying so. An exception escaping the task is the item's failed row under the
    ``record`` policy, and under ``reraise`` when it is a data error (``ValueError``/``OSError``, e.g. a
    remote source that cannot be fetched); another one under ``reraise`` raises ``StageError`` with the
    worker's traceback. An
    ``OSError`` that is the output's (disk full, read-only: ``ShardWriteError``) always stops the run: it
    is raised here as the worker raised it. If the consumer stops (an exception, a kill), every task still
    running is cancelled and waited for, so none outlives the run and writes into a resumed one.
    """
    import ray
    from ray.exceptions import RayError, RayTaskError

    from reelforge.shards.writer import ShardWriteError

    policy = error_policy(errors)
    spec_ref = ray.put(spec)
    cluster = ray.cluster_resources()
    if max_in_flight is None:
        max_in_flight = max(2, int(2 * cluster.get("CPU", 1.0)))
    resources = resources.on_cluster(cluster)  # a stage's `num_gpus: auto`: a GPU slice only where there are GPUs
    opts = dict(num_cpus=resources.num_cpus)
    if resources.num_gpus:
        opts["num_gpus"] = resources.num_gpus
    remote = ray.remote(_run_task)
    normal = remote.options(max_retries=RETRIES, **opts)
    isolated = remote.options(max_retries=TASK_ISOLATED_RETRIES, **opts)
    queue = iter(items)
    in_flight: dict[Any, tuple[dict, bool]] = {}
    lost: list[dict] = []

    def submit(item: dict, isolate: bool) -> None:
        fn = isolated if isolate else normal
        in_flight[fn.remote(spec_ref, policy, item, isolate)] = (item, isolate)

    try:
        exhausted = False
        while True:
            while len(in_flight) < max_in_flight and (lost or not exhausted):
                if lost:  # a re-run of an item whose worker died goes first: its rows are the oldest
                    submit(lost.pop(), True)
                    continue
                item = next(queue, None)
                if item is None:
                    exhausted = True
                else:
                    submit(item, False)
            if not in_flight:
                return
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            item, isolate = in_flight.pop(ready[0])
            try:
                row = ray.get(ready[0])
            except RayTaskError as exc:  # the task raised: its own exception, with the worker's traceback
                cause = exc.cause if isinstance(exc.cause, BaseException) else None
                if isinstance(cause, (ShardWriteError, StageError)):
                    raise cause from None
                if policy == "reraise" and not isinstance(cause, DATA_ERRORS):
                    raise StageError(str(exc)) from None
                yield dict(item, status="failed", reason=f"{spec.name}: {type(cause or exc).__name__}: "
                                                         f"{cause or exc}"[:500])
                continue
            except RayError as exc:  # the worker died (a native crash, the OOM killer) in every attempt
                if not isolate:
                    lost.append(item)
                    continue
                yield dict(item, status="failed", reason=(
                    f"{spec.name}: worker died on this item (retried {RETRIES}x, then step by step "
                    f"{TASK_ISOLATED_RETRIES}x; a native crash such as a decoder segfault, or out of memory: "
                    f"{type(exc).__name__})"))
                continue
            yield row
    finally:
        if in_flight:
            _cancel(list(in_flight))


def _cancel(refs: list) -> None:
    """Kill the given tasks and wait until they are gone (a cancelled task's worker may still be
    mid-write for a moment; the next run must not start before it stops)."""
    import ray

    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # already finished
            pass
    for ref in refs:
        try:
            ray.get(ref, timeout=60)
        except Exception:  # cancelled / crashed: what we waited for
            pass


def _run_task(spec: StageSpec, policy: str, item: dict, isolate: bool) -> dict:
    # the configs are dataclasses: their repr names every value
    key = f"{spec.cls.__module__}.{spec.cls.__qualname__}{spec.args!r}{policy}"
    task = _TASKS.get(key)
    if task is None:
        task = _TASKS[key] = spec.cls(*spec.args, policy=policy)
    return task(item, isolate=isolate)
