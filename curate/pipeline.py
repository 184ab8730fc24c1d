"""The dataset build: raw videos in, WebDataset shards + parquet manifests out.

The stages and their order are ``curate/stage_list.py``'s flat list. Read top to bottom, the job is:

0. guard   — lock the output, undo a killed publish, check the settings against the work on disk
             (``curate/buildstate.py``) and every stage's input columns, all before Ray starts
1. videos  — the ``video`` stages (probe → scene split): one row per input file; then exact duplicates
             (same bytes under two names) are set aside and each remaining video's clips are planned
2. clips   — the ``clip`` stages (transcode → scorers) stream into work shards under ``_work/``, committed
             with their rows at least every ``shards.max_open_seconds``
3. finish  — thresholds (and dataset-wide dedup) decide each clip's status; the kept clips are published
             as ``DIR/shards`` (members copied, final JSON); clips.parquet, videos.parquet, the index, the
             resolved config, the summary and the report are written from the same decision.
             ``--refilter`` runs only this step.

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

from reelforge import progress
from reelforge.cluster import RayConfig, init_ray
from reelforge.config import dump_config
from reelforge.curate import buildstate
from reelforge.curate.buildstate import BuildStateError, OutputLock
from reelforge.curate.clip_policy import ClipPolicyConfig
from reelforge.curate.discover import DiscoverConfig, discover_inputs
from reelforge.curate.filters import FiltersConfig, decide_all, funnel
from reelforge.curate.manifest import (BULK_COLUMNS, EMBEDDING_COLUMN, Manifest, clip_id_for, rows_to_table,
                                       write_parquet_atomic)
from reelforge.curate.runner import StageSpec, missing_rows, run_stages
from reelforge.curate.scenes import SceneConfig
from reelforge.curate.stage_list import check_columns, runnable, skipped, stage_args
from reelforge.curate.stages.probe import ProbeConfig
from reelforge.curate.stages.transcode import TranscodeConfig
from reelforge.recaption.job import RecaptionConfig
from reelforge.shards import publish as publishing
from reelforge.shards.spec import FORMAT_ID, INDEX_FILE
from reelforge.shards.writer import ShardWriter, ShardWriterConfig

WORK_PREFIX = "work"   # work shards: _work/shards/work-NNNNNN.tar


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
    # caption the kept clips with a vision-language model after the finish, then caption_match (off by default)
    recaption: RecaptionConfig = field(default_factory=RecaptionConfig)


# probe fields copied onto each clip row (prefixed src_ where the clip has its own value)
_VIDEO_TO_CLIP = {"path": "video_path", "sha256": "video_sha256", "width": "src_width", "height": "src_height",
                  "fps": "src_fps", "rotation": "rotation", "sar": "sar", "codec": "src_codec",
                  "bit_rate": "src_bit_rate"}  # near-duplicates: the copy with the highest bitrate is kept


def stage_specs(cfg: CurateConfig, phase: str) -> list[StageSpec]:
    """The runnable Ray stages of ``phase`` ("video" | "clip"), in the stage list's order."""
    return [StageSpec(e.cls, stage_args(e, cfg)) for e in runnable(cfg, phase)]


def mark_exact_duplicates(videos: list[dict]) -> list[dict]:
    """Same bytes under two names: the first path (sorted) is the original; each copy becomes
    ``filtered`` with ``duplicate_of`` and a reason naming the original, and plans no clips.

    Decided on every run from the current inputs (never stored in ``_work``), so dropping the original
    from the inputs makes the copy the original next time.
    """
    first: dict[str, str] = {}
    out = []
    for v in sorted(videos, key=lambda v: v["path"]):
        sha = v.get("sha256")
        if v.get("status") == "ok" and sha:
            if sha in first:
                v = dict(v, status="filtered", duplicate_of=first[sha],
                         reason=f"duplicate: same bytes as {first[sha]} (sha256 {sha[:16]}...)")
            else:
                first[sha] = v["path"]
        out.append(v)
    return out


def _spans(video: dict) -> list[dict]:
    """A video row's planned clip spans: a list, or JSON text (rows that crossed Ray or a parquet file;
    text written by an earlier version may be encoded twice)."""
    spans = video.get("clip_spans") or []
    while isinstance(spans, str):
        spans = json.loads(spans) if spans else []
    return spans


def plan_clip_rows(video: dict) -> list[dict]:
    """Clip rows (work items and dropped spans) for one scene-split video row."""
    spans = _spans(video)
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
    """The ``<clip_id>.json`` member: every scalar column of the row plus the format id. Published shards
    get it from the clip's final clips.parquet row, so its ``status``/``reason`` are the final ones."""
    meta = {"format": FORMAT_ID}
    for k, v in row.items():
        if k in BULK_COLUMNS or k == EMBEDDING_COLUMN or k in ("caption", "shard", "work_shard"):
            continue
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, (str, int, float, bool)) or v is None:
            meta[k] = v
        elif isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
            meta[k] = list(v)
    return json.dumps(meta, sort_keys=True).encode()


def run_build(inputs: list[str], out_dir: str | Path, cfg: BuildConfig, refresh: bool = False,
              rebuild: bool = False) -> dict:
    """Build (or resume, or extend) the dataset in ``out_dir`` from ``inputs``; returns the summary.

    Raises BuildStateError before any work when the output is in use, or holds work made with settings
    that change the clips (``rebuild=True`` discards that work and redoes it), and StageListError when
    the enabled stages do not fit together.
    """
    t0 = time.time()
    out = Path(out_dir)
    check_columns(cfg.curate)
    with OutputLock(out):  # first: a second build stops at once, before listing a large input
        found = discover_inputs(inputs, cfg.curate.discover)  # input files + named entries skipped, with why
        paths = found.paths
        publishing.recover(out)
        manifest = Manifest(out)
        _check_work(out, manifest, cfg, rebuild)
        mode = init_ray(cfg.ray)
        print(f"reelforge build: {len(paths)} input files, Ray {mode}, output {out}")
        videos = _videos_phase(manifest, paths, cfg, refresh, found.skipped)
        t_videos = time.time()
        _clips_phase(manifest, videos, cfg)
        t_clips = time.time()
        summary = finish(out, cfg, manifest, videos)
        if cfg.recaption.enabled:  # kept clips get captions; their caption_match scores re-decide the statuses
            from reelforge.recaption.build import caption_build
            recaption = caption_build(out, cfg.recaption, cfg.curate.filters.caption_match, cfg.ray)
            if recaption["caption_match"]["scored"]:
                summary = finish(out, cfg, manifest, videos)
            summary["recaption"] = recaption
        summary["phase_s"] = {"videos": round(t_videos - t0, 2), "clips": round(t_clips - t_videos, 2),
                              "finish": round(time.time() - t_clips, 2)}
        summary["wall_s"] = round(time.time() - t0, 2)
        summary["source_seconds_per_s"] = round(summary["source_seconds"] / max(summary["wall_s"], 1e-9), 3)
        write_outputs(out, cfg, summary)
    return summary


def run_refilter(out_dir: str | Path, cfg: BuildConfig) -> dict:
    """Re-decide every clip of a built dataset with ``cfg``'s thresholds, without decoding: re-runs the
    finish (statuses, dedup, publish, tables, index, summary, config, report) from the work record.

    Refuses (BuildStateError) settings that would change the clips themselves, and a dataset whose
    ``_work`` is gone (the rejected clips and the scores live there).
    """
    t0 = time.time()
    out = Path(out_dir)
    check_columns(cfg.curate)
    if not out.is_dir():
        raise FileNotFoundError(f"no dataset at {out}")
    with OutputLock(out):
        publishing.recover(out)
        state = buildstate.load_state(out / "_work")
        if state is None:
            raise BuildStateError(
                f"{out}: no work record (_work/{buildstate.STATE_FILE}); --refilter re-decides from the scores and "
                f"work shards a build keeps in _work. Rebuild with `reelforge build CONFIG --input ... --output {out} "
                f"--rebuild`")
        changes = buildstate.changed_settings(state["settings"], buildstate.work_settings(cfg.curate))
        if changes:
            raise BuildStateError(
                f"--refilter re-applies thresholds only, but these settings change the clips themselves: "
                f"{buildstate.describe_changes(changes)}. Run `reelforge build CONFIG --input ... --output {out} "
                f"--rebuild` to redo that work")
        manifest = Manifest(out)
        summary = finish(out, cfg, manifest, list(manifest.load_videos().values()))
        previous = _read_summary(out)
        for key in ("phase_s", "wall_s", "source_seconds_per_s"):  # the build's timings still describe the build
            if key in previous:
                summary[key] = previous[key]
        summary["refilter_s"] = round(time.time() - t0, 2)
        write_outputs(out, cfg, summary)
    return summary


def _read_summary(out: Path) -> dict:
    try:
        return json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}


def _check_work(out: Path, manifest: Manifest, cfg: BuildConfig, rebuild: bool) -> None:
    """Stop unless the work on disk was made with this config's clip-changing settings (or discard it
    with ``rebuild``); then record the settings the work from here on is made with."""
    current = buildstate.work_settings(cfg.curate)
    state = buildstate.load_state(manifest.work)
    published = any(manifest.shards_dir.glob("*.tar"))
    if state is None:
        if (published or manifest.has_work()) and not rebuild:
            raise BuildStateError(
                f"{out} holds a dataset but no work record (_work/{buildstate.STATE_FILE}): its _work folder was "
                f"deleted or written by an older reelforge, so what its clips were made with is unknown. Re-run "
                f"with --rebuild to rebuild every clip (the published shards stay until the new ones replace "
                f"them), or choose another --output")
        manifest.reset(videos=True)
    else:
        changes = buildstate.changed_settings(state["settings"], current)
        if changes and not rebuild:
            raise BuildStateError(
                f"{out} was built with other settings that change the clips: {buildstate.describe_changes(changes)}. "
                f"Re-run with --rebuild to redo the affected work ({' and '.join(changes)} phase), or choose "
                f"another --output; thresholds alone go through --refilter")
        if rebuild:
            manifest.reset(videos="videos" in changes or not changes)
    buildstate.save_state(manifest.work, current)


def _videos_phase(manifest: Manifest, paths: list[str], cfg: BuildConfig, refresh: bool,
                  skipped_inputs: list[dict]) -> list[dict]:
    """Probe and split the inputs not done yet; returns one row per input, duplicates marked.

    ``skipped_inputs`` (named entries that are no input file: failed rows saying why) are saved with the
    others, so a refilter, which rewrites videos.parquet from ``_work``, still lists them."""
    known = {} if refresh else manifest.load_videos()
    # a saved skip is re-decided by discover on every run (a broken link may have been fixed)
    known = {p: r for p, r in known.items() if not str(r.get("reason") or "").startswith("discover:")}
    todo = [{"path": p, "status": "ok", "reason": ""} for p in paths if p not in known]
    videos = [known[p] for p in paths if p in known]
    last_save, returned = time.time(), set()
    for row in progress.bar(run_stages(todo, stage_specs(cfg.curate, "video")), total=len(todo), desc="videos",
                    unit="video"):
        row["clip_spans"] = _spans(row)  # one type in the column: parquet then stores it as JSON once
        videos.append(row)
        returned.add(row["path"])
        if time.time() - last_save > cfg.shards.max_open_seconds:  # a kill loses at most this much probing
            manifest.save_videos(videos)
            last_save = time.time()
    videos += missing_rows(todo, returned, "path", "probe/scene_split") + list(skipped_inputs)
    manifest.save_videos(videos)
    return mark_exact_duplicates(videos)


def _clips_phase(manifest: Manifest, videos: list[dict], cfg: BuildConfig) -> None:
    """Transcode and score the planned clips not committed yet, streaming them into work shards.

    Rows are held only until the next commit (a shard or a tail part), at most about
    ``shards.max_open_seconds`` of work; the media bytes go straight into the open tar.
    """
    done = manifest.recover()
    work, pending = [], []
    for video in videos:
        if video["status"] != "ok":
            continue
        for row in plan_clip_rows(video):
            if row["clip_id"] in done:
                continue
            if row["status"] == "ok":
                work.append(row)
            else:  # planned but dropped (e.g. shorter than min_seconds): recorded with the next commit
                pending.append(dict(row, work_shard=None))
    last_commit = time.time()

    def commit(name: str) -> None:
        nonlocal pending, last_commit
        manifest.commit_part(name, pending)
        pending, last_commit = [], time.time()

    writer = ShardWriter(manifest.work_shards, ShardWriterConfig(
        target_bytes=cfg.shards.target_bytes, prefix=WORK_PREFIX, max_open_seconds=cfg.shards.max_open_seconds),
        on_commit=lambda shard: commit(shard.name), known_keys=done)
    returned = set()
    try:
        with progress.bar(total=len(work), desc="clips", unit="clip") as bar:
            for row in run_stages(work, stage_specs(cfg.curate, "clip"), drop=("frames", "frame_times")):
                bar.update(1)
                returned.add(row["clip_id"])
                members = None
                if row.get("status") != "failed" and row.get("mp4"):
                    members = {"mp4": bytes(row["mp4"]), "json": sample_json(row)}
                    if row.get("caption"):
                        members["txt"] = row["caption"].encode("utf-8")
                row["work_shard"] = writer.current_name() if members else None
                row["mp4_bytes"] = len(members["mp4"]) if members else 0
                # the row joins `pending` before the write: a write that fills the shard commits it at
                # once, and the shard's part file must already hold this row
                pending.append({k: v for k, v in row.items() if k not in BULK_COLUMNS})
                if members:
                    writer.write(row["clip_id"], members)
                elif pending and time.time() - last_commit > cfg.shards.max_open_seconds:
                    # rows without media (failed clips) are committed on time too
                    if writer.flush() is None:
                        commit(f"tail-{int(time.time() * 1000)}")
        writer.close()
    except BaseException:
        writer.abort()  # the open shard's rows were never committed: redone on resume
        raise
    pending += [dict(r, work_shard=None) for r in missing_rows(work, returned, "clip_id", "transcode/scoring")]
    if pending:  # dropped/failed clips after the last shard
        commit(f"tail-{int(time.time() * 1000)}")


def _current_clip_rows(manifest: Manifest, videos: list[dict]) -> list[dict]:
    """The committed clip rows of the clips the current inputs plan, each once, with its current video path.

    Clip ids are content hashes: the same file under a new path (or folder) plans the same ids, and its
    rows take the new path instead of adding old rows beside new ones. Rows of inputs no longer given
    stay in ``_work`` but are not part of the dataset.
    """
    plan: dict[str, str] = {}
    for v in videos:
        if v["status"] != "ok":
            continue
        for span in _spans(v):
            plan.setdefault(clip_id_for(v["sha256"], span["start_frame"], span["end_frame"]), v["path"])
    table = manifest.committed_clips()
    rows, seen = [], set()
    for r in (table.to_pylist() if table is not None else []):
        cid = r["clip_id"]
        if cid in plan and cid not in seen:
            seen.add(cid)
            r["video_path"] = plan[cid]
            rows.append(r)
    return rows


def finish(out: Path, cfg: BuildConfig, manifest: Manifest, videos: list[dict]) -> dict:
    """Decide, publish and write every table from one decision; returns the summary (not yet written)."""
    from reelforge.recaption.build import add_caption_scores
    from reelforge.curate.dedup import write_embeddings
    from reelforge.curate.near_dup import SIGNATURE_COLUMN, write_signatures
    from reelforge.shards.index import build_index

    videos = mark_exact_duplicates(videos)
    rows = _current_clip_rows(manifest, videos)
    add_caption_scores(out, rows)  # caption_match of the last captioning run (recaption/build.py)
    emb_rows = [{"clip_id": r["clip_id"], "embedding": r[EMBEDDING_COLUMN]} for r in rows
                if isinstance(r.get(EMBEDDING_COLUMN), (list, np.ndarray)) and len(r[EMBEDDING_COLUMN])]
    for r in rows:
        r.pop(EMBEDDING_COLUMN, None)
    emb_path = out / "embeddings.parquet"
    if emb_rows:
        write_embeddings(emb_rows, emb_path)
    else:
        emb_path.unlink(missing_ok=True)
    # frame signatures go to their own table, like embeddings (near_dup.py: read again on every decision)
    sig_path = out / "signatures.parquet"
    if write_signatures(rows, sig_path) == 0:
        sig_path.unlink(missing_ok=True)
    for r in rows:
        r.pop(SIGNATURE_COLUMN, None)
    rows = decide_all(rows, cfg.curate.filters, emb_path if emb_rows else None,
                      sig_path if sig_path.is_file() else None)
    for r in rows:
        if r["status"] == "ok" and not r.get("work_shard"):
            r["status"], r["reason"] = "failed", "transcode: no clip media was written for this clip"
    rows.sort(key=lambda r: (r.get("video_path") or "", r.get("start_frame") or 0))

    published = publishing.publish(out, manifest.work_shards, [r for r in rows if r["status"] == "ok"],
                                   sample_json, cfg.shards, manifest.work)
    for r in rows:
        r["shard"] = published.shard_of.get(r["clip_id"])
        if r["clip_id"] in published.missing:  # its work tar was deleted or damaged by hand
            r["status"], r["reason"] = "failed", published.missing[r["clip_id"]]
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
    if published.shards:
        build_index(out)
    else:  # nothing kept: no stale index may keep serving the previous set
        (out / INDEX_FILE).unlink(missing_ok=True)

    # group failures by what went wrong, not by which file: the path is replaced in the reason
    failed = Counter((v["reason"] or "").replace(v["path"], "<file>")[:90] for v in vrows if v["status"] == "failed")
    work_tars = list(manifest.work_shards.glob("*.tar"))
    return {
        "inputs": len(vrows),
        "videos_ok": sum(v["status"] == "ok" for v in vrows),
        "videos_filtered": sum(v["status"] == "filtered" and not v.get("duplicate_of") for v in vrows),
        "videos_duplicate": sum(bool(v.get("duplicate_of")) for v in vrows),
        "videos_failed": sum(v["status"] == "failed" for v in vrows),
        "failed_by_reason": dict(failed),
        "clips": len(rows),
        "clips_ok": sum(r["status"] == "ok" for r in rows),
        "funnel": funnel(rows),
        "skipped_stages": skipped(cfg.curate),
        "shards": len(published.shards),
        "shard_bytes": published.bytes,
        "publish": {"seconds": published.seconds, "bytes": published.bytes, "unchanged": published.skipped},
        "work_shards": len(work_tars),
        "work_shard_bytes": sum(p.stat().st_size for p in work_tars),
        "source_seconds": round(sum(float(v.get("duration_s") or 0) for v in vrows if v["status"] == "ok"), 3),
    }


def write_outputs(out: Path, cfg: BuildConfig, summary: dict) -> None:
    """The resolved config (it describes the data now on disk), the summary, and the report."""
    dump_config(cfg, out / "config.yaml")
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    tmp.replace(out / "summary.json")
    print_summary(summary)
    if cfg.report:
        from reelforge.curate.report import write_report

        print(f"report        {write_report(out)}")


def print_summary(s: dict) -> None:
    print("\n== reelforge build summary ==")
    print(f"inputs        {s['inputs']}  (ok {s['videos_ok']}, no usable shot {s['videos_filtered']}, "
          f"duplicate {s.get('videos_duplicate', 0)}, failed {s['videos_failed']})")
    for reason, n in sorted(s["failed_by_reason"].items(), key=lambda kv: -kv[1]):
        print(f"  failed      {n:4d}  {reason}")
    print(f"clips         {s['clips']}  (kept {s['clips_ok']})")
    for name, n in s["funnel"].items():
        print(f"  removed by  {name:<14s} {n}")
    for name, why in (s.get("skipped_stages") or {}).items():
        print(f"  skipped     {name:<14s} {why}")
    pub = s.get("publish") or {}
    how = "unchanged" if pub.get("unchanged") else f"published in {pub.get('seconds', 0):.1f} s"
    print(f"shards        {s['shards']}  ({s['shard_bytes'] / 1e6:.1f} MB of kept clips, {how}; "
          f"work shards {s.get('work_shard_bytes', 0) / 1e6:.1f} MB)")
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in s.get("phase_s", {}).items())
    print(f"wall time     {s.get('wall_s', 0):.1f} s  ({s.get('source_seconds_per_s', 0):.2f} source-s/s; {phases})")
    if "refilter_s" in s:
        print(f"refilter      {s['refilter_s']:.1f} s  (the wall time above is the build's)")
