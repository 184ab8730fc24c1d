"""The one module of ``recaption`` that touches Ray: frames decoded by CPU tasks ahead of a model actor pool.

Clips are cut into chunks. Each chunk is a Ray task that reads its clips from the shards (by index
offset) and samples their frames on a CPU worker; its result goes straight (as an object reference)
into a call on one of the captioning actors, which load the model once (one per GPU, ``num_gpus=1``;
on a CPU-only cluster a small CPU pool). Up to ``prefetch`` chunks per actor are decoding or queued
while the actor generates, so the GPU does not wait for decoding. Chunks come back as they finish
(order not kept) and the caller commits them.

A chunk whose decode task or actor call dies (a decoder crash, an OOM) is retried by Ray; if it still
fails, its clips come back as failed rows with the reason, and the job goes on.

This is recaption's own small adapter rather than ``curate.runner.run_stages``: captioning needs a
stateful pool fed by a separate decode stage with a bounded look-ahead and per-chunk commits, and
``curate/runner.py`` is being reworked for streaming at the same time (one adapter per package,
as STYLE.md asks).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from reelforge.recaption.captioner import CaptionerConfig
from reelforge.recaption.frames import FrameConfig, decode_rows
from reelforge.recaption.openai_backend import OpenAIConfig
from reelforge.recaption.postprocess import CaptionResult

RETRIES = 1


@dataclass
class PoolPlan:
    actors: int
    num_gpus: float
    num_cpus: float


def plan_pool(actors: int, actor_cpus: float, backend: str, cluster: dict) -> PoolPlan:
    """One actor per GPU for a local model on a GPU cluster (``actors`` caps it), else ``actors or 1``
    CPU actors. CPU actors reserve at most half the cluster's CPUs so the decode tasks always run."""
    gpus = int(cluster.get("GPU", 0))
    if backend == "transformers" and gpus:
        return PoolPlan(min(actors, gpus) if actors else gpus, 1.0, 1.0)
    n = actors or 1
    cpus = float(cluster.get("CPU", 1.0))
    return PoolPlan(n, 0.0, min(actor_cpus, max(0.1, 0.5 * cpus / n)))


class _CaptionActor:
    def __init__(self, backend: str, captioner: CaptionerConfig, openai: OpenAIConfig, template, min_words: int):
        from reelforge.recaption.backend import make_backend
        self.cfg, self.min_words = captioner, min_words
        self.backend = make_backend(backend, captioner, openai, template)

    def describe(self) -> dict:
        return self.backend.describe()

    def caption(self, decoded) -> list[CaptionResult]:
        from reelforge.recaption.backend import caption_clips
        clips, failed = decoded
        return caption_clips(self.backend, clips, self.cfg, self.min_words) + failed


def _decode(dataset: str, rows: list[dict], frames: FrameConfig):
    return decode_rows(dataset, rows, frames)


def caption_on_ray(dataset: str | Path, rows: list[dict], backend: str, captioner: CaptionerConfig,
                   openai: OpenAIConfig, template, frames: FrameConfig, actors: int = 0,
                   actor_cpus: float = 1.0, chunk_clips: int = 8, prefetch: int = 2, min_words: int = 3,
                   info: dict | None = None) -> Iterator[list[CaptionResult]]:
    """Yield the results of each chunk of ``rows`` (index rows) as it finishes. Ray must be initialised.
    ``info`` (when given) receives the pool plan, the backend's description and ``ready_s``: seconds until
    every actor had loaded its model (process start, imports, weights)."""
    import ray

    if not rows:
        return
    plan = plan_pool(actors, actor_cpus, backend, ray.cluster_resources())
    Actor = ray.remote(num_gpus=plan.num_gpus, num_cpus=plan.num_cpus, max_restarts=RETRIES,
                       max_task_retries=RETRIES)(_CaptionActor)
    decode = ray.remote(num_cpus=1, max_retries=RETRIES)(_decode)
    t0 = time.perf_counter()
    pool = [Actor.remote(backend, captioner, openai, template, min_words) for _ in range(plan.actors)]
    ready = [actor.describe.remote() for actor in pool]  # first in each actor's queue: answers once it is loaded
    chunks = [rows[i:i + chunk_clips] for i in range(0, len(rows), chunk_clips)]
    load = [0] * len(pool)
    inflight: dict = {}  # ObjectRef -> (chunk, actor index)
    next_chunk = 0

    def submit() -> None:
        nonlocal next_chunk
        chunk = chunks[next_chunk]
        next_chunk += 1
        a = min(range(len(pool)), key=load.__getitem__)  # the actor with the shortest queue
        ref = pool[a].caption.remote(decode.remote(str(dataset), chunk, frames))
        inflight[ref] = (chunk, a)
        load[a] += 1

    window = len(pool) * (prefetch + 1)
    try:
        while next_chunk < len(chunks) and len(inflight) < window:
            submit()  # decoding starts while the actors load their model
        described = ray.get(ready)
        if info is not None:
            info.update(actors=plan.actors, num_gpus_per_actor=plan.num_gpus, describe=described[0],
                        ready_s=round(time.perf_counter() - t0, 2))
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            chunk, a = inflight.pop(ready[0])
            load[a] -= 1
            try:
                results = ray.get(ready[0])
            except Exception as exc:  # RayTaskError/RayActorError after the retries: record, don't lose the job
                why = f"captioning worker failed on this chunk (retried {RETRIES}x): {type(exc).__name__}: {exc}"
                results = [CaptionResult(r["clip_id"], None, "failed", why[:500], 0, 0) for r in chunk]
            if next_chunk < len(chunks):
                submit()
            yield results
    finally:
        for actor in pool:
            ray.kill(actor)
