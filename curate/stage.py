"""The contract every curation stage follows.

A stage is one class. Heavy setup (models, codecs) happens in ``__init__`` so that Ray builds it once
per actor; ``__call__`` takes a columnar batch (``dict[str, list | np.ndarray]``, all columns the same
length) and returns it with the columns in ``outputs`` added. Stages never touch Ray: ``curate.runner``
is the one adapter that maps them over a Ray Dataset, and tests call them on plain dicts.

Failures are data. Each row carries ``status`` (``ok`` | ``filtered`` | ``failed``) and ``reason``.
A stage only works on rows that are ``ok`` (or ``ok``/``filtered`` for scorers: scores are kept for
filtered clips so thresholds can be re-applied later); it never raises for one bad row: it marks the row
``failed`` with a reason naming the stage and the error.

Errors follow webdataset's ``handler`` pattern. A stage signals "this row's data is bad" by raising
``ValueError`` or ``OSError`` (an undecodable stream, missing frames, an unreadable file): those always
become a failed row. Any other exception is a bug in the stage, and the error policy decides:
``record`` (the production default) turns it into a failed row whose reason carries the exception;
``reraise`` (tests: ``REELFORGE_STAGE_ERRORS=reraise``) lets it fail the job, so a bug cannot hide as a row.
"""
from __future__ import annotations

import functools
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, ClassVar


Batch = dict[str, Any]

ERROR_POLICIES = ("record", "reraise")
ERRORS_ENV = "REELFORGE_STAGE_ERRORS"
# what a stage raises for bad input data (as opposed to a bug): a row, whatever the policy
DATA_ERRORS = (ValueError, OSError)


def error_policy(policy: str | None = None) -> str:
    """The policy in force: ``policy`` if given, else ``$REELFORGE_STAGE_ERRORS``, else ``record``."""
    policy = policy or os.environ.get(ERRORS_ENV) or "record"
    if policy not in ERROR_POLICIES:
        raise ValueError(f"error policy must be one of {ERROR_POLICIES}, got {policy!r} (from ${ERRORS_ENV}?)")
    return policy


def error_reason(stage: str, exc: BaseException, policy: str | None = None) -> str:
    """The ``reason`` of a row whose stage raised ``exc``: ``"stage: Type: message"``; re-raises ``exc``
    instead when the policy is ``reraise`` and ``exc`` is not a data error."""
    if error_policy(policy) == "reraise" and not isinstance(exc, DATA_ERRORS):
        raise exc
    return f"{stage}: {type(exc).__name__}: {exc}"[:500]


@dataclass(frozen=True)
class Resources:
    """What one instance of a stage needs; the runner turns this into Ray actor options."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int = 8
    # None = stateless task pool; an int = that many long-lived actors (models load once each).
    concurrency: int | None = None
    # ``num_gpus: auto`` in a model stage's config: reserve GPUs only if the cluster has any. Decided where
    # the build plans its tasks (``curate.runner``, from ``ray.cluster_resources()``: ``on_cluster``), never
    # from the driver's own hardware. ``auto_share``: GPUs to reserve then; 0 = the cluster's GPUs per CPU,
    # so a GPU slice never limits how many tasks a node runs below its CPUs.
    auto_gpus: bool = False
    auto_share: float = 0.0

    def on_cluster(self, cluster: dict[str, float]) -> "Resources":
        """This request made concrete for a cluster whose resources (``ray.cluster_resources()``) are
        ``cluster``: an ``auto`` GPU request becomes ``auto_share`` (or GPUs/CPUs, at most 1) GPUs when the
        cluster has a GPU, and none when it has not."""
        if not self.auto_gpus:
            return self
        gpus, cpus = float(cluster.get("GPU", 0.0)), float(cluster.get("CPU", 0.0))
        share = 0.0
        if gpus > 0:
            share = self.auto_share or min(1.0, gpus / max(cpus, 1.0))
        return replace(self, num_gpus=max(self.num_gpus, share), auto_gpus=False)


AUTO = "auto"


def gpu_request(stage: str, device: str, num_gpus: float | str, share: float = 0.0) -> dict:
    """A model stage's GPU ask from its config alone, as ``Resources`` keyword arguments: a number is
    reserved as given (a fraction shares one GPU between tasks); ``auto`` asks for ``share`` GPUs if the
    cluster has any (see ``Resources.on_cluster``), none with ``device: cpu``; an explicit ``cuda`` device
    reserves at least one. ValueError naming the stage for anything else."""
    check_gpu_setting(stage, num_gpus, share)
    if num_gpus == AUTO:
        if device.startswith("cuda"):
            return {"num_gpus": 1.0}
        if device == "cpu":  # told to run on the CPU: a GPU slice would only hold a task back
            return {"num_gpus": 0.0}
        return {"num_gpus": 0.0, "auto_gpus": True, "auto_share": float(share)}
    return {"num_gpus": max(float(num_gpus), 1.0) if device.startswith("cuda") else float(num_gpus)}


def check_gpu_setting(stage: str, num_gpus: float | str, share: float = 0.0) -> None:
    """ValueError naming ``stage`` unless ``num_gpus`` is ``auto`` or a number >= 0 and ``share`` in [0, 1]."""
    if isinstance(num_gpus, str) and num_gpus != AUTO:
        raise ValueError(f"{stage}: num_gpus must be a number >= 0 or '{AUTO}', got {num_gpus!r}")
    if not isinstance(num_gpus, str) and num_gpus < 0:
        raise ValueError(f"{stage}: num_gpus must be >= 0, got {num_gpus}")
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"{stage}: gpu_share must be in [0, 1], got {share}")


# Not scoring clips a cheaper filter already removed (issue 12). A cheap filter stage (``removes_early``)
# records in REMOVED_EARLY the reason its own check gives at the build's thresholds, unless its config
# says ``score_removed``; the model stages (MODEL_STAGES, all after the cheap filters in the stage list)
# then leave that row unscored and add their name to UNSCORED. The final decision is the same (the cheap
# filter comes first in the list); a --refilter that loosens that filter cannot score the clip, so
# ``filters.decide`` keeps it filtered as "not scored" instead of letting it pass unjudged.
REMOVED_EARLY = "removed_early"  # text; '' = not removed
UNSCORED = "unscored"            # text; '' = scored by every model stage
MODEL_STAGES = ("aesthetic", "text_overlay", "nsfw", "caption_match")

# every stage call adds ``cpu_s_<stage name>`` to each row: the process CPU seconds of the call (decoder and
# encoder threads included) shared among the rows it worked on, so a build can say where its CPU went per clip
CPU_PREFIX = "cpu_s_"


def _timed(call: Callable[["Stage", Batch], Batch]) -> Callable[["Stage", Batch], Batch]:
    @functools.wraps(call)
    def timed(self: "Stage", batch: Batch) -> Batch:
        c0 = time.process_time()
        early = batch.get(REMOVED_EARLY) if self.name in MODEL_STAGES else None
        removed = [_text(e) != "" for e in early] if early is not None else []
        if any(removed):
            out = _without_removed(self, call, batch, removed)
        else:
            out = call(self, batch)
        if self.removes_early:
            _mark_removed(self, out)
        n = batch_len(out)
        if self.name in MODEL_STAGES and UNSCORED not in out:
            # every batch has the same columns, as text: a column of nulls comes back from Ray as NaN
            # (a float column in one manifest part, text in the next: parts that no longer concatenate)
            out[UNSCORED] = [""] * n
        if n:
            # shared among the rows the stage worked on (a row removed early cost it nothing)
            worked = [not r for r in removed] if any(removed) else [True] * n
            share = (time.process_time() - c0) / max(1, sum(worked))
            out[CPU_PREFIX + self.name] = [share if w else 0.0 for w in worked]
        return out

    timed.__timed__ = True
    return timed


def _text(value) -> str:
    """A text column's value, '' for a missing one: None, or the NaN a null can come back as from Ray's
    numpy batches (NaN is truthy: never test these columns with ``bool``)."""
    return value if isinstance(value, str) else ""


def _without_removed(stage: "Stage", call, batch: Batch, removed: list[bool]) -> Batch:
    """``call`` on the rows not removed early; the others get the stage's default outputs and its name
    in UNSCORED. Row order is kept."""
    n = batch_len(batch)
    keep = [i for i in range(n) if not removed[i]]
    done = call(stage, {k: [v[i] for i in keep] for k, v in batch.items()}) if keep else {}
    scored = iter(row_at(done, j) for j in range(len(keep)))
    rows = []
    for i in range(n):
        if not removed[i]:
            row = next(scored)
            row[UNSCORED] = _text(row.get(UNSCORED))
            rows.append(row)
            continue
        row = row_at(batch, i)
        row.update(stage.default_outputs())
        row[UNSCORED] = ",".join(x for x in _text(row.get(UNSCORED)).split(",") + [stage.name] if x)
        rows.append(row)
    return rows_to_batch(rows, like=done or batch)


def _mark_removed(stage: "Stage", batch: Batch) -> None:
    """REMOVED_EARLY on the ok rows this cheap filter's check removes (unless its config keeps scoring them)."""
    cfg = getattr(stage, "cfg", None)
    n = batch_len(batch)
    marks = [_text(m) for m in batch[REMOVED_EARLY]] if REMOVED_EARLY in batch else [""] * n
    if cfg is not None and not getattr(cfg, "score_removed", True):
        for i in range(n):
            row = row_at(batch, i)
            if not marks[i] and row.get("status", "ok") == "ok":
                marks[i] = cfg.check(row) or ""
    batch[REMOVED_EARLY] = marks  # text, '' = not removed (see UNSCORED above for why not None)


class Stage:
    """Base class: declare ``name``, ``inputs``, ``outputs``, ``resources``; implement ``process_row``
    or override ``__call__`` for true batching. Every ``__call__`` is timed (``CPU_PREFIX``)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "__timed__", False):
            cls.__call__ = _timed(call)

    name: ClassVar[str] = "stage"
    inputs: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    # which row statuses this stage works on; others pass through untouched
    acts_on: ClassVar[tuple[str, ...]] = ("ok",)
    # record | reraise; None = $REELFORGE_STAGE_ERRORS (the runner sets the driver's choice on each worker)
    on_error: str | None = None
    # a cheap filter whose removals the model stages after it need not score (see REMOVED_EARLY)
    removes_early: ClassVar[bool] = False

    @classmethod
    def resources(cls, *config) -> Resources:
        """What one instance needs, decided from the same config objects the constructor takes —
        a classmethod so the runner can plan actors without building (and loading models on) the
        driver."""
        return Resources()

    def process_row(self, row: dict) -> dict:
        """Return the values of ``outputs`` for one row (may also set ``status``/``reason``)."""
        raise NotImplementedError

    def default_outputs(self) -> dict:
        """Values for ``outputs`` on rows the stage skips or fails (must keep the column types stable)."""
        return {k: None for k in self.outputs}

    @_timed
    def __call__(self, batch: Batch) -> Batch:
        n = batch_len(batch)
        rows = [row_at(batch, i) for i in range(n)]
        out_rows = []
        for row in rows:
            out = dict(self.default_outputs())
            if row.get("status", "ok") in self.acts_on:
                try:
                    out.update(self.process_row(row))
                except Exception as exc:  # one bad row must never fail the job (unless the policy says so)
                    out["status"] = "failed"
                    out["reason"] = error_reason(self.name, exc, self.on_error)
            row.update(out)
            out_rows.append(row)
        return rows_to_batch(out_rows, like=batch)


def batch_len(batch: Batch) -> int:
    for v in batch.values():
        return len(v)
    return 0


def row_at(batch: Batch, i: int) -> dict:
    return {k: v[i] for k, v in batch.items()}


def rows_to_batch(rows: list[dict], like: Batch | None = None) -> Batch:
    """Columnar batch from row dicts; keeps the column order of ``like`` first."""
    keys: list[str] = list(like.keys()) if like else []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    return {k: [r.get(k) for r in rows] for k in keys}

