"""The captioning job: one new caption version for the clips of a built dataset, resumable after a kill.

``caption_dataset(DIR, RecaptionConfig)`` selects the index's ``ok`` video samples (``where`` narrows them,
``clip_ids`` restricts them, e.g. to a build's kept clips), skips the clips this version already has,
runs the Ray captioner (``recaption.runner``) and commits caption rows in parts as chunks finish
(``shards.captions``). A killed job re-run with the same config resumes: committed clips are not
captioned again and no clip gets two rows of one version.

The dataset may be on object storage (``s3://…``): clips are read by ranged GETs in the decode tasks
(every Ray worker needs the store's credentials in its environment, as for a build), caption parts and
the merged store are written in one PUT each, and a dataset URL that cannot be read or written stops the
job before Ray starts or a model loads.

A version is named by what produced it: ``<template id>-<hash>`` of the model, template hash, frame
sampling and generation settings (or ``version`` when set). Another template or model gives another
version; the same config continues the same one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from reelforge import progress, storage
from reelforge.cluster import RayConfig, init_ray
from reelforge.recaption.captioner import CaptionerConfig
from reelforge.recaption.frames import FrameConfig
from reelforge.recaption.openai_backend import OpenAIConfig
from reelforge.recaption.templates import PromptTemplate, load_template
from reelforge.shards import captions as store
from reelforge.shards.spec import KIND_VIDEO


@dataclass
class RecaptionConfig:
    enabled: bool = False           # as a build stage; `reelforge caption` always runs
    template: str = "dense-v1"      # id under configs/caption/templates/, or a YAML path
    version: str = ""               # "" = <template>-<hash of model, template, frames, generation>
    backend: Literal["transformers", "openai"] = "transformers"
    captioner: CaptionerConfig = field(default_factory=CaptionerConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    frames: FrameConfig = field(default_factory=FrameConfig)
    where: str = ""                 # index filter, e.g. "aesthetic >= 5"
    min_words: int = 3              # a cleaned caption with fewer words is failed (and retried once)
    limit: int = 0                  # caption at most this many clips per run (0 = all)
    make_default: bool = False      # name this version the dataset's default (a dataset's first version is)
    actors: int = 0                 # model actors: 0 = one per GPU (1 on a CPU-only cluster)
    actor_cpus: float = 1.0         # CPUs reserved per actor on a CPU-only cluster
    chunk_clips: int = 0            # clips per decode task and actor call (0 = captioner.batch_size)
    prefetch: int = 2               # chunks decoded ahead per actor
    part_clips: int = 256           # caption rows per committed part (what a kill can cost)

    def __post_init__(self):
        if min(self.limit, self.actors, self.chunk_clips, self.prefetch) < 0 or min(self.min_words, self.part_clips) < 1:
            raise ValueError("recaption: limit, actors, chunk_clips, prefetch >= 0; min_words, part_clips >= 1 required")


@dataclass
class CaptionJobConfig:
    """``reelforge caption``'s config file (configs/caption/default.yaml)."""
    recaption: RecaptionConfig = field(default_factory=RecaptionConfig)
    ray: RayConfig = field(default_factory=RayConfig)


def version_params(cfg: RecaptionConfig, template: PromptTemplate) -> dict:
    """Everything that changes what the captions say (not batch size, device or actor counts)."""
    model = cfg.openai.model if cfg.backend == "openai" else cfg.captioner.model
    return {"backend": cfg.backend, "model": model, "revision": cfg.captioner.revision,
            "template_id": template.id, "template_hash": template.hash,
            "frames": dataclasses.asdict(cfg.frames),
            "generation": dataclasses.asdict(cfg.captioner.generation),
            "retry": dataclasses.asdict(cfg.captioner.retry) if cfg.captioner.retry_failed else None,
            "min_words": cfg.min_words}


def version_name(cfg: RecaptionConfig, template: PromptTemplate) -> str:
    if cfg.version:
        return cfg.version
    digest = hashlib.sha256(json.dumps(version_params(cfg, template), sort_keys=True).encode()).hexdigest()
    return f"{template.id}-{digest[:8]}"


def select_clips(dataset: Path | str, cfg: RecaptionConfig, clip_ids: set[str] | None = None) -> tuple[list[dict], int]:
    """(index rows to caption, image samples left out): ok video samples matching ``where``/``clip_ids``."""
    from reelforge.shards.index import select
    table = select(dataset, cfg.where or None)
    if clip_ids is not None:
        table = table.filter(pc.is_in(table["clip_id"], value_set=pa.array(sorted(clip_ids), pa.string())))
    rows = table.to_pylist()
    videos = [r for r in rows if r.get("kind") == KIND_VIDEO and r.get("mp4_offset") is not None]
    return videos, len(rows) - len(videos)


def caption_dataset(dataset: str | Path, cfg: RecaptionConfig, ray_cfg: RayConfig | None = None,
                    clip_ids: set[str] | None = None, log=print) -> dict:
    """Add (or continue) one caption version for ``dataset``; returns the run's summary."""
    t0 = time.time()
    storage.check_input_url(dataset)
    storage.check_output_url(dataset)   # caption parts and captions.parquet are written into the dataset
    dataset = storage.as_path_or_url(dataset)
    template = load_template(cfg.template)
    version = version_name(cfg, template)
    params = version_params(cfg, template)
    imported = store.import_shard_captions(dataset)  # the shards' own captions are versions too (new ones only)
    if imported:
        log(f"caption store: imported {imported} from the shards")
    rows, images = select_clips(dataset, cfg, clip_ids)
    done = store.done_clip_ids(dataset, version)
    todo = [r for r in rows if r["clip_id"] not in done]
    already = len(rows) - len(todo)
    if cfg.limit:
        todo = todo[:cfg.limit]
    log(f"caption {dataset}: version {version}, {len(rows)} video clips, {already} already captioned, "
        f"{len(todo)} to do ({images} image samples left out)")
    from reelforge.recaption.runner import caption_on_ray

    summary = {"version": version, "template": template.id, "clips": len(rows), "skipped_done": already,
               "todo": len(todo), "ok": 0, "failed": 0, "retried": 0, "tokens": 0, "images_left_out": images}
    pending: list[dict] = []
    t_start = None
    if todo:
        ray_cfg = ray_cfg or RayConfig()
        if cfg.backend == "transformers" and not (ray_cfg.address or os.environ.get("RAY_ADDRESS")):
            # a local Ray loads the model on this machine: say now if it cannot (on a cluster the workers do)
            from reelforge.recaption.captioner import check_model_source
            check_model_source(cfg.captioner.model, cfg.captioner.revision)
        init_ray(ray_cfg)
        info: dict = {}
        t_start = time.time()
        bar = progress.bar(total=len(todo), desc="captions", unit="clip")  # one line per phase in a job log
        for results in caption_on_ray(dataset, todo, cfg.backend, cfg.captioner, cfg.openai, template, cfg.frames,
                                      cfg.actors, cfg.actor_cpus, cfg.chunk_clips or cfg.captioner.batch_size,
                                      cfg.prefetch, cfg.min_words, info):
            bar.update(len(results))
            for r in results:
                summary["ok" if r.status == "ok" else "failed"] += 1
                summary["retried"] += r.attempts > 1
                summary["tokens"] += r.tokens
                pending.append(store.caption_row(
                    r.clip_id, version, r.text, r.status, r.reason,
                    source="api" if cfg.backend == "openai" else "vlm", model=params["model"],
                    template_id=template.id, template_hash=template.hash,
                    params={**params, "attempts_settings": "retry" if r.attempts > 1 else "generation"},
                    attempts=r.attempts, tokens=r.tokens))
            if len(pending) >= cfg.part_clips:
                store.write_part(dataset, version, pending)
                pending = []
        bar.close()
        store.write_part(dataset, version, pending)
        summary["pool"] = info
    store.merge(dataset, default=version if cfg.make_default else None)
    wall = time.time() - (t_start or t0)
    summary.update(default_version=store.default_version(dataset), wall_s=round(time.time() - t0, 2),
                   caption_s=round(wall, 2), clips_per_s=round((summary["ok"] + summary["failed"]) / max(wall, 1e-9), 3),
                   tokens_per_s=round(summary["tokens"] / max(wall, 1e-9), 1))
    log(f"caption {version}: {summary['ok']} ok, {summary['failed']} failed ({summary['retried']} retried), "
        f"{summary['clips_per_s']} clips/s, {summary['tokens_per_s']} tokens/s; default version "
        f"{summary['default_version']}")
    return summary
