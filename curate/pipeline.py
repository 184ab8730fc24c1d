"""The dataset build: raw videos in, WebDataset shards + parquet manifests out.

Read top to bottom, the job is two Ray Data passes and a finish:

1. videos  — Probe → SceneSplit: one row per input file (status, probe fields, planned clip spans)
2. clips   — Transcode → scoring stages: one row per clip, streamed into the atomic shard writer
3. finish  — thresholds (and dataset-wide dedup) decide each clip's status; final parquet tables,
             the shard index, the resolved config and a summary are written.

Stages are plain classes (``curate.stages``); ``curate.runner`` maps them over Ray and
``reelforge.cluster`` starts or joins Ray: no other module touches it.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from reelforge.cluster import RayConfig, init_ray
from reelforge.config import dump_config
from reelforge.curate.clip_policy import ClipPolicyConfig
from reelforge.curate.discover import DiscoverConfig, discover
from reelforge.curate.filters import FiltersConfig, apply_filters, build_filter_stages, funnel
from reelforge.curate.manifest import (BULK_COLUMNS, EMBEDDING_COLUMN, Manifest, clip_id_for, rows_to_table,
                                       write_parquet_atomic)
from reelforge.curate.runner import StageSpec, missing_rows, run_stages
from reelforge.curate.scenes import SceneConfig
from reelforge.curate.stages.probe import Probe, ProbeConfig
from reelforge.curate.stages.scene_split import SceneSplit
from reelforge.curate.stages.transcode import Transcode, TranscodeConfig
from reelforge.shards.spec import FORMAT_ID
from reelforge.shards.writer import ShardWriter, ShardWriterConfig


@dataclass
class CurateConfig:
    discover: DiscoverConfig = field(default_factory=DiscoverConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    scenes: SceneConfig = field(default_factory=SceneConfig)
    split: ClipPolicyConfig = field(default_factory=ClipPolicyConfig)
    transcode: TranscodeConfig = field(default_factory=TranscodeConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)


@dataclass
class BuildConfig:
    curate: CurateConfig = field(default_factory=CurateConfig)
    shards: ShardWriterConfig = field(default_factory=ShardWriterConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    report: bool = True   # write DIR/report.html (funnel, histograms, contact sheet) at the end


# probe fields copied onto each clip row (prefixed src_ where the clip has its own value)
_VIDEO_TO_CLIP = {"path": "video_path", "sha256": "video_sha256", "width": "src_width", "height": "src_height",
                  "fps": "src_fps", "rotation": "rotation", "sar": "sar", "codec": "src_codec"}


def video_stages(cfg: CurateConfig) -> list[StageSpec]:
    return [StageSpec(Probe, (cfg.probe,)), StageSpec(SceneSplit, (cfg.scenes, cfg.split))]


def clip_stages(cfg: CurateConfig) -> list[StageSpec]:
    return [StageSpec(Transcode, (cfg.transcode,))] + build_filter_stages(cfg.filters)


def plan_clip_rows(video: dict) -> list[dict]:
    """Clip rows (work items and dropped spans) for one scene-split video row."""
    spans = video.get("clip_spans") or []
    if isinstance(spans, str):
        spans = json.loads(spans)
    rows = []
    for i, span in enumerate(spans):
        span = dict(span)
        row = {dst: video.get(src) for src, dst in _VIDEO_TO_CLIP.items()}
        row.update(clip_id=clip_id_for(video["sha256"], span["start_frame"], span["end_frame"]), clip_index=i,
                   caption=video.get("sidecar_caption") or "",
                   caption_source="sidecar" if video.get("sidecar_caption") else "")
        row.update(span)
        # the transcoder matches decoded frames by pts: first frame's pts, last frame's pts
        row["start_pts"] = span["start_s"]
        row["end_pts"] = span["end_s"] - 1.0 / float(video.get("fps") or 25.0)
        row["status"] = span.get("status", "ok")
        row["reason"] = span.get("reason", "")
        rows.append(row)
    return rows


def sample_json(row: dict) -> bytes:
    """The ``<clip_id>.json`` member: every scalar column of the row plus the format id."""
    meta = {"format": FORMAT_ID}
    for k, v in row.items():
        if k in BULK_COLUMNS or k == EMBEDDING_COLUMN or k in ("caption",):
            continue
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, (str, int, float, bool)) or v is None:
            meta[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
            meta[k] = list(v)
    return json.dumps(meta, sort_keys=True).encode()


def run_build(inputs: list[str], out_dir: str | Path, cfg: BuildConfig, refresh: bool = False) -> dict:
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    manifest = Manifest(out)
    paths = discover(inputs, cfg.curate.discover)
    mode = init_ray(cfg.ray)
    print(f"reelforge build: {len(paths)} input files, Ray {mode}, output {out}")

    # ---- 1. videos: probe and scene split -------------------------------------------------------
    known = {} if refresh else manifest.load_videos()
    todo = [{"path": p, "status": "ok", "reason": ""} for p in paths if p not in known]
    videos = [known[p] for p in paths if p in known]
    last_save, returned = time.time(), set()
    for row in tqdm(run_stages(todo, video_stages(cfg.curate)), total=len(todo), desc="videos", unit="video"):
        videos.append(row)
        returned.add(row["path"])
        if time.time() - last_save > 60:  # a kill loses at most a minute of probing and splitting
            manifest.save_videos(videos)
            last_save = time.time()
    videos += missing_rows(todo, returned, "path", "probe/scene_split")
    manifest.save_videos(videos)

    t_videos = time.time()

    # ---- 2. clips: transcode, score, stream into shards ----------------------------------------
    done = manifest.recover()
    work, dropped = [], []
    for video in videos:
        if video["status"] != "ok":
            continue
        for row in plan_clip_rows(video):
            if row["clip_id"] in done:
                continue
            (work if row["status"] == "ok" else dropped).append(row)

    pending: list[dict] = list(dropped)  # rows waiting for the next commit

    def on_commit(shard) -> None:
        nonlocal pending
        manifest.commit_part(shard.name, pending)
        pending = []

    writer = ShardWriter(manifest.shards_dir, cfg.shards, on_commit=on_commit)
    returned = set()
    with tqdm(total=len(work), desc="clips", unit="clip") as bar:
        for row in run_stages(work, clip_stages(cfg.curate)):
            bar.update(1)
            returned.add(row["clip_id"])
            members = None
            if row.get("status") != "failed" and row.get("mp4"):
                members = {"mp4": bytes(row["mp4"]), "json": sample_json(row)}
                if row.get("caption"):
                    members["txt"] = row["caption"].encode("utf-8")
            row["shard"] = writer.current_name() if members else None
            row["mp4_bytes"] = len(members["mp4"]) if members else 0
            # the row joins `pending` before the write: a write that fills the shard commits it at
            # once, and the shard's part file must already hold this row
            pending.append({k: v for k, v in row.items() if k not in BULK_COLUMNS})
            if members:
                writer.write(row["clip_id"], members)
    writer.close()
    pending += [dict(r, shard=None) for r in missing_rows(work, returned, "clip_id", "transcode/scoring")]
    if pending:  # dropped/failed clips after the last shard
        manifest.commit_part(f"tail-{int(time.time() * 1000)}", pending)
        pending = []

    t_clips = time.time()

    # ---- 3. finish: decide statuses, write tables, index, summary -------------------------------
    summary = finish(out, cfg, manifest, videos)
    summary["phase_s"] = {"videos": round(t_videos - t0, 2), "clips": round(t_clips - t_videos, 2),
                          "finish": round(time.time() - t_clips, 2)}
    summary["wall_s"] = round(time.time() - t0, 2)
    summary["source_seconds_per_s"] = round(summary["source_seconds"] / max(summary["wall_s"], 1e-9), 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    if cfg.report:
        from reelforge.curate.report import write_report

        print(f"report        {write_report(out)}")
    return summary


def finish(out: Path, cfg: BuildConfig, manifest: Manifest, videos: list[dict]) -> dict:
    from reelforge.curate.dedup import apply_dedup, write_embeddings
    from reelforge.shards.index import build_index

    clips = manifest.committed_clips()
    rows = clips.to_pylist() if clips is not None else []
    emb_rows = [{"clip_id": r["clip_id"], "embedding": r[EMBEDDING_COLUMN]} for r in rows
                if isinstance(r.get(EMBEDDING_COLUMN), (list, np.ndarray)) and len(r[EMBEDDING_COLUMN])]
    for r in rows:
        r.pop(EMBEDDING_COLUMN, None)
    rows = apply_filters(rows, cfg.curate.filters)
    if emb_rows:
        write_embeddings(emb_rows, out / "embeddings.parquet")
        if cfg.curate.filters.dedup.enabled:
            rows = apply_dedup(rows, out / "embeddings.parquet", cfg.curate.filters.dedup)
    rows.sort(key=lambda r: (r.get("video_path") or "", r.get("start_frame") or 0))
    write_parquet_atomic(rows_to_table(rows), out / "clips.parquet")

    per_video = Counter(r["video_path"] for r in rows)
    kept = Counter(r["video_path"] for r in rows if r["status"] == "ok")
    vrows = []
    for v in videos:
        v = {k: val for k, val in v.items() if k != "clip_spans"}
        v["num_clips"] = per_video.get(v["path"], 0)
        v["num_clips_ok"] = kept.get(v["path"], 0)
        if v["status"] == "ok" and v["num_clips"] == 0:
            # decodable, but every frame lies in a transition or a cut margin: nothing to train on
            v["status"] = "filtered"
            v["reason"] = (f"split: no shot outside transitions and cut margins "
                           f"({v.get('frames', 0)} frames, {len(json.loads(v.get('transitions') or '[]'))} transitions)")
        vrows.append(v)
    write_parquet_atomic(rows_to_table(vrows), out / "videos.parquet")
    if any(r.get("shard") for r in rows):
        build_index(out)

    shards = sorted(manifest.shards_dir.glob("*.tar"))
    # group failures by what went wrong, not by which file: the path is replaced in the reason
    failed = Counter((v["reason"] or "").replace(v["path"], "<file>")[:90] for v in vrows if v["status"] == "failed")
    return {
        "inputs": len(vrows),
        "videos_ok": sum(v["status"] == "ok" for v in vrows),
        "videos_filtered": sum(v["status"] == "filtered" for v in vrows),
        "videos_failed": sum(v["status"] == "failed" for v in vrows),
        "failed_by_reason": dict(failed),
        "clips": len(rows),
        "clips_ok": sum(r["status"] == "ok" for r in rows),
        "funnel": funnel(rows),
        "shards": len(shards),
        "shard_bytes": sum(p.stat().st_size for p in shards),
        "source_seconds": round(sum(float(v.get("duration_s") or 0) for v in vrows if v["status"] == "ok"), 3),
    }


def print_summary(s: dict) -> None:
    print("\n== reelforge build summary ==")
    print(f"inputs        {s['inputs']}  (ok {s['videos_ok']}, no usable shot {s['videos_filtered']}, "
          f"failed {s['videos_failed']})")
    for reason, n in sorted(s["failed_by_reason"].items(), key=lambda kv: -kv[1]):
        print(f"  failed      {n:4d}  {reason}")
    print(f"clips         {s['clips']}  (kept {s['clips_ok']})")
    for name, n in s["funnel"].items():
        print(f"  removed by  {name:<14s} {n}")
    print(f"shards        {s['shards']}  ({s['shard_bytes'] / 1e6:.1f} MB)")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in s.get("phase_s", {}).items())
    print(f"wall time     {s.get('wall_s', 0):.1f} s  ({s.get('source_seconds_per_s', 0):.2f} source-s/s; {phases})")
