"""The dataset build: raw videos in, WebDataset shards + parquet manifests out.

The stages and their order are ``curate/stage_list.py``'s flat list. Read top to bottom, the job is:

0. guard   — lock the output, undo a killed publish, check the settings against the work on disk
             (``curate/buildstate.py``) and every stage's input columns, all before Ray starts
1. build   — one task per input video (``curate/video_task.py``), or per group of small ones sharing
             one work shard series (``curate/video_group.py``, ``group``): the ``video`` stages (probe →
             scene split), its clip plan, the ``clip`` stages (transcode → scorers) on its clips, and its
             own work shards under ``_work/``, committed with their rows at least every
             ``shards.max_open_seconds``; only the small video rows come back (``_build_phase``)
2. finish  — thresholds (and dataset-wide dedup) decide each clip's status; the kept clips are published
             as ``DIR/shards`` (members copied, final JSON); clips.parquet, videos.parquet, the index, the
             resolved config, the summary and the report are written from the same decision. Streamed
             over the manifest's parts (``curate/finish.py``; the video rows too, and the index over the
             shards: ``shards/index.py``), so it does not grow with the clips; the output lock is checked
             before each commit. ``--refilter`` runs only this step.

Exact duplicates (same bytes under two names) are decided at the finish from the video rows; a copy
whose content another task already made reuses that split and those clips.

Stages are plain classes (``curate.stages``); ``curate.runner`` runs the video tasks on Ray and
``reelforge.cluster`` starts or joins Ray: no other module touches it.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reelforge import progress, storage
from reelforge.cluster import RayConfig, init_ray
from reelforge.config import dump_config
from reelforge.curate import buildstate
from reelforge.curate.buildstate import BuildStateError, OutputLock
from reelforge.curate.clip_policy import ClipPolicyConfig
from reelforge.curate.discover import DiscoverConfig, discover_inputs
from reelforge.curate.filters import FiltersConfig
from reelforge.curate.finish import Videos, decide_and_publish, write_videos
from reelforge.curate.manifest import Manifest
from reelforge.curate.runner import StageSpec, missing_rows, run_tasks, task_slots
from reelforge.curate.scenes import SceneConfig
from reelforge.curate.stage import CPU_PREFIX
from reelforge.curate.stage_list import check_columns, runnable, skipped, stage_args
from reelforge.curate.stages.probe import ProbeConfig
from reelforge.curate.stages.transcode import TranscodeConfig
from reelforge.recaption.job import RecaptionConfig
from reelforge.shards import publish as publishing
from reelforge.curate.video_group import GroupConfig, VideoGroupTask, group_items, video_rows as group_video_rows
from reelforge.curate.video_task import STATS, VideoTask, plan_clip_rows, sample_json, spans_of  # noqa: F401
from reelforge.shards.spec import INDEX_FILE
from reelforge.shards.writer import ShardWriteError, ShardWriterConfig


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
    group: GroupConfig = field(default_factory=GroupConfig)   # small videos several to a task (video_group.py)
    report: bool = True   # write DIR/report.html (funnel, histograms, contact sheet) at the end
    # caption the kept clips with a vision-language model after the finish, then caption_match (off by default)
    recaption: RecaptionConfig = field(default_factory=RecaptionConfig)


def stage_specs(cfg: CurateConfig, phase: str) -> list[StageSpec]:
    """The runnable Ray stages of ``phase`` ("video" | "clip"), in the stage list's order."""
    return [StageSpec(e.cls, stage_args(e, cfg)) for e in runnable(cfg, phase)]


def run_build(inputs: list[str], out_dir: str | Path, cfg: BuildConfig, refresh: bool = False,
              rebuild: bool = False) -> dict:
    """Build (or resume, or extend) the dataset in ``out_dir`` from ``inputs``; returns the summary.

    Raises BuildStateError before any work when the output is in use, or holds work made with settings
    that change the clips (``rebuild=True`` discards that work and redoes it), and StageListError when
    the enabled stages do not fit together.
    """
    t0 = time.time()
    storage.check_output_url(out_dir)  # an output that cannot work: one line, before any input is read
    out = storage.as_path_or_url(out_dir)
    check_columns(cfg.curate)
    with OutputLock(out) as lock:  # first: a second build stops at once, before listing a large input
        found = discover_inputs(inputs, cfg.curate.discover)  # input files + named entries skipped, with why
        paths = found.paths
        publishing.recover(out)
        manifest = Manifest(out)
        _check_work(out, manifest, cfg, rebuild)
        mode = init_ray(cfg.ray)
        print(f"reelforge build: {len(paths)} input files, Ray {mode}, output {out}")
        counts = _build_phase(manifest, paths, cfg, refresh, found.skipped)
        t_build = time.time()
        # the final tables are a dataset-wide decision: read back from storage, not kept from the tasks
        videos = Videos(manifest, set(paths) | {s["path"] for s in found.skipped})
        summary = finish(out, cfg, manifest, videos, lock.check)
        if cfg.recaption.enabled:  # kept clips get captions; their caption_match scores re-decide the statuses
            from reelforge.recaption.build import caption_build
            recaption = caption_build(out, cfg.recaption, cfg.curate.filters.caption_match, cfg.ray)
            if recaption["caption_match"]["scored"]:
                summary = finish(out, cfg, manifest, videos, lock.check)
            summary["recaption"] = recaption
        summary["phase_s"] = {"build": round(t_build - t0, 2), "finish": round(time.time() - t_build, 2)}
        summary["build_tasks"] = counts
        summary["wall_s"] = round(time.time() - t0, 2)
        summary["source_seconds_per_s"] = round(summary["source_seconds"] / max(summary["wall_s"], 1e-9), 3)
        lock.check()
        write_outputs(out, cfg, summary)
    return summary


def run_refilter(out_dir: str | Path, cfg: BuildConfig) -> dict:
    """Re-decide every clip of a built dataset with ``cfg``'s thresholds, without decoding: re-runs the
    finish (statuses, dedup, publish, tables, index, summary, config, report) from the work record.

    Refuses (BuildStateError) settings that would change the clips themselves, and a dataset whose
    ``_work`` is gone (the rejected clips and the scores live there).
    """
    t0 = time.time()
    storage.check_output_url(out_dir)
    out = storage.as_path_or_url(out_dir)
    check_columns(cfg.curate)
    if not storage.isdir(out):
        raise FileNotFoundError(f"no dataset at {out}")
    with OutputLock(out) as lock:
        publishing.recover(out)
        state = buildstate.load_state(storage.join(out, "_work"))
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
        summary = finish(out, cfg, manifest, Videos(manifest), lock.check)
        previous = _read_summary(out)
        for key in ("phase_s", "wall_s", "source_seconds_per_s"):  # the build's timings still describe the build
            if key in previous:
                summary[key] = previous[key]
        summary["refilter_s"] = round(time.time() - t0, 2)
        lock.check()
        write_outputs(out, cfg, summary)
    return summary


def _read_summary(out: Path) -> dict:
    try:
        return json.loads(storage.read_bytes(storage.join(out, "summary.json")))
    except (OSError, ValueError):
        return {}


def _check_work(out: Path, manifest: Manifest, cfg: BuildConfig, rebuild: bool) -> None:
    """Stop unless the work on disk was made with this config's clip-changing settings (or discard it
    with ``rebuild``); then record the settings the work from here on is made with."""
    current = buildstate.work_settings(cfg.curate)
    state = buildstate.load_state(manifest.work)
    published = bool(storage.glob(storage.join(manifest.shards_dir, "*.tar")))
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


def _build_phase(manifest: Manifest, paths: list[str], cfg: BuildConfig, refresh: bool,
                 skipped_inputs: list[dict]) -> dict:
    """Every input not finished yet runs as one task (``curate/video_task.py``): probe, split, its clips,
    its own work shards and manifest parts. Returns counts; the rows stay on storage.

    The driver holds the tasks in flight and the video rows not saved yet (at most about
    ``shards.max_open_seconds`` of them): nothing that grows with the clips. A video counts as done when
    its content's ``complete.json`` exists; a saved video row (probe + split) is handed back to its task
    so a resumed video is not probed or split again. ``skipped_inputs`` (named entries that are no input
    file: failed rows saying why) are saved with the others, so a refilter still lists them.
    """
    # where each saved row is, with what deciding needs (not the rows: ~7 KB a video)
    parts, known = ([], {}) if refresh else manifest.video_places(set(paths), ("status", "sha256", "reason"))
    removed = manifest.recover()  # before any task starts: no writer of an earlier run is alive
    todo, resume = [], []
    for p in paths:
        place = known.get(p)
        _, _, status, sha256, reason = place or (None,) * 5
        # a saved skip is re-decided by discover on every run (a broken link may have been fixed)
        if place is None or str(reason or "").startswith("discover:"):
            todo.append({"path": p, "status": "ok", "reason": ""})
        elif status == "ok" and sha256 and not manifest.is_complete(sha256):
            todo.append(None)  # probed and split; some of its clips are not committed yet: its row, below
            resume.append((len(todo) - 1, place))
    del known
    for (i, _), row in zip(resume, manifest.read_videos(parts, [place for _, place in resume])):
        todo[i] = row
    counts = Counter(videos=len(paths), todo=len(todo), resumed=sum("sha256" in t for t in todo),
                     uncommitted_removed=removed)
    if len(todo) < len(paths) or counts["resumed"]:  # a re-run: say what is left before the bar starts
        print(f"reelforge build: {len(paths) - len(todo)} of {len(paths)} inputs already done; "
              f"{len(todo)} to do ({counts['resumed']} resumed where their clips stopped)")
    # small inputs go several to a task, with one work shard series (curate/video_group.py)
    task = StageSpec(VideoGroupTask, (str(manifest.work), stage_specs(cfg.curate, "video"),
                                      stage_specs(cfg.curate, "clip"), cfg.shards))
    unsaved, last_save, returned = list(skipped_inputs), time.time(), set()
    bar = progress.bar(total=len(todo), desc="videos", unit="video")
    resources = VideoGroupTask.resources(*task.args)
    groups = group_items(iter(todo), cfg.group, count=len(todo), slots=task_slots(resources))
    tasks = run_tasks(groups, task, resources)
    try:
        for group in tasks:
            stats = group.pop(STATS, None) or {}
            counts.update({f"clips_{k}": v for k, v in stats.items() if k != "seconds"})
            counts["tasks"] += 1
            for row in group_video_rows(group):
                row.pop(STATS, None)
                counts[row.get("status") or "ok"] += 1
                returned.add(row["path"])
                unsaved.append(row)
                bar.update(1)
            bar.set_postfix(clips=counts["clips_written"], refresh=False)
            if time.time() - last_save > cfg.shards.max_open_seconds:  # a kill loses at most this much probing
                _save_videos(manifest, unsaved, counts)
                unsaved, last_save = [], time.time()
    except BaseException:
        tasks.close()  # every task still running is killed and waited for
        try:  # and what they left half-written goes (resume redoes exactly that)
            manifest.recover()
        except OSError:
            pass  # a read-only output: the next build's recover does it
        raise
    bar.close()
    # a writer that died (and was retried) leaves its open .tmp, or a tar renamed without its part
    counts["uncommitted_removed"] += manifest.recover()
    unsaved += missing_rows([t for t in todo if t["path"] not in returned], returned, "path", "video task")
    _save_videos(manifest, unsaved, counts)
    return dict(counts)


def _save_videos(manifest: Manifest, rows: list[dict], counts: Counter) -> None:
    """Save video rows; an output that cannot take them stops the build in one line (as a shard would)."""
    try:
        manifest.save_videos(rows)
    except OSError as exc:
        raise ShardWriteError(exc.filename or manifest.videos_dir, exc, counts["clips_shards"],
                              counts["clips_written"]) from exc


def finish(out: Path, cfg: BuildConfig, manifest: Manifest, videos: Videos, check=lambda: None) -> dict:
    """Decide, publish and write every table from one decision; returns the summary (not yet written).
    Streamed over the manifest's parts (``curate/finish.py``; the video rows too, ``Videos``) and the
    shards (the index): the driver's memory does not grow with the clips, only the near-duplicate
    search's signatures do (and a few hundred bytes a video: its path, where its row is).

    ``check`` (the output lock's ``check``) runs before each step that replaces what readers see (the
    side tables, the publish, videos.parquet, the index): a build whose lease on object storage was lost
    stops there, before it overwrites another build's output, not at its next renewal."""
    from reelforge.shards.index import build_index

    totals, published = decide_and_publish(out, cfg, manifest, videos, check)
    check()
    counts = write_videos(storage.join(out, "videos.parquet"), videos, totals)
    check()
    if published.shards:
        build_index(out)
    else:  # nothing kept: no stale index may keep serving the previous set
        storage.remove(storage.join(out, INDEX_FILE))

    work_tars = {n: b for n, b in storage.file_sizes(manifest.work_shards).items() if n.endswith(".tar")}
    return {
        "inputs": counts.inputs,
        "videos_ok": counts.ok,
        "videos_filtered": counts.filtered,
        "videos_duplicate": counts.duplicate,
        "videos_failed": counts.failed,
        "failed_by_reason": dict(counts.failed_by_reason),
        "clips": totals.clips,
        "clips_ok": totals.ok,
        "funnel": totals.funnel,
        "skipped_stages": skipped(cfg.curate),
        "shards": len(published.shards),
        "shard_bytes": published.bytes,
        "publish": {"seconds": published.seconds, "bytes": published.bytes, "unchanged": published.skipped},
        "work_shards": len(work_tars),
        "work_shard_bytes": sum(work_tars.values()),
        "source_seconds": round(counts.source_seconds, 3),
        "cpu_s_per_clip": cpu_per_clip(counts.cpu, totals.clips, totals.cpu),
    }


def cpu_per_clip(video_cpu: dict[str, float], clips: int, clip_cpu: dict[str, float]) -> dict[str, float]:
    """Process CPU seconds per planned clip, by stage (``cpu_s_<stage>`` of each row: ``curate/stage.py``);
    ``video_cpu``: the video rows' ``cpu_s_<stage>`` summed, spread over the ``clips`` of the whole build;
    ``clip_cpu``: the clip rows' summed. Work reused from an earlier run counts with the seconds it took then."""
    n = max(clips, 1)
    totals = {k: video_cpu[k] for k in sorted(video_cpu)}
    totals.update({k: clip_cpu[k] for k in sorted(clip_cpu)})
    return {k[len(CPU_PREFIX):]: round(v / n, 4) for k, v in totals.items()}


def write_outputs(out: Path, cfg: BuildConfig, summary: dict) -> None:
    """The resolved config (it describes the data now on disk), the summary, and the report."""
    with storage.staged_write(storage.join(out, "config.yaml")) as tmp:
        dump_config(cfg, tmp)
    storage.write_bytes_atomic(storage.join(out, "summary.json"), json.dumps(summary, indent=2).encode())
    print_summary(summary)
    if cfg.report:  # a local dir or object storage (the report reads and writes through reelforge.storage)
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
