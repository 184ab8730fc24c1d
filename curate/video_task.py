"""One video's whole build, as one task on a worker: probe → scene split → plan → transcode and score its
clips → write and commit its own work shards and their manifest parts. Only the small video row goes
back to the driver; no clip row and no media byte crosses to it.

Why one task per video: the source is opened (fetched, for a remote one: ``storage.local_source``) once
for all its stages and clips; clips start while other videos are still being split; shard bytes go from
the worker that made them straight to the output, in parallel across workers; and the driver holds only
what is in flight, however many clips the build has.

The stages are the stage list's classes, unchanged (``curate/stage_list.py``), run in this process by
``curate.runner.StageChain`` with the same per-row error policy as on Ray Data. Each worker process
builds the task once (``curate.runner.run_tasks``), so model stages load once per worker.

Commits follow the manifest's contract (``curate/manifest.py``): a work tar is renamed into place, then
its part file (the rows of that tar, plus clips dropped or failed since the last commit) is written, at
least every ``shards.max_open_seconds``; the video's ``complete.json`` is written last. A task killed
anywhere (its worker dies, the build is stopped) leaves committed parts that the next attempt skips and
at most an uncommitted ``.tmp`` or an unrecorded tar, which the next build deletes.

Isolation (a worker that died in every normal attempt, e.g. a decoder segfault on one clip): the task
is re-run with ``isolate=True``: one clip at a time, each committed alone, and before each clip its id
is written to ``suspect-<attempt>.json``. The next attempt records a suspect clip that never committed
as failed ("worker died on this clip") and goes on past it, so only the clip that kills its worker is
lost, as in the Ray Data runner.
"""
from __future__ import annotations

import json
import time
import uuid

from reelforge import storage
from reelforge.curate import malloc
from reelforge.curate.manifest import BULK_COLUMNS, EMBEDDING_COLUMN, ContentWork, clip_id_for, write_json_atomic
from reelforge.curate.runner import ERROR, StageChain, StageError, StageSpec
from reelforge.curate.stage import Resources, rows_to_batch
from reelforge.shards.spec import FORMAT_ID
from reelforge.shards.writer import ShardWriteError, ShardWriter, ShardWriterConfig

STATS = "_rf_task"   # the task's counts on the returned row; the driver pops it before saving the row

# probe fields copied onto each clip row (prefixed src_ where the clip has its own value)
_VIDEO_TO_CLIP = {"path": "video_path", "sha256": "video_sha256", "width": "src_width", "height": "src_height",
                  "fps": "src_fps", "rotation": "rotation", "sar": "sar", "codec": "src_codec",
                  "bit_rate": "src_bit_rate"}  # near-duplicates: the copy with the highest bitrate is kept


def spans_of(video: dict) -> list[dict]:
    """A video row's planned clip spans: a list, or JSON text (rows that crossed Ray or a parquet file;
    text written by an earlier version may be encoded twice)."""
    spans = video.get("clip_spans") or []
    while isinstance(spans, str):
        spans = json.loads(spans) if spans else []
    return spans


def sidecar_caption_for_clips(video: dict, spans: list[dict]) -> str:
    """The input's sidecar caption where it describes each clip: only a video with one shot that makes
    clips (its clips are that shot, or even pieces of it; a fade-in's few black frames plan no clip).
    A sidecar describes the whole file ("a 5-second video ... in 3 shots"); given to each clip of a
    multi-shot video it would be wrong training text, so those clips get none (the recaptioner writes
    theirs) and the text stays on the video's row (``sidecar_caption``)."""
    shot, shots_with_clips = 0, set()
    for i, span in enumerate(spans):
        if i and span.get("cut_before") in ("cut", "transition"):
            shot += 1
        if span.get("status", "ok") == "ok":
            shots_with_clips.add(shot)
    return (video.get("sidecar_caption") or "") if len(shots_with_clips) <= 1 else ""


def plan_clip_rows(video: dict) -> list[dict]:
    """Clip rows (work items and dropped spans) for one scene-split video row."""
    rows = []
    spans = spans_of(video)
    caption = sidecar_caption_for_clips(video, spans)
    for i, span in enumerate(spans):
        span = dict(span)
        row = {dst: video.get(src) for src, dst in _VIDEO_TO_CLIP.items()}
        row.update(clip_id=clip_id_for(video["sha256"], span["start_frame"], span["end_frame"]), clip_index=i,
                   caption=caption, caption_source="sidecar" if caption else "")
        row.update(span)
        # the transcoder matches decoded frames by pts: first frame's pts, last frame's pts
        row["start_pts"] = span["start_s"]
        row["end_pts"] = span["end_s"] - 1.0 / float(video.get("fps") or 25.0)
        row["status"] = span.get("status", "ok")
        row["reason"] = span.get("reason", "")
        rows.append(row)
    return rows


def sample_members(row: dict) -> dict[str, bytes] | None:
    """A clip row's work-shard members (mp4, json, and txt when captioned); None for a row with no media."""
    if row.get("status") == "failed" or not row.get("mp4"):
        return None
    members = {"mp4": bytes(row["mp4"]), "json": sample_json(row)}
    if row.get("caption"):
        members["txt"] = row["caption"].encode("utf-8")
    return members


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


class VideoTask:
    """``task(video_row, isolate) -> video_row``; see the module docstring.

    ``video_specs``/``clip_specs``: the runnable stages of each phase in the stage list's order;
    ``work_dir``: the build's ``_work``; ``shards``: the work shards' size and commit clock.
    """

    name = "video"

    def __init__(self, work_dir: str, video_specs: list[StageSpec], clip_specs: list[StageSpec],
                 shards: ShardWriterConfig, policy: str = "record"):
        self.work_dir = storage.as_path_or_url(work_dir)   # a local dir or a URL (s3://b/ds/_work)
        # a worker runs this task for video after video: frame buffers freed by one decode pass must go
        # back to the OS, not stay in glibc's heaps (the task's memory grew with input length: malloc.py)
        malloc.bound_heap()
        self.shards = shards
        # the video stages up to the one that names the content (probe: sha256), then the rest (the split):
        # an exact copy of content already split reuses that split instead of running the rest
        n = next((i + 1 for i, s in enumerate(video_specs) if "sha256" in s.cls.outputs), 0)
        self.identify = StageChain(video_specs[:n], policy)
        self.split = StageChain(video_specs[n:], policy)
        self.split_outputs = [c for s in video_specs[n:] for c in s.cls.outputs]
        self.clips = StageChain(clip_specs, policy, drop=("frames", "frame_times"))
        # a clip batch never waits for more rows than the cheapest stage asks for (model stages batch
        # across clips of one video only: batching for a GPU is the Ray Data runner's job)
        self.batch = min([s.cls.resources(*s.args).batch_size for s in clip_specs] or [1])

    @classmethod
    def resources(cls, work_dir, video_specs: list[StageSpec], clip_specs: list[StageSpec], *_) -> Resources:
        """One CPU per task (the decoders' threads overlap other tasks' work; Ray's CPUs are a scheduling
        unit), and a GPU when any stage of the chain wants one."""
        asks = [s.cls.resources(*s.args) for s in video_specs + clip_specs]
        # a stage's `num_gpus: auto` stays auto here: the runner decides it from the cluster (Resources.on_cluster)
        auto = [r for r in asks if r.auto_gpus]
        return Resources(num_cpus=1.0, num_gpus=max([r.num_gpus for r in asks] or [0.0]), batch_size=1,
                         auto_gpus=bool(auto), auto_share=max([r.auto_share for r in auto] or [0.0]))

    def __call__(self, item: dict, isolate: bool = False) -> dict:
        row = dict(item)
        t0 = time.time()
        stats = {"clips": 0, "written": 0, "bytes": 0, "shards": 0}
        with storage.local_source(row["path"]):  # a remote source is fetched once for every stage and clip
            if not row.get("sha256") or "clip_spans" not in row:  # not probed and split in an earlier run
                row = self._one(self.identify, row)
                prior = self._content(row).complete_row() if row.get("status") == "ok" else None
                if prior is not None:  # the same bytes were split (and their clips made) under another name
                    row.update({k: prior.get(k) for k in self.split_outputs})
                else:
                    row = self._one(self.split, row)
                    malloc.release()  # the shot detector's thumbnails and decoder pools are gone
            row["clip_spans"] = spans_of(row)  # one type in the column: parquet then stores it as JSON once
            if row.get("status") == "ok":
                work = self._content(row)
                try:
                    if work.complete_row() is None:
                        self._clips(row, work, isolate, stats)
                        work.mark_complete({k: v for k, v in row.items() if k != "path"})
                except ShardWriteError:
                    raise
                except OSError as exc:
                    # the stages turn their own (input) errors into rows: what escapes here is the output
                    # (a full disk, a read-only mount, a refused upload), which stops the build in one line
                    raise ShardWriteError(exc.filename or work.dir, exc, 0, stats["written"]) from exc
        stats["seconds"] = round(time.time() - t0, 3)
        row[STATS] = stats
        return row

    def _content(self, row: dict) -> ContentWork:
        return ContentWork(self.work_dir, row["sha256"])

    def _one(self, chain: StageChain, row: dict) -> dict:
        (out,) = _checked(chain.run(rows_to_batch([row])))
        return out

    def _clips(self, video: dict, work: ContentWork, isolate: bool, stats: dict) -> None:
        done = work.done_ids()
        token = uuid.uuid4().hex[:8]   # this attempt's own shard and part names
        planned = [r for r in plan_clip_rows(video) if r["clip_id"] not in done]
        stats["clips"] = len(planned)
        todo = [r for r in planned if r["status"] == "ok"]
        # planned but dropped (e.g. shorter than min_seconds): recorded with the next commit
        pending = [dict(r, work_shard=None) for r in planned if r["status"] != "ok"]
        suspect = storage.join(work.dir, f"suspect-{token}.json")
        if isolate:
            pending += self._killers(work, todo)
            killed = {r["clip_id"] for r in pending}
            todo = [r for r in todo if r["clip_id"] not in killed]
        last_commit, tails = time.time(), 0

        def commit(name: str) -> None:
            nonlocal pending, last_commit
            work.commit_part(name, pending)
            pending, last_commit = [], time.time()

        def commit_tail() -> None:
            nonlocal tails
            commit(f"tail-{token}-{tails:04d}")
            tails += 1

        writer = ShardWriter(work.shards, ShardWriterConfig(
            target_bytes=self.shards.target_bytes, prefix=work.shard_prefix(token),
            max_open_seconds=1e-9 if isolate else self.shards.max_open_seconds),
            on_commit=lambda shard: commit(shard.name), known_keys=done)
        step = 1 if isolate else self.batch
        try:
            for i in range(0, len(todo), step):
                batch = todo[i:i + step]
                if isolate:
                    write_json_atomic({"clip_id": batch[0]["clip_id"]}, suspect)
                for row in _checked(self.clips.run(rows_to_batch(batch))):
                    members = sample_members(row)
                    row["work_shard"] = writer.current_name() if members else None
                    row["mp4_bytes"] = len(members["mp4"]) if members else 0
                    # the row joins `pending` before the write: a write that fills the shard commits it
                    # at once, and the shard's part file must already hold this row
                    pending.append({k: v for k, v in row.items() if k not in BULK_COLUMNS})
                    if members:
                        writer.write(row["clip_id"], members)
                        stats["written"] += 1
                        stats["bytes"] += row["mp4_bytes"]
                    elif isolate or time.time() - last_commit > self.shards.max_open_seconds:
                        # rows without media (failed clips) are committed on time too
                        if writer.flush() is None:
                            commit_tail()
                # this batch's decoders, encoders, frames and mp4 bytes are freed: give their pages back
                malloc.release()
            writer.close()
            stats["shards"] = len(writer.committed)
        except BaseException:
            writer.abort()  # the open shard's rows were never committed: redone by the next attempt
            raise
        if pending:  # dropped/failed clips after the last shard
            commit_tail()
        if isolate:
            for p in storage.glob(storage.join(work.dir, "suspect-*.json")):
                storage.remove(p)

    def _killers(self, work: ContentWork, todo: list[dict]) -> list[dict]:
        """Clips an earlier isolated attempt started but never committed: each killed its worker."""
        named = set()
        for p in storage.glob(storage.join(work.dir, "suspect-*.json")):
            try:
                named.add(json.loads(storage.read_bytes(p))["clip_id"])
            except (OSError, ValueError, KeyError):
                continue
        return [dict(r, work_shard=None, status="failed", reason=(
            f"transcode/scoring: worker died on this clip (a native crash such as a decoder segfault, or out "
            f"of memory); the video's other clips were made one at a time")) for r in todo if r["clip_id"] in named]


def _checked(batch: dict) -> list[dict]:
    """The rows of ``batch``; a row a stage marked with a traceback under the ``reraise`` policy stops
    the task (and the build) with it."""
    n = len(next(iter(batch.values()), []))
    rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
    for r in rows:
        if r.get(ERROR):
            raise StageError(r[ERROR])
    return rows
