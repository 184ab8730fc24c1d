"""The streaming reader: the indexed reader's bucket batches, built as a WebDataset pipeline, for shards
on object storage or behind any URL (WebDataset's ``pipe:aws s3 cp s3://b/x.tar -``, ``https://``, local
paths; any other fsspec protocol such as ``s3://``), where the indexed reader's ``pread`` at stored
offsets is not available.

For one rank, DataLoader worker and epoch the pipeline is (``StreamDataset.pipeline``)

    shards      wds.ResampledShards seeded by (seed, rank, epoch) and the worker id    (resampled: true)
                or the shard list split by rank, then wds.split_by_worker              (resampled: false)
    samples     wds.tarfile_to_samples (its three steps, the URL opener falling back to fsspec)
    prepare     status filter (index, else the JSON member), bucket, caption; no decode
    shuffle     wds.shuffle with a buffer seeded by (seed, rank, epoch, worker)
    batches     bucket_batched: a buffer per bucket, a batch leaves when its bucket fills
    epoch       .with_epoch(this worker's share of batches_per_epoch)              (resampled only)

and a batch is decoded (transform.py: the indexed reader's decode, sampling, resize and crop) only after
it is formed, so a resumed run skips the batches it already consumed without decoding them.

Resampling plus ``with_epoch`` is the WebDataset maintainers' recipe for DDP: every rank yields exactly
``batches_per_epoch`` batches however uneven the shards are, so no rank waits on another at the end of an
epoch. The price: shards are drawn with replacement (uniformly per shard, so samples in small shards come
up more often), and an epoch is a number of batches, not a pass over the data. The stream is a function
of (shard list, seed, epoch, rank, number of workers): resume needs the same worker count mid-epoch.
Exact sample-level guarantees (every sample once per epoch, resume at any worker count) are the indexed
reader's job (reader.py).
"""
from __future__ import annotations

import json
import logging
import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import BinaryIO, Iterator, Literal
from urllib.parse import urlparse

import numpy as np
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info
from webdataset.tariterators import group_by_keys, tar_file_expander

from reelforge import storage
from reelforge.shards.buckets import BucketTable
from reelforge.shards.captions import store_captions
from reelforge.shards.index import dataset_root, index_buckets
from reelforge.shards.loader import (LATENT_BUCKET, LATENT_FPS, LATENT_STRIDE, EpochCursor, Sample, TrackedLoader,
                                     build_batch, choose_caption, select_samples)
from reelforge.shards.spec import (CAPTION_EXT, CAPTIONS_FIELD, IMAGE_EXT, INDEX_FILE, KIND_IMAGE, KIND_VIDEO,
                                   LATENT_EXT, META_EXT, SHARDS_SUBDIR, VIDEO_EXT)

log = logging.getLogger(__name__)

# Error policies, WebDataset's own handlers: "warn" (production) issues a Python warning and drops the
# member or sample (it sleeps 0.5 s per error so a broken shard cannot flood the log); "raise" for tests.
HANDLERS = {"warn": wds.warn_and_continue, "raise": wds.reraise_exception, "ignore": wds.ignore_and_continue}
# JSON ``status`` values that mean "train on it" when there is no index ("success": video2dataset/img2dataset).
GOOD_STATUS = ("ok", "success")


@dataclass
class StreamConfig:
    urls: list[str] = field(default_factory=list)  # shard URLs; brace patterns expand ("x-{000000..000099}.tar")
    dataset_dir: str | None = None         # a dataset dir or URL (s3://b/ds): DIR/shards/*.tar when urls is empty, DIR/index.parquet
    index: str | None = None               # index.parquet (a path or URL); default DIR's if present
    buckets: BucketTable | None = None     # None: the table the index was built with
    batches_per_epoch: int | None = None   # per rank; None: from samples_per_epoch, else one pass over the index
    samples_per_epoch: int | None = None   # per rank; converted with the index's mean batch size
    resampled: bool = True                 # False: one pass, split by rank and worker (validation)
    shuffle_buffer: int = 256              # samples, held with their media bytes (memory ~ buffer x clip size); 1 = off
    shuffle_initial: int = 100             # samples buffered before the first one leaves
    seed: int = 0
    handler: Literal["warn", "raise", "ignore"] = "warn"
    where: str | None = None               # index filter, e.g. "aesthetic >= 5" (needs the index)
    kinds: list[str] = field(default_factory=lambda: [KIND_VIDEO, KIND_IMAGE])  # both: joint image-video
    caption_version: str | None = None     # None: <key>.txt; else captions[version] from the JSON member
    caption_fallback: bool = True          # version missing -> <key>.txt (else the empty string)
    dtype: Literal["uint8", "float"] = "uint8"   # float: scaled to [-1, 1]
    random_offset: bool = True             # temporal crop start drawn per (seed, epoch, clip); else centred
    decode_threads: int = 1                # decord threads per worker
    latents: bool = False                  # serve `latent` from <key>.latent.npy (reelforge encode), no decode
    latent_sample: bool = True             # stored (mean, std): draw per (seed, epoch, clip); else the mean

    def __post_init__(self):
        if not self.urls and not self.dataset_dir:
            raise ValueError("give urls (shard URLs) or dataset_dir (a local dataset)")
        if self.batches_per_epoch is not None and self.samples_per_epoch is not None:
            raise ValueError("give batches_per_epoch or samples_per_epoch, not both")
        for key in ("batches_per_epoch", "samples_per_epoch"):
            if getattr(self, key) is not None and getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.shuffle_buffer < 1 or self.shuffle_initial < 1:
            raise ValueError(f"shuffle_buffer and shuffle_initial must be >= 1, got {self.shuffle_buffer}, "
                             f"{self.shuffle_initial}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.handler not in HANDLERS:
            raise ValueError(f"handler must be one of {sorted(HANDLERS)}, got {self.handler!r}")
        bad = [k for k in self.kinds if k not in (KIND_VIDEO, KIND_IMAGE)]
        if bad or not self.kinds:
            raise ValueError(f"kinds must be a non-empty subset of ['video', 'image'], got {self.kinds}")
        if self.dtype not in ("uint8", "float"):
            raise ValueError(f"dtype must be 'uint8' or 'float', got {self.dtype!r}")
        if self.decode_threads < 0:
            raise ValueError(f"decode_threads must be >= 0, got {self.decode_threads}")


def derive_seed(*parts: int) -> int:
    """A 63-bit seed from non-negative ints (not ``hash()`` of strings, which changes per process)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> np.uint64(1))


def shard_name(url: str) -> str:
    """The shard's file name in a URL or ``pipe:`` command: ``pipe:aws s3 cp s3://b/x-000001.tar -`` -> ``x-000001.tar``."""
    names = re.findall(r"[^/\s]+\.tar\b", url)
    return names[-1] if names else url.rsplit("/", 1)[-1]


def open_url(url: str) -> BinaryIO:
    """A binary stream over a shard: WebDataset's ``gopen`` for local paths and its schemes (``pipe:``,
    ``http(s)``, ``gs``, ``ais``, ``hf``), fsspec for every other protocol (``s3://``, ``az://``,
    ``memory://``; the protocol's fsspec package must be installed)."""
    scheme = urlparse(url).scheme
    if scheme in ("", "file") or scheme in wds.gopen_schemes:
        return wds.gopen(url)
    import fsspec  # only remote protocols need it
    return fsspec.open(url, "rb").open()


def open_shards(shards: Iterator[dict], handler) -> Iterator[dict]:
    """``{"url"}`` -> ``{"url", "stream"}``: ``wds.tariterators.url_opener`` with ``open_url``."""
    for shard in shards:
        try:
            yield {**shard, "stream": open_url(shard["url"])}
        except Exception as exn:
            exn.args = exn.args + (shard["url"],)
            if not handler(exn):
                break


def split_by_rank(src: Iterator, rank: int, world_size: int) -> Iterator:
    """``wds.split_by_node`` with the rank given explicitly (it reads torch.distributed or RANK/WORLD_SIZE)."""
    return islice(src, rank, None, world_size)


def _bucket_batched(samples: Iterator[dict], batch_sizes: dict[str, int], partial: bool = False):
    """Group samples by ``sample["bucket"]``; yield ``(bucket, [samples])`` as soon as a bucket holds its
    batch size, so every batch has one shape. ``partial``: at the end of a finite stream, flush the
    unfilled buckets as short batches (in bucket-name order)."""
    pending: dict[str, list[dict]] = {}
    for sample in samples:
        bucket = sample["bucket"]
        group = pending.setdefault(bucket, [])
        group.append(sample)
        if len(group) == batch_sizes[bucket]:
            del pending[bucket]
            yield bucket, group
    if partial:
        for bucket in sorted(pending):
            yield bucket, pending[bucket]


bucket_batched = wds.pipelinefilter(_bucket_batched)


class StreamDataset(EpochCursor, IterableDataset):
    """Bucket batches from a WebDataset stream, for one rank; ``StreamLoader`` is the DataLoader to use.

    Batches: ``{"video": (B, T, C, H, W) uint8 (or float), "caption": list[str], "clip_id": list[str],
    "bucket": str, "epoch": int, "position": int, "failed": list[str]}``, as the indexed reader's.
    """

    def __init__(self, cfg: StreamConfig, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.cfg, self.rank, self.world_size, self.seed = cfg, rank, world_size, cfg.seed
        self.handler = HANDLERS[cfg.handler]
        root = str(cfg.dataset_dir) if cfg.dataset_dir else None   # a local dir or a URL (s3://b/ds)
        urls = [u for pattern in cfg.urls for u in wds.shardlists.expand_urls(pattern)]
        if not urls:
            urls = storage.glob(storage.join(root, SHARDS_SUBDIR, "*.tar"))
        if not urls:
            raise FileNotFoundError(f"no shards under {storage.join(root, SHARDS_SUBDIR)}")
        index = cfg.index or (storage.join(root, INDEX_FILE) if root and storage.exists(storage.join(root, INDEX_FILE))
                              else None)
        if cfg.buckets is None and index is None:
            raise ValueError("without an index give the bucket table (buckets)")
        self.buckets = cfg.buckets or index_buckets(index)
        # (shard file name, key) -> (clip_id, kind, bucket, width, height, fps, latent stride, latent fps)
        self.rows: dict[tuple[str, str], tuple] | None = None
        if index is not None:
            self.rows = self._select(index)
            shards = {s for s, _ in self.rows}
            urls = [u for u in urls if shard_name(u) in shards]  # a rank never opens a shard with nothing to train
            if not urls:
                raise ValueError(f"no shard URL holds a sample the index {index} selects")
        elif cfg.where:
            raise ValueError("where filters the index: give index (or a dataset_dir that has one)")
        self.urls = urls
        # the caption store beside the index serves the version when it has it; else the JSON member
        self._store_captions = store_captions(dataset_root(index), cfg.caption_version) if index else None
        self.batch_sizes = {b.name: b.batch_size for b in self.buckets.buckets}
        self.batches_per_epoch = self._epoch_length() if cfg.resampled else None
        self.epoch, self.position = 0, 0
        self.num_workers = 0   # set by StreamLoader: the stream depends on it
        self.accepted = 0      # samples that passed `prepare` in this process (guards an empty stream)
        self.dropped: Counter = Counter()  # reason -> samples left out in this process

    def _select(self, index: str) -> dict[tuple[str, str], tuple]:
        table, _ = select_samples(index, self.cfg.where, self.cfg.kinds, self.buckets, self.cfg.latents)

        def col(name):
            return table[name].to_pylist() if name in table.column_names else [None] * table.num_rows
        rows = {}
        for shard, key, *row in zip(col("shard"), col("key"), col("clip_id"), col("kind"), col("bucket"), col("width"),
                                    col("height"), col("fps"), col(LATENT_STRIDE), col(LATENT_FPS)):
            rows[(shard, key)] = tuple(row)
        if not rows:
            raise ValueError(f"the index {index} selects no sample that fits a bucket")
        return rows

    def _epoch_length(self) -> int:
        if self.cfg.batches_per_epoch is not None:
            return self.cfg.batches_per_epoch
        if self.rows is None:
            raise ValueError("resampled streaming without an index needs batches_per_epoch: the number of "
                             "samples is unknown")
        counts = Counter(r[2] for r in self.rows.values())
        batches = sum(math.ceil(n / self.batch_sizes[b]) for b, n in counts.items())
        if self.cfg.samples_per_epoch is not None:
            return max(1, math.ceil(self.cfg.samples_per_epoch * batches / sum(counts.values())))
        return math.ceil(batches / self.world_size)  # one pass over the index, like the indexed reader's plan

    def __len__(self) -> int:
        if self.batches_per_epoch is None:
            raise TypeError("a single-pass stream has no fixed length")
        return self.batches_per_epoch

    # --- position (set_epoch: EpochCursor) --------------------------------------------------------------
    def roll_epoch_if_done(self) -> None:
        if self.cfg.resampled and self.position >= self.batches_per_epoch:
            self.set_epoch(self.epoch + 1, position=0)
        elif not self.cfg.resampled:
            self.position = 0  # a single pass interrupted midway starts over

    def state_dict(self) -> dict:
        return {"mode": "resampled" if self.cfg.resampled else "single_pass", "epoch": self.epoch,
                "position": self.position, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                "streams": max(1, self.num_workers), "batches_per_epoch": self.batches_per_epoch}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for key in ("mode", "seed", "world_size", "batches_per_epoch"):
            if state[key] != mine[key]:
                raise ValueError(f"stream state was saved with {key}={state[key]}, this stream has {mine[key]}")
        if state["position"] and not self.cfg.resampled:
            raise ValueError("a single-pass stream cannot resume mid-pass (shards are split by worker, not "
                             "planned); start the pass again or use the indexed reader")
        mid_epoch = 0 < state["position"] < (state["batches_per_epoch"] or math.inf)
        if mid_epoch and state["streams"] != mine["streams"]:
            raise ValueError(f"stream state was saved with {state['streams']} worker streams mid-epoch, this loader "
                             f"has {mine['streams']}: the batches would differ (resume at an epoch boundary, or "
                             f"with the same num_workers)")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    # --- the pipeline ---------------------------------------------------------------------------------
    def pipeline(self, epoch: int, worker: int = 0, num_workers: int = 1) -> wds.DataPipeline:
        """The WebDataset pipeline that worker ``worker`` of ``num_workers`` runs for ``epoch``: yields
        ``(bucket, [prepared samples])`` (undecoded)."""
        cfg, h = self.cfg, self.handler
        if cfg.resampled:
            # worker_seed stands in for wds.pytorch_worker_seed (rank * 1000 + worker), the rank being in seed
            source = [wds.ResampledShards(self.urls, seed=derive_seed(cfg.seed, self.rank, epoch),
                                          worker_seed=partial(int, worker), deterministic=True)]
        else:
            source = [wds.SimpleShardList(self.urls), partial(split_by_rank, rank=self.rank, world_size=self.world_size),
                      wds.split_by_worker]
        shuffle = None
        if cfg.shuffle_buffer > 1:
            rng = random.Random(derive_seed(cfg.seed, self.rank, epoch, worker, 1))
            shuffle = wds.shuffle(cfg.shuffle_buffer, min(cfg.shuffle_initial, cfg.shuffle_buffer), rng=rng)
        pipe = wds.DataPipeline(
            *source,
            self._watch_empty if cfg.resampled else None,
            # = wds.tarfile_to_samples(handler=h), opening URLs with open_url (fsspec for s3:// etc.)
            partial(open_shards, handler=h),
            partial(tar_file_expander, handler=h),
            partial(group_by_keys, handler=h),
            wds.map(self.prepare, handler=h),
            shuffle,
            bucket_batched(self.batch_sizes, partial=not cfg.resampled),
        )
        if cfg.resampled:
            pipe = pipe.with_epoch(nbatches=len(range(worker, self.batches_per_epoch, num_workers)))
        return pipe

    def _watch_empty(self, shards: Iterator[dict]) -> Iterator[dict]:
        """A resampled stream in which no sample passes the filters would read shards forever: stop it."""
        limit = max(64, 4 * len(self.urls))
        for n, shard in enumerate(shards):
            if n >= limit and self.accepted == 0:
                raise RuntimeError(f"{n} shard reads gave no usable sample (dropped: {dict(self.dropped)}); "
                                   f"check the shards' status, the kinds and the bucket table")
            yield shard

    def prepare(self, sample: dict) -> dict | None:
        """A tar sample -> ``{clip_id, kind, bucket, media, width, height, fps, caption}``, or None when it
        is not to be trained on. Raises ValueError for a broken sample (the handler decides)."""
        shard, key = shard_name(sample["__url__"]), sample["__key__"]
        ext = VIDEO_EXT if VIDEO_EXT in sample else IMAGE_EXT if IMAGE_EXT in sample else None
        if ext is None:
            raise ValueError(f"{shard}: sample {key} has no {VIDEO_EXT} or {IMAGE_EXT} member")
        row = None
        if self.rows is not None:  # the index decides: status, where, kinds, bucket, and cleaned metadata
            row = self.rows.get((shard, key))
            if row is None:
                self.dropped["not selected by the index"] += 1
                return None
        meta = json.loads(sample[META_EXT].decode("utf-8")) if META_EXT in sample else {}
        if not isinstance(meta, dict):
            raise ValueError(f"{shard}: sample {key}: the {META_EXT} member is not a JSON object")
        latent_stride = latent_fps = None
        if row is not None:
            clip_id, kind, bucket, width, height, fps, latent_stride, latent_fps = row
        elif self.cfg.latents:
            kind = KIND_VIDEO if ext == VIDEO_EXT else KIND_IMAGE
            width, height, fps = meta.get("width"), meta.get("height"), meta.get("fps")
            bucket, latent_stride, latent_fps = meta.get(LATENT_BUCKET), meta.get(LATENT_STRIDE), meta.get(LATENT_FPS)
            if LATENT_EXT not in sample or bucket not in self.batch_sizes or kind not in self.cfg.kinds:
                self.dropped["no latent" if LATENT_EXT not in sample else "latent bucket not in the table"
                             if bucket not in self.batch_sizes else f"kind {kind}"] += 1
                return None
            clip_id = str(meta.get("clip_id") or key)
        else:
            if meta.get("status", "ok") not in GOOD_STATUS:
                self.dropped[f"status {meta.get('status')}"] += 1
                return None
            kind = KIND_VIDEO if ext == VIDEO_EXT else KIND_IMAGE
            width, height, fps = meta.get("width"), meta.get("height"), meta.get("fps")
            bucket = self.buckets.assign(kind, width, height, meta.get("num_frames"), fps) if kind in self.cfg.kinds else None
            if bucket is None:
                self.dropped["no bucket" if kind in self.cfg.kinds else f"kind {kind}"] += 1
                return None
            clip_id = str(meta.get("clip_id") or key)
        txt = sample.get(CAPTION_EXT)
        caption = choose_caption(self.cfg.caption_version, self.cfg.caption_fallback, self._store_captions, clip_id,
                                 lambda: meta.get(CAPTIONS_FIELD), lambda: None if txt is None else txt.decode("utf-8"))
        self.accepted += 1
        members = {e: sample[e] for e in (ext, LATENT_EXT) if e in sample}
        return {"clip_id": clip_id, "kind": kind, "bucket": bucket, "members": members, "width": width,
                "height": height, "fps": fps, "caption": caption, "latent_stride": latent_stride,
                "latent_fps": latent_fps}

    def decode(self, bucket_name: str, samples: list[dict], epoch: int) -> dict:
        """Prepared samples of one bucket -> a batch (shards/loader.py ``build_batch``); a sample that
        fails to decode goes to the handler ("warn"/"ignore": its slot holds a copy of a good sample and
        its id is listed in ``failed``; "raise" raises)."""
        def on_error(sample: Sample, exc: Exception) -> None:
            exc.args = exc.args + (f"sample {sample.clip_id}",)
            self.handler(exc)

        return build_batch([Sample(s["clip_id"], s["kind"], s["width"], s["height"], s["fps"], s["caption"],
                                   partial(_member, s["members"], s["clip_id"]), s["latent_stride"], s["latent_fps"])
                            for s in samples], bucket_name, self.buckets, self.seed, epoch, self.cfg, on_error)

    def __iter__(self):
        self.roll_epoch_if_done()
        epoch, start = self.epoch, self.position
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        if self.cfg.resampled and worker >= self.batches_per_epoch:
            return  # more workers than batches: with_epoch(0) would mean "no limit"
        # this worker's k-th batch is the epoch's batch k * num_workers + worker: the DataLoader's
        # round-robin over workers then yields them in order, and a resumed run can tell which it consumed
        for k, (bucket, samples) in enumerate(self.pipeline(epoch, worker, num_workers)):
            position = k * num_workers + worker
            if position < start:
                continue  # consumed before the checkpoint: skipped without decoding
            batch = self.decode(bucket, samples, epoch)
            batch["epoch"], batch["position"] = epoch, position
            if info is None and self.cfg.resampled:
                self.position = position + 1
            yield batch
        if self.dropped:  # per process: each worker reports what it left out
            log.info("rank %d worker %d epoch %d: samples left out: %s", self.rank, worker, epoch, dict(self.dropped))
        if info is None and not self.cfg.resampled:
            self.set_epoch(epoch + 1, position=0)


def stream_dataset(cfg: StreamConfig, rank: int = 0, world_size: int = 1) -> StreamDataset:
    """The streaming reader for ``rank`` of ``world_size`` (wrap it in ``StreamLoader``)."""
    return StreamDataset(cfg, rank, world_size)


def _member(members: dict[str, bytes], clip_id: str, ext: str) -> bytes:
    if ext not in members:
        raise ValueError(f"sample {clip_id} has no {ext} member")
    return members[ext]


class StreamLoader(TrackedLoader):
    """A DataLoader over a ``StreamDataset`` that records, in the main process, which batches the trainer
    has taken (workers prefetch ahead), and yields a resampled epoch in position order even when a resumed
    epoch starts on a worker other than the first (a buffer of at most ``num_workers`` batches)."""

    def __init__(self, dataset: StreamDataset, num_workers: int = 0, **kwargs):
        dataset.num_workers = num_workers
        super().__init__(dataset, num_workers=num_workers, **kwargs)

    def __iter__(self):
        ds: StreamDataset = self.dataset
        ds.roll_epoch_if_done()  # before the workers copy the dataset
        # the loader's own counters: with num_workers=0 the dataset also moves its position as it goes
        epoch, position = ds.epoch, ds.position
        if not ds.cfg.resampled:
            for batch in super().__iter__():
                position += 1
                ds.epoch, ds.position = epoch, position
                yield batch
            ds.set_epoch(epoch + 1, position=0)
            return
        waiting: dict[int, dict] = {}
        for batch in super().__iter__():
            waiting[batch["position"]] = batch
            while position in waiting:
                ready = waiting.pop(position)
                position += 1
                ds.epoch, ds.position = epoch, position
                yield ready
        if waiting:
            raise RuntimeError(f"the stream ended at position {position} with batches {sorted(waiting)} waiting")
