"""Latent pre-extraction: ``reelforge encode DATASET --vae VAE --out DIR``.

Every training sample of DATASET (index ``status = ok``, ``--where``, with a bucket) is read at its
bucket's shape, centred in time (no random offset: one fixed crop per clip), encoded by the VAE, and
written to DIR as a shard set with the same keys: the original members (media, JSON, caption) plus
``<key>.latent.npy``, so DIR is a complete dataset whose readers serve either ``video`` or, with
``latents: true``, ``latent`` without running the encoder (shards/SPEC.md "Latents").

``<key>.latent.npy`` holds (2, Z, T', H', W') = (posterior mean, std) with ``store: mean_std`` (the
reader draws a fresh sample per epoch), or one sample (Z, T', H', W') with ``store: sample``; float16 by
default. The JSON gains ``latent_bucket``, ``latent_shape``, ``latent_frame_stride``, ``latent_fps``,
``latent_store`` and ``latent_vae``; DIR gets ``latents.json`` (the VAE's compression, channels and
latent statistics) and ``encode.parquet`` (one row per selected sample: ok | failed | skipped, reason).

DATASET and DIR may be URLs (``s3://…``): samples are read by ranged GETs, every shard and table of DIR
is written in one atomic step (``reelforge.storage``), and a DIR that cannot be written stops the command
before the VAE is loaded.
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch

from reelforge import storage
from reelforge.shards.access import read_sample
from reelforge.shards.buckets import BucketTable
from reelforge.shards.loader import LATENT_BUCKET, LATENT_FPS, LATENT_STRIDE
from reelforge.shards.plan import PlannedBatch
from reelforge.shards.spec import CAPTION_EXT, IMAGE_EXT, LATENT_EXT, META_EXT, SHARDS_SUBDIR, VIDEO_EXT

log = logging.getLogger(__name__)


@dataclass
class EncodeConfig:
    vae: str = ""                                  # VAE folder (reelforge export, diffusers) or hub id
    vae_kind: str = "auto"                         # auto | reelforge | wan | ltx
    store: Literal["mean_std", "sample"] = "mean_std"
    latent_dtype: Literal["float16", "float32"] = "float16"
    batch_size: int = 4                            # clips per encoder call (one bucket per call)
    where: str | None = None
    bucket_config: str = ""                        # bucket table YAML; "" = the index's table
    device: str = "auto"                           # auto: cuda when available
    dtype: str = "auto"                            # auto: bf16 on cuda, fp32 on cpu
    num_workers: int = 2                           # decode threads ahead of the encoder (DataLoader workers)
    seed: int = 0                                  # for store: sample
    target_shard_bytes: int = 256 * 1024 * 1024

    def __post_init__(self):
        if self.store not in ("mean_std", "sample"):
            raise ValueError(f"store must be mean_std or sample, got {self.store!r}")
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("batch_size must be >= 1 and num_workers >= 0")


class _Batches(torch.utils.data.IterableDataset):
    """Each selected sample once, ``batch_size`` of one bucket at a time (the reader's decode)."""

    def __init__(self, ds, batches: list[PlannedBatch]):
        self.ds, self.batches = ds, batches

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        n, w = (info.num_workers, info.id) if info else (1, 0)
        for i in range(w, len(self.batches), n):
            yield i, self.ds.load_batch(self.batches[i], epoch=0)


def encode_dataset(dataset: str | Path, out: str | Path, cfg: EncodeConfig) -> dict:
    from reelforge.config import load_config
    from reelforge.shards.index import build_index, dataset_root, index_buckets, resolve_index
    from reelforge.shards.reader import ReaderConfig, VideoShardDataset
    from reelforge.shards.writer import ShardWriter, ShardWriterConfig
    from reelforge.train.vae.interface import load_vae

    t0 = time.time()
    storage.check_input_url(dataset)
    storage.check_output_url(out)   # before the VAE loads: a scheme or bucket that cannot work stops here
    dataset, out = storage.as_path_or_url(dataset), storage.as_path_or_url(out)
    index = resolve_index(dataset)
    if not storage.exists(index):
        raise FileNotFoundError(f"{index} not found: encode needs an indexed dataset")
    if storage.same_location(out, dataset_root(index)):
        raise ValueError("--out must be a new folder, not the dataset itself")
    if storage.glob(storage.join(out, SHARDS_SUBDIR, "*.tar")):
        raise FileExistsError(f"{storage.join(out, SHARDS_SUBDIR)} already holds shards: choose an empty --out")
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.bfloat16 if cfg.dtype == "bf16" or (cfg.dtype == "auto" and device.type == "cuda") else torch.float32
    vae = load_vae(cfg.vae, cfg.vae_kind, device, dtype)
    buckets = load_config(BucketTable, cfg.bucket_config) if cfg.bucket_config else index_buckets(index)
    reader = ReaderConfig(buckets=buckets, where=cfg.where, dtype="float", random_offset=False)
    ds = VideoShardDataset(index, reader, 0, 1, seed=cfg.seed)

    records: list[dict] = []
    planned: list[PlannedBatch] = []
    shapes: dict[str, list[int]] = {}
    for name, rows in ds._by_bucket.items():
        b = buckets[name]
        try:
            shapes[name] = list(vae.latent_shape(b.num_frames, b.height, b.width))
        except ValueError as exc:  # this bucket's shape does not suit the VAE: its samples are recorded
            records += [{"clip_id": ds.row(r)["clip_id"], "status": "skipped", "reason": str(exc), "bucket": name}
                        for r in rows]
            continue
        planned += [PlannedBatch(name, tuple(rows[i:i + cfg.batch_size])) for i in range(0, len(rows), cfg.batch_size)]

    storage.makedirs(out)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    np_dtype = np.float16 if cfg.latent_dtype == "float16" else np.float32
    loader = torch.utils.data.DataLoader(_Batches(ds, planned), batch_size=None, num_workers=cfg.num_workers)
    writer_cfg = ShardWriterConfig(target_bytes=cfg.target_shard_bytes, prefix="latent", max_open_seconds=0)
    with ShardWriter(storage.join(out, SHARDS_SUBDIR), writer_cfg) as writer, torch.no_grad():
        for i, batch in loader:
            plan = planned[i]
            failed = set(batch["failed"])
            x = batch["video"].transpose(1, 2).to(device, dtype)                  # (B, C, T, H, W)
            posterior = vae.encode(x)
            if cfg.store == "sample":
                eps = torch.randn(posterior.mean.shape, generator=gen, device=device, dtype=posterior.mean.dtype)
                lat = (posterior.mean + posterior.std * eps).float().cpu().numpy()      # (B, Z, T', H', W')
            else:
                lat = torch.stack([posterior.mean, posterior.std], 1).float().cpu().numpy()  # (B, 2, Z, ...)
            done = set()
            for j, r in enumerate(plan.rows):
                row = ds.row(r)
                clip_id = row["clip_id"]
                if clip_id in failed or clip_id in done:  # a failed slot holds a copy of another clip
                    records.append({"clip_id": clip_id, "status": "failed", "reason": "could not be decoded" if clip_id in failed else "repeated clip_id",
                                    "bucket": plan.bucket})
                    continue
                done.add(clip_id)
                try:
                    members = read_sample(index, {**row, "key": clip_id},
                                          exts=(VIDEO_EXT, IMAGE_EXT, META_EXT, CAPTION_EXT))
                    meta = json.loads(members.get(META_EXT, b"{}"))
                except (OSError, KeyError, ValueError) as exc:
                    records.append({"clip_id": clip_id, "status": "failed", "reason": f"read: {exc}", "bucket": plan.bucket})
                    continue
                stride = 1.0 if row["kind"] == "image" else buckets.stride(row["fps"])
                meta.update({LATENT_BUCKET: plan.bucket, "latent_shape": list(lat[j].shape), LATENT_STRIDE: stride,
                             LATENT_FPS: 0.0 if row["kind"] == "image" else float(row["fps"]) / stride,
                             "latent_store": cfg.store, "latent_vae": vae.name})
                members[META_EXT] = json.dumps(meta).encode()
                buf = _npy(lat[j].astype(np_dtype))
                writer.write(clip_id, {**members, LATENT_EXT: buf})
                records.append({"clip_id": clip_id, "status": "ok", "reason": None, "bucket": plan.bucket})
    store = storage.join(dataset_root(index), "captions.parquet")
    if storage.exists(store):  # caption versions stay servable from the latent dataset
        with storage.local_source(store) as local, storage.staged_write(storage.join(out, "captions.parquet")) as tmp:
            shutil.copyfile(local, tmp)
    table = pa.Table.from_pylist(records, schema=pa.schema([("clip_id", pa.string()), ("status", pa.string()),
                                                            ("reason", pa.string()), ("bucket", pa.string())]))
    storage.write_parquet(table, storage.join(out, "encode.parquet"))
    info = {**vae.info(), "store": cfg.store, "dtype": cfg.latent_dtype, "source": str(index),
            "bucket_latent_shapes": shapes}
    storage.write_bytes_atomic(storage.join(out, "latents.json"), json.dumps(info, indent=2).encode())
    encoded = sum(r["status"] == "ok" for r in records)
    if encoded:
        build_index(out, buckets)
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "failed", "skipped")}
    # rows the bucket table has no shape for never reach the loop: counted, or "encoded=1" of 10 says nothing
    return {"encoded": encoded, "failed": counts["failed"], "skipped": counts["skipped"], "unbucketed": ds.unbucketed,
            "seconds": round(time.time() - t0, 2), "out": str(out), "shapes": shapes}


def _npy(arr: np.ndarray) -> bytes:
    import io
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
