"""Several small videos as one task: fewer, larger tasks and work shards for a build of tiny videos.

One Ray task and one work tar per video cost the same whatever the video's size: a scheduling round
trip, a worker call, a file (10,000 tiny videos made 10,000 tasks and 10,000 work tars of ~33 KB, and
the publish then opens each one). So the driver packs consecutive small inputs into a group
(:func:`group_items`, by file size: no probing on the driver) and :class:`VideoGroupTask` runs them in
sequence with ONE shard writer: their clips share a work shard series, and a large video still runs
alone, exactly as :class:`curate.video_task.VideoTask` runs it.

Completion stays per video, with the manifest's contract (``curate/manifest.py``): a shared work tar's
commit writes one part per content it holds (``_work/clips/<S>/<tar>.parquet``, rows of that content
only), and a video's ``complete.json`` is written once its last rows are committed. A group killed
anywhere resumes like a video task: finished videos are skipped, the others redo their uncommitted clips
(a tar killed between two of its contents' parts keeps the committed content's clips; the other's
samples in it are left unused and redone into a new tar: never twice in the dataset).

Isolation: a group whose worker died in every normal attempt is re-run by the runner with
``isolate=True``; then each video runs alone through ``VideoTask`` (its own writer, one clip per commit,
``suspect-*.json``), so only the clip that kills its worker is lost, as without groups.
"""
from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from typing import Iterable, Iterator

from reelforge import storage
from reelforge.curate import malloc
from reelforge.curate.manifest import BULK_COLUMNS, CONTENT_KEY_LEN, ContentWork
from reelforge.curate.runner import StageError
from reelforge.curate.stage import DATA_ERRORS, Resources, rows_to_batch
from reelforge.curate.video_task import STATS, VideoTask, _checked, plan_clip_rows, sample_members, spans_of
from reelforge.shards.writer import ShardWriteError, ShardWriter, ShardWriterConfig

GROUP = "_rf_group"   # a group item's (and its returned row's) video rows


@dataclass
class GroupConfig:
    # Why: each task and each work tar has a fixed cost (a scheduling round trip, a file, an open in
    # the publish) that dwarfs the work of a video of a few seconds. Consecutive inputs are packed into
    # one task until either bound is reached; an input of max_bytes or more runs alone, as every input
    # did before (max_videos: 1 turns grouping off).
    max_videos: int = 32
    max_bytes: int = 64 << 20   # source bytes per task (file size: known without probing)

    def __post_init__(self):
        if self.max_videos < 1 or self.max_bytes < 1:
            raise ValueError("build.group: max_videos and max_bytes must be >= 1")


def _size(path: str) -> int:
    """Source bytes (0 when it cannot be read: the task will say why)."""
    try:
        return os.stat(storage.local_path(path)).st_size if not storage.is_remote(path) else storage.size(path)
    except (OSError, ValueError):
        return 0


def group_items(todo: Iterable[dict], cfg: GroupConfig, count: int | None = None, slots: int = 1
                ) -> Iterator[dict]:
    """``{"path": first path, GROUP: [video rows]}`` items, packed in order, pulled lazily (the runner asks
    for the next one only when a slot frees up, so a remote input's size is read then).

    ``count`` inputs on a cluster that runs ``slots`` tasks at once: a group holds at most
    ``ceil(count / slots)`` videos, so grouping never leaves a slot idle (six videos on three one-CPU
    nodes stay six tasks; grouping pays where the videos far outnumber the slots)."""
    most = cfg.max_videos
    if count is not None:
        most = max(1, min(most, -(-count // max(1, slots))))
    group: list[dict] = []
    total = 0
    for row in todo:
        size = _size(row["path"]) if most > 1 else cfg.max_bytes
        if group and (len(group) >= most or total + size > cfg.max_bytes):
            yield {"path": group[0]["path"], GROUP: group}
            group, total = [], 0
        group.append(row)
        total += size
    if group:
        yield {"path": group[0]["path"], GROUP: group}


def video_rows(row: dict) -> list[dict]:
    """The video rows of what a group task returned; a group that failed as a whole (its worker died in
    every attempt, isolated ones included) gives each of its videos that failure."""
    if GROUP not in row:
        return [row]
    if row.get("status") == "failed" and row.get("reason"):
        return [dict(v, status="failed", reason=row["reason"]) for v in row[GROUP]]
    return list(row[GROUP])


class VideoGroupTask:
    """``task(group_item, isolate) -> {"path", GROUP: video rows, STATS}``; see the module docstring."""

    name = "video"

    def __init__(self, work_dir: str, video_specs, clip_specs, shards: ShardWriterConfig, policy: str = "record"):
        self.video = VideoTask(work_dir, video_specs, clip_specs, shards, policy)
        self.work_dir, self.shards, self.policy = self.video.work_dir, shards, policy

    @classmethod
    def resources(cls, *args) -> Resources:
        return VideoTask.resources(*args)

    def __call__(self, item: dict, isolate: bool = False) -> dict:
        videos = item[GROUP]
        if isolate or len(videos) == 1:
            rows = [self._guarded(lambda v=v: self.video(v, isolate), v) for v in videos]
        else:
            rows = self._shared(videos)
        stats: dict = {}
        for r in rows:
            for k, v in (r.pop(STATS, None) or {}).items():
                stats[k] = stats.get(k, 0) + v
        return {"path": item["path"], GROUP: rows, STATS: stats}

    def _guarded(self, run, video: dict) -> dict:
        """One video's row; an exception of that video alone is its failed row (the runner's policy)."""
        try:
            return run()
        except (ShardWriteError, StageError):
            raise
        except Exception as exc:
            if self.policy == "reraise" and not isinstance(exc, DATA_ERRORS):
                raise
            return dict(video, status="failed", reason=f"video: {type(exc).__name__}: {exc}"[:500])

    def _shared(self, videos: list[dict]) -> list[dict]:
        token = uuid.uuid4().hex[:8]
        key = hashlib.sha256("\0".join(v["path"] for v in videos).encode()).hexdigest()[:CONTENT_KEY_LEN]
        pending: dict[str, tuple[ContentWork, list[dict]]] = {}   # content key -> rows not committed yet
        waiting: list[tuple[ContentWork, dict]] = []   # finished videos: complete once their rows are
        state = {"last": time.time(), "tails": 0}

        def commit(name: str | None) -> None:
            for work, rows in pending.values():
                if rows:
                    work.commit_part(name or f"tail-{token}-{state['tails']:04d}", rows)
            if name is None:
                state["tails"] += 1
            pending.clear()
            for work, row in waiting:
                work.mark_complete({k: v for k, v in row.items() if k not in ("path", STATS)})
            waiting.clear()
            state["last"] = time.time()

        writer = ShardWriter(storage.join(self.work_dir, "shards"), ShardWriterConfig(
            target_bytes=self.shards.target_bytes, prefix=f"work-g{key}-{token}",
            max_open_seconds=self.shards.max_open_seconds), on_commit=lambda shard: commit(shard.name))
        seen: dict[str, dict] = {}   # content key -> the row of the first video of it in this group
        out = []
        try:
            for v in videos:
                row = self._guarded(lambda v=v: self._one(v, writer, pending, waiting, seen, commit, state), v)
                out.append(row)
            writer.close()
        except BaseException:
            writer.abort()  # the open shard's rows were never committed: redone by the next attempt
            raise
        if pending or waiting:  # rows without media after the last shard, and videos waiting on them
            commit(None)
        if out:
            out[-1].setdefault(STATS, {})["shards"] = len(writer.committed)
        return out

    def _one(self, video: dict, writer: ShardWriter, pending, waiting, seen, commit, state) -> dict:
        t0 = time.time()
        stats = {"clips": 0, "written": 0, "bytes": 0, "shards": 0}
        vt = self.video
        with storage.local_source(video["path"]):  # fetched once for every stage and clip of the video
            row = dict(video)
            if not row.get("sha256") or "clip_spans" not in row:
                row = vt._one(vt.identify, row)
                ckey = (row.get("sha256") or "")[:CONTENT_KEY_LEN]
                prior = seen.get(ckey) if row.get("status") == "ok" else None
                if prior is None and row.get("status") == "ok":
                    prior = vt._content(row).complete_row()
                if prior is not None:  # the same bytes were split under another name (here or earlier)
                    row.update({k: prior.get(k) for k in vt.split_outputs})
                else:
                    row = vt._one(vt.split, row)
                    malloc.release()  # the shot detector's thumbnails and decoder pools are gone
            row["clip_spans"] = spans_of(row)
            if row.get("status") == "ok":
                work = vt._content(row)
                if work.key not in seen and work.complete_row() is None:
                    seen[work.key] = row
                    try:
                        self._clips(row, work, writer, pending, stats, state, commit)
                    except ShardWriteError:
                        raise
                    except OSError as exc:  # the output's, not the input's: stops the build in one line
                        raise ShardWriteError(exc.filename or work.dir, exc, 0, stats["written"]) from exc
                    if pending.get(work.key, (None, []))[1]:
                        waiting.append((work, row))  # complete once the commit of its last rows lands
                    else:  # every row of it is committed already
                        work.mark_complete({k: v for k, v in row.items() if k != "path"})
                seen.setdefault(work.key, row)
        stats["seconds"] = round(time.time() - t0, 3)
        row[STATS] = stats
        return row

    def _clips(self, video: dict, work: ContentWork, writer: ShardWriter, pending, stats, state, commit) -> None:
        vt = self.video
        done = work.done_ids()
        planned = [r for r in plan_clip_rows(video) if r["clip_id"] not in done]
        stats["clips"] = len(planned)
        rows = pending.setdefault(work.key, (work, []))[1]
        rows.extend(dict(r, work_shard=None) for r in planned if r["status"] != "ok")
        todo = [r for r in planned if r["status"] == "ok"]
        for i in range(0, len(todo), vt.batch):
            for row in _checked(vt.clips.run(rows_to_batch(todo[i:i + vt.batch]))):
                members = sample_members(row)
                row["work_shard"] = writer.current_name() if members else None
                row["mp4_bytes"] = len(members["mp4"]) if members else 0
                # joins the content's pending rows before the write: a write that fills the shard commits
                # it at once, and that shard's part must already hold this row
                pending.setdefault(work.key, (work, []))[1].append(
                    {k: v for k, v in row.items() if k not in BULK_COLUMNS})
                if members:
                    writer.write(row["clip_id"], members)
                    stats["written"] += 1
                    stats["bytes"] += row["mp4_bytes"]
                elif time.time() - state["last"] > self.shards.max_open_seconds:
                    if writer.flush() is None:  # rows without media are committed on time too
                        commit(None)
            # this batch's decoders, encoders, frames and mp4 bytes are freed: give their pages back (a group
            # runs up to max_videos videos in one worker, so what one batch leaves in glibc's heaps adds up)
            malloc.release()
