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
    for batch in loader:            # {"video": (B, T, C, H, W) uint8, "caption", "clip_id", "bucket", "fps", ...}
        ...
    ckpt["data"] = loader.state_dict()   # later: loader.load_state_dict(ckpt["data"])

The next ``iter(loader)`` after a finished epoch starts the next epoch (or call ``set_epoch``).
Selection, epoch position, captions and batch assembly are the loader core's (shards/loader.py), shared
with the streaming reader; member bytes come through shards/access.py. ``latents: true`` serves the
``latent`` tensors that ``reelforge encode`` stored instead of decoding video.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from torch.utils.data import IterableDataset, get_worker_info

from reelforge.shards.access import ShardFiles, open_member
from reelforge.shards.buckets import BucketTable
from reelforge.shards.captions import store_captions
from reelforge.shards.index import dataset_root, index_buckets, resolve_index
from reelforge.shards.loader import (LATENT_FPS, LATENT_STRIDE, EpochCursor, Sample, TrackedLoader,
                                     build_batch, choose_caption, select_samples)
from reelforge.shards.plan import PlannedBatch, plan_epoch
from reelforge.shards.spec import CAPTIONS_FIELD, KIND_IMAGE, KIND_VIDEO

log = logging.getLogger(__name__)


@dataclass
class ReaderConfig:
    buckets: BucketTable | None = None     # None: the table the index was built with
    where: str | None = None               # extra index filter, e.g. "aesthetic >= 5"
    kinds: list[str] = field(default_factory=lambda: [KIND_VIDEO, KIND_IMAGE])  # both: joint image-video
    caption_version: str | None = None     # None: <key>.txt; else the caption store's / JSON's version
    caption_fallback: bool = True          # version missing -> <key>.txt (else the empty string)
    remainder: Literal["pad", "drop"] = "pad"
    dtype: Literal["uint8", "float"] = "uint8"   # float: scaled to [-1, 1]
    random_offset: bool = True             # temporal crop start drawn per (seed, epoch, clip); else centred
    decode_threads: int = 1                # decord threads per worker (workers already give parallelism)
    max_open_shards: int = 64              # file handles cached per worker
    latents: bool = False                  # serve `latent` from <key>.latent.npy (reelforge encode), no decode
    latent_sample: bool = True             # stored (mean, std): draw per (seed, epoch, clip); else the mean

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
            "jpg_offset", "jpg_size", "txt_offset", "txt_size", "json_offset", "json_size", "latent_offset",
            "latent_size", "caption_versions", LATENT_STRIDE, LATENT_FPS)


class VideoShardDataset(EpochCursor, IterableDataset):
    def __init__(self, index: str | Path, cfg: ReaderConfig | None = None, rank: int = 0, world_size: int = 1,
                 seed: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.cfg = cfg or ReaderConfig()
        self.index_path = resolve_index(index)
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.buckets = self.cfg.buckets or index_buckets(self.index_path)
        table, self.unbucketed = select_samples(self.index_path, self.cfg.where, self.cfg.kinds, self.buckets,
                                                self.cfg.latents)
        table = table.sort_by([("bucket", "ascending"), ("clip_id", "ascending"), ("shard", "ascending")])
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
        # random access, not ShardFiles' sequential mode: the plan shuffles samples across tars, so a read-ahead
        # would fetch blocks no batch uses (on object storage: one GET per sample, its members together)
        self._files = ShardFiles(self.cfg.max_open_shards)
        self.failed_samples = 0
        # the caption store (captions.parquet) serves the version when it has it; else the JSON member
        self._store_captions = store_captions(dataset_root(self.index_path), self.cfg.caption_version)

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
        """The batch of one planned bucket batch (shards/loader.py ``build_batch``)."""
        samples = []
        for row_id in planned.rows:
            row = self.row(row_id)
            fetch = (lambda ext, row=row: self._read(row, ext))
            try:
                caption = self._caption(row)
            except Exception as exc:  # an unreadable caption fails the sample like unreadable media
                caption, fetch = "", _raiser(exc)
            samples.append(Sample(row["clip_id"], row["kind"], row["width"], row["height"], row["fps"], caption,
                                  fetch, row[LATENT_STRIDE], row[LATENT_FPS]))
        batch = build_batch(samples, planned.bucket, self.buckets, self.seed, epoch, self.cfg, self._on_error)
        self.failed_samples += len(batch["failed"])
        return batch

    def _on_error(self, sample: Sample, exc: Exception) -> None:
        log.warning("sample %s failed: %s: %s", sample.clip_id, type(exc).__name__, exc)

    def _caption(self, row: dict) -> str:
        version = self.cfg.caption_version

        def json_captions():
            if version is not None and row["json_size"] and version in (row["caption_versions"] or "").split(","):
                return json.loads(self._read(row, "json")).get(CAPTIONS_FIELD)
            return None
        return choose_caption(version, self.cfg.caption_fallback, self._store_captions, row["clip_id"], json_captions,
                              lambda: self._read(row, "txt").decode("utf-8") if row["txt_size"] is not None else None)

    def _read(self, row: dict, ext: str) -> bytes:
        try:
            return open_member(self.index_path, row, ext, self._files)
        except KeyError as exc:
            raise ValueError(str(exc).strip("'\"")) from None


def _raiser(exc: Exception):
    def fetch(ext: str) -> bytes:
        raise exc
    return fetch


class ShardLoader(TrackedLoader):
    """A DataLoader over a ``VideoShardDataset`` that records, in the main process, which batches the
    trainer has taken, so ``state_dict()`` is exact even with worker processes prefetching ahead."""

    def __iter__(self):
        self.dataset.roll_epoch_if_done()  # before the workers copy the dataset
        for batch in super().__iter__():
            self.dataset.epoch, self.dataset.position = batch["epoch"], batch["position"] + 1
            yield batch
