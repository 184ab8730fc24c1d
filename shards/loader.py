"""The loader core both shard readers share: which samples train, the epoch position, the caption
choice, and how a bucket's samples become one fixed-shape batch (decoded video or stored latents, plus
what a DiT conditions on). The indexed reader (reader.py) and the streaming reader (stream.py) differ
only in how they plan batches and fetch member bytes.

A batch (both readers, see shards/SPEC.md "Reader contract"):

    video        (B, T, C, H, W) uint8, or float in [-1, 1]     (media mode, the default)
    latent       (B, Z, T', H', W') float32                      (``latents: true``: from <key>.latent.npy)
    caption, clip_id, failed     lists of str
    bucket       str; epoch, position   int (added by the readers)
    fps          (B,) float32: frames per second of the sampled frames (0 for images)
    frame_stride (B,) float32: source frames per sampled frame (1 for images)
    orig_size    (B, 2) int64: (height, width) of the clip before resize and crop
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader

from reelforge.shards.buckets import BucketTable
from reelforge.shards.index import assign_buckets, select
from reelforge.shards.spec import KIND_IMAGE
from reelforge.shards.transform import clip_rng, image_to_bucket, pick_caption, video_to_bucket

# JSON fields `reelforge encode` writes beside <key>.latent.npy (they become index columns)
LATENT_BUCKET = "latent_bucket"
LATENT_STRIDE = "latent_frame_stride"
LATENT_FPS = "latent_fps"


# --- selection ---------------------------------------------------------------------------------------

def select_samples(index: str | Path, where: str | None, kinds: list[str], buckets: BucketTable,
                   latents: bool = False) -> tuple[pa.Table, int]:
    """Index rows that train: ``status = ok``, ``where``, ``kinds``, and a bucket. The bucket is the
    reader's table's choice (a new table needs no re-index), or in latent mode the bucket the latents
    were encoded at. Returns (rows with a ``bucket`` column, number of rows left out for no bucket)."""
    table = select(index, where)
    table = table.filter(pc.is_in(table["kind"], pa.array(kinds)))
    if latents:
        if LATENT_BUCKET not in table.column_names or "latent_offset" not in table.column_names:
            raise ValueError(f"{index} holds no latents: write them with `reelforge encode`")
        table = table.filter(pc.is_valid(table["latent_offset"]))
        unknown = set(table[LATENT_BUCKET].drop_null().to_pylist()) - {b.name for b in buckets.buckets}
        if unknown:
            raise ValueError(f"latents were encoded at buckets {sorted(unknown)} that the bucket table lacks")
        bucket = table[LATENT_BUCKET].cast(pa.string())
    else:
        bucket = assign_buckets(table, buckets)
    table = table.set_column(table.column_names.index("bucket"), "bucket", bucket)
    unbucketed = table.filter(pc.is_null(table["bucket"])).num_rows
    return table.filter(pc.is_valid(table["bucket"])), unbucketed


# --- epoch position ----------------------------------------------------------------------------------

class EpochCursor:
    """``epoch`` and ``position`` (batches of this epoch the trainer has taken)."""

    epoch: int = 0
    position: int = 0

    def set_epoch(self, epoch: int, position: int | None = None) -> None:
        """Go to ``epoch``. With the current epoch the position is kept (a trainer that calls
        ``set_epoch(start_epoch)`` after ``load_state_dict`` still resumes mid-epoch); pass ``position``
        to force one."""
        if position is None:
            position = self.position if epoch == self.epoch else 0
        self.epoch, self.position = epoch, position


class TrackedLoader(DataLoader):
    """A DataLoader over one of the readers' datasets (batches pre-formed, ``batch_size=None``) whose
    ``state_dict`` is the dataset's position, kept in the main process by the subclass's ``__iter__``."""

    def __init__(self, dataset, num_workers: int = 0, **kwargs):
        if kwargs.get("persistent_workers"):
            raise ValueError("persistent_workers would keep a stale copy of the reader position; leave it off")
        super().__init__(dataset, batch_size=None, num_workers=num_workers, **kwargs)

    def state_dict(self) -> dict:
        return self.dataset.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.dataset.load_state_dict(state)


# --- captions ----------------------------------------------------------------------------------------

def choose_caption(version: str | None, fallback: bool, store: dict | None, clip_id: str,
                   json_captions: Callable[[], dict | None], read_txt: Callable[[], str | None]) -> str:
    """The caption store (captions.parquet) when it has the version, else the JSON member's
    ``captions[version]``, else ``<key>.txt`` (see ``pick_caption``). Getters run only when needed."""
    if store is not None:
        text = store.get(clip_id)
        captions = {version: text} if text is not None else {}
    else:
        captions = json_captions()
    return pick_caption(version, fallback, captions, read_txt)


# --- samples to a batch ------------------------------------------------------------------------------

@dataclass
class Sample:
    """One selected sample, its member bytes fetched lazily (``fetch(ext)``)."""
    clip_id: str
    kind: str
    width: int | None
    height: int | None
    fps: float | None
    caption: str
    fetch: Callable[[str], bytes]
    latent_stride: float | None = None   # latent mode: the stride and fps the latents were encoded with
    latent_fps: float | None = None


def _latent(s: Sample, seed: int, epoch: int, draw: bool) -> np.ndarray:
    """(Z, T', H', W') float32 from ``<key>.latent.npy``: a stored sample as is; stored (mean, std)
    (2, Z, T', H', W') -> a draw seeded by (seed, epoch, clip) when ``draw``, else the mean."""
    arr = np.load(io.BytesIO(s.fetch("latent.npy")), allow_pickle=False).astype(np.float32)
    if arr.ndim == 5 and arr.shape[0] == 2:
        mean, std = arr
        if not draw:
            return mean
        return mean + std * clip_rng(seed, epoch, s.clip_id).standard_normal(mean.shape, dtype=np.float32)
    if arr.ndim != 4:
        raise ValueError(f"sample {s.clip_id}: latent.npy has shape {arr.shape}, expected (Z, T, H, W) or (2, Z, T, H, W)")
    return arr


def build_batch(samples: list[Sample], bucket_name: str, buckets: BucketTable, seed: int, epoch: int, cfg,
                on_error: Callable[[Sample, Exception], None]) -> dict:
    """A bucket's samples -> one batch (module docstring). ``cfg`` has ``dtype``, ``random_offset``,
    ``decode_threads``, ``latents``, ``latent_sample``. A sample that fails goes to ``on_error`` (which
    may raise); its slot is filled with a copy of a good sample and its id listed in ``failed``, so a
    batch keeps its shape and ranks stay in step (a batch with no good sample is zeros)."""
    bucket = buckets[bucket_name]
    good: list[tuple[Sample, np.ndarray, float]] = []
    failed: list[str] = []
    for s in samples:
        try:
            if cfg.latents:
                arr, stride = _latent(s, seed, epoch, cfg.latent_sample), float(s.latent_stride or 1.0)
            elif s.kind == KIND_IMAGE:
                arr, stride = image_to_bucket(s.fetch("jpg"), bucket), 1.0
            else:
                stride = buckets.stride(s.fps)
                rng = clip_rng(seed, epoch, s.clip_id) if cfg.random_offset else None
                arr = video_to_bucket(s.fetch("mp4"), s.width, s.height, stride, bucket, rng, cfg.decode_threads)
            if good and arr.shape != good[0][1].shape:
                raise ValueError(f"shape {arr.shape} differs from the batch's {good[0][1].shape}")
        except Exception as exc:  # one bad sample must not stop the rank (the others would wait for it)
            on_error(s, exc)
            failed.append(s.clip_id)
            continue
        good.append((s, arr, stride))
    slots = [good[k % len(good)] for k in range(len(samples))] if good else []
    batch = {"caption": [s.caption for s, _, _ in slots], "clip_id": [s.clip_id for s, _, _ in slots],
             "bucket": bucket_name, "failed": failed}
    if cfg.latents:
        shape = good[0][1].shape if good else (1,)
        batch["latent"] = torch.from_numpy(np.stack([a for _, a, _ in slots])) if slots else \
            torch.zeros((len(samples), *shape))
    else:
        clips = [a for _, a, _ in slots] or [np.zeros((bucket.num_frames, bucket.height, bucket.width, 3), np.uint8)] * len(samples)
        video = torch.from_numpy(np.stack(clips)).permute(0, 1, 4, 2, 3).contiguous()     # (B, T, C, H, W)
        batch["video"] = video.float().div_(127.5).sub_(1.0) if cfg.dtype == "float" else video
    if not slots:
        batch["caption"], batch["clip_id"] = [""] * len(samples), [""] * len(samples)
    batch["frame_stride"] = torch.tensor([st for _, _, st in slots] or [1.0] * len(samples), dtype=torch.float32)
    batch["fps"] = torch.tensor([_sampled_fps(s, st, cfg.latents) for s, _, st in slots] or [0.0] * len(samples),
                                dtype=torch.float32)
    batch["orig_size"] = torch.tensor([[s.height or 0, s.width or 0] for s, _, _ in slots] or [[0, 0]] * len(samples),
                                      dtype=torch.int64)
    return batch


def _sampled_fps(s: Sample, stride: float, latents: bool) -> float:
    if latents and s.latent_fps is not None:
        return float(s.latent_fps)
    if s.kind == KIND_IMAGE or not s.fps:
        return 0.0
    return float(s.fps) / stride
