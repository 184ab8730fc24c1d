"""The trainer's reader: fixed-shape bucket batches, equal batch counts per rank, resumable mid-epoch.

``VideoShardDataset`` is a torch ``IterableDataset``. It reads the index (not the tar headers), builds
the epoch plan (shards/plan.py) for its rank, and serves batch *i* of that plan from DataLoader worker
*i mod num_workers*; each sample is one ``pread`` of its members (offsets from the index), so a rank
never streams shards it does not need and a resumed run starts exactly at the next batch. The shards stay
plain WebDataset tars (``wds.WebDataset`` reads them); seekable storage (local disk, a POSIX mount) is
assumed, which is what makes the exact plan cheap.

Use ``ShardLoader`` (a DataLoader) so the position of consumed batches is tracked in the main process:

    ds = VideoShardDataset(dir, ReaderConfig(), rank, world_size, seed)
    loader = ShardLoader(ds, num_workers=4)
    for batch in loader:            # {"video": (B, T, C, H, W) uint8, "caption", "clip_id", "bucket", ...}
        ...
    ckpt["data"] = loader.state_dict()   # later: loader.load_state_dict(ckpt["data"])

The next ``iter(loader)`` after a finished epoch starts the next epoch (or call ``set_epoch``).
"""
from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from reelforge.shards.buckets import BucketTable
from reelforge.shards.captions import store_captions
from reelforge.shards.index import assign_buckets, index_buckets, resolve_index, select
from reelforge.shards.plan import PlannedBatch, plan_epoch
from reelforge.shards.spec import CAPTIONS_FIELD, KIND_IMAGE, KIND_VIDEO, SHARDS_SUBDIR
from reelforge.shards.transform import clip_rng, collate_clips, image_to_bucket, pick_caption, video_to_bucket

log = logging.getLogger(__name__)


@dataclass
class ReaderConfig:
    buckets: BucketTable | None = None     # None: the table the index was built with
    where: str | None = None               # extra index filter, e.g. "aesthetic >= 5"
    kinds: list[str] = field(default_factory=lambda: [KIND_VIDEO, KIND_IMAGE])  # both: joint image-video
    caption_version: str | None = None     # None: <key>.txt; else captions[version] from the JSON member
    caption_fallback: bool = True          # version missing -> <key>.txt (else the empty string)
    remainder: Literal["pad", "drop"] = "pad"
    dtype: Literal["uint8", "float"] = "uint8"   # float: scaled to [-1, 1]
    random_offset: bool = True             # temporal crop start drawn per (seed, epoch, clip); else centred
    decode_threads: int = 1                # decord threads per worker (workers already give parallelism)
    max_open_shards: int = 64              # file handles cached per worker

    def __post_init__(self):
        bad = [k for k in self.kinds if k not in (KIND_VIDEO, KIND_IMAGE)]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of ['video', 'image'], got {self.kinds}")
        if self.remainder not in ("pad", "drop"):
            raise ValueError(f"remainder must be 'pad' or 'drop', got {self.remainder!r}")
        if self.dtype not in ("uint8", "float"):
            raise ValueError(f"dtype must be 'uint8' or 'float', got {self.dtype!r}")
        if self.decode_threads < 0 or self.max_open_shards < 1:
            raise ValueError("decode_threads must be >= 0 and max_open_shards >= 1")


_COLUMNS = ("clip_id", "shard", "kind", "bucket", "width", "height", "fps", "mp4_offset", "mp4_size",
            "jpg_offset", "jpg_size", "txt_offset", "txt_size", "json_offset", "json_size", "caption_versions")


class VideoShardDataset(IterableDataset):
    def __init__(self, index: str | Path, cfg: ReaderConfig | None = None, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.cfg = cfg or ReaderConfig()
        self.index_path = resolve_index(index)
        self.shard_dir = self.index_path.parent / SHARDS_SUBDIR
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.buckets = self.cfg.buckets or index_buckets(self.index_path)
        table = select(self.index_path, self.cfg.where)  # status == "ok" only
        table = table.filter(pc.is_in(table["kind"], pa.array(self.cfg.kinds)))
        # the reader's own table decides the bucket, so a new table needs no re-index
        table = table.set_column(table.column_names.index("bucket"), "bucket", assign_buckets(table, self.buckets))
        self.unbucketed = table.filter(pc.is_null(table["bucket"])).num_rows
        table = table.filter(pc.is_valid(table["bucket"])).sort_by([("bucket", "ascending"), ("clip_id", "ascending"),
                                                                    ("shard", "ascending")])
        for c in _COLUMNS:
            if c not in table.column_names:
                table = table.append_column(c, pa.nulls(table.num_rows, pa.int64()))
        # kept as Arrow columns, not Python dicts: a million rows stay compact, and forked DataLoader
        # workers share the buffers instead of copying pages that Python refcounts would touch
        self.table = table.select(list(_COLUMNS)).combine_chunks()
        buckets = np.asarray(self.table["bucket"].to_pylist(), dtype=object)
        self._by_bucket = {b: np.flatnonzero(buckets == b).tolist() for b in sorted(set(buckets))}
        self.epoch, self.position = 0, 0
        self._plans: dict[int, list[PlannedBatch]] = {}
        self._files: OrderedDict[str, int] = OrderedDict()
        self.failed_samples = 0
        # the caption store (captions.parquet) serves the version when it has it; else the JSON member
        self._store_captions = store_captions(self.index_path.parent, self.cfg.caption_version)

    # --- plan and position -------------------------------------------------------------------------
    def plan(self, epoch: int | None = None) -> list[PlannedBatch]:
        """This rank's batches for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        if epoch not in self._plans:
            sizes = {b: self.buckets[b].batch_size for b in self._by_bucket}
            self._plans = {epoch: plan_epoch(self._by_bucket, sizes, self.seed, epoch, self.world_size,
                                             self.cfg.remainder)[self.rank]}
        return self._plans[epoch]

    def __len__(self) -> int:
        return len(self.plan())

    def set_epoch(self, epoch: int, position: int | None = None) -> None:
        """Go to ``epoch``. Calling it with the current epoch keeps the position (so a trainer that calls
        ``set_epoch(start_epoch)`` after ``load_state_dict`` still resumes mid-epoch); pass ``position``
        to force one."""
        if position is None:
            position = self.position if epoch == self.epoch else 0
        self.epoch, self.position = epoch, position

    def roll_epoch_if_done(self) -> None:
        if self.position >= len(self.plan()):
            self.set_epoch(self.epoch + 1, position=0)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "world_size": self.world_size,
                "rank": self.rank, "batches_per_epoch": len(self.plan())}

    def load_state_dict(self, state: dict) -> None:
        # a different seed or world size gives a different plan: the position would point elsewhere
        for key in ("seed", "world_size"):
            if state[key] != getattr(self, key):
                raise ValueError(f"reader state was saved with {key}={state[key]}, this reader has {getattr(self, key)}")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if len(self.plan()) != state["batches_per_epoch"]:
            raise ValueError(f"reader state has {state['batches_per_epoch']} batches per epoch, this index gives "
                             f"{len(self.plan())}: the index or the bucket table changed")

    def row(self, i: int) -> dict:
        """Row ``i`` of the reader's sample table (the numbers a ``PlannedBatch`` holds)."""
        return {c: self.table[c][i].as_py() for c in _COLUMNS}

    # --- iteration ------------------------------------------------------------------------------------
    def __iter__(self):
        self.roll_epoch_if_done()
        epoch, start, plan = self.epoch, self.position, self.plan()
        info = get_worker_info()
        n_workers, worker = (info.num_workers, info.id) if info else (1, 0)
        # remaining batches start, start+1, ... go round-robin to workers, matching the DataLoader's
        # in-order round-robin collection, so the loader yields them in plan order
        for i in range(start + worker, len(plan), n_workers):
            batch = self.load_batch(plan[i], epoch)
            batch["epoch"], batch["position"] = epoch, i
            if info is None:
                self.position = i + 1
            yield batch

    def load_batch(self, planned: PlannedBatch, epoch: int) -> dict:
        bucket = self.buckets[planned.bucket]
        videos, captions, ids, failed = [], [], [], []
        for row_id in planned.rows:
            row = self.row(row_id)
            try:
                clip, caption = self._load_media(row, bucket, epoch), self._caption(row)
                videos.append(clip), captions.append(caption), ids.append(row["clip_id"])
            except Exception as exc:  # one bad sample must not stop the rank (the others would hang)
                failed.append(row["clip_id"])
                log.warning("sample %s (%s) failed: %s: %s", row["clip_id"], row["shard"], type(exc).__name__, exc)
        self.failed_samples += len(failed)
        # failed slots hold copies of good samples; a batch is kept so every rank takes the same steps
        video, captions, ids = collate_clips(videos, captions, ids, len(planned.rows), bucket, self.cfg.dtype)
        # "failed": clip ids that could not be decoded (their slots hold copies of good samples)
        return {"video": video, "caption": captions, "clip_id": ids, "bucket": planned.bucket,
                "failed": failed}

    def _load_media(self, row: dict, bucket, epoch: int) -> np.ndarray:
        if row["kind"] == KIND_IMAGE:
            return image_to_bucket(self._read(row, "jpg"), bucket)
        rng = None
        if self.cfg.random_offset:
            rng = clip_rng(self.seed, epoch, row["clip_id"])
        return video_to_bucket(self._read(row, "mp4"), row["width"], row["height"], self.buckets.stride(row["fps"]),
                               bucket, rng, self.cfg.decode_threads)

    def _caption(self, row: dict) -> str:
        version, captions = self.cfg.caption_version, None
        if self._store_captions is not None:
            text = self._store_captions.get(row["clip_id"])
            captions = {version: text} if text is not None else {}
        elif version is not None and row["json_size"] and version in (row["caption_versions"] or "").split(","):
            captions = json.loads(self._read(row, "json")).get(CAPTIONS_FIELD)
        return pick_caption(version, self.cfg.caption_fallback, captions,
                            lambda: self._read(row, "txt").decode("utf-8") if row["txt_size"] is not None else None)

    def _read(self, row: dict, col: str) -> bytes:
        offset, size = row[f"{col}_offset"], row[f"{col}_size"]
        if offset is None:
            raise ValueError(f"sample {row['clip_id']} has no {col} member")
        fd = self._files.get(row["shard"])
        if fd is None:
            fd = os.open(self.shard_dir / row["shard"], os.O_RDONLY)
            self._files[row["shard"]] = fd
            if len(self._files) > self.cfg.max_open_shards:
                os.close(self._files.popitem(last=False)[1])
        else:
            self._files.move_to_end(row["shard"])
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise OSError(f"{row['shard']}: short read for {row['clip_id']}.{col} ({len(data)} of {size} bytes)")
        return data

    def __getstate__(self):  # file handles stay in the process that opened them
        state = self.__dict__.copy()
        state["_files"] = OrderedDict()
        return state

    def __del__(self):
        for fd in getattr(self, "_files", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass


class ShardLoader(DataLoader):
    """A DataLoader over a ``VideoShardDataset`` that records, in the main process, which batches the
    trainer has taken, so ``state_dict()`` is exact even with worker processes prefetching ahead."""

    def __init__(self, dataset: VideoShardDataset, num_workers: int = 0, **kwargs):
        if kwargs.get("persistent_workers"):
            raise ValueError("persistent_workers would keep a stale copy of the reader position; leave it off")
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kwargs)

    def __iter__(self):
        self.dataset.roll_epoch_if_done()  # before the workers copy the dataset
        for batch in super().__iter__():
            self.dataset.epoch, self.dataset.position = batch["epoch"], batch["position"] + 1
            yield batch

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)
