"""The epoch plan: which samples form which batch, and which rank gets which batch.

Everything is a pure function of (index rows, bucket batch sizes, seed, epoch, world_size), so every
rank computes the same plan without talking to the others, a resumed run recomputes it exactly, and a
new epoch reshuffles. Open-Sora's bucket sampler works the same way (per-bucket shuffle with
``seed + epoch``, batches per bucket, equal batch counts per rank).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PlannedBatch:
    bucket: str
    rows: tuple[int, ...]   # row numbers in the reader's sample table


def plan_epoch(rows_by_bucket: dict[str, list[int]], batch_sizes: dict[str, int], seed: int, epoch: int,
               world_size: int, remainder: str = "pad") -> list[list[PlannedBatch]]:
    """Per-rank batch lists of equal length for one epoch.

    ``remainder="pad"``: a bucket's last partial batch is completed with samples from the start of that
    bucket's shuffled order, and the last round of ranks is completed by repeating the first batches of
    the epoch, so every sample is seen at least once and only padding repeats. ``"drop"``: partial
    batches and the batches left over after dealing equal shares are not served this epoch.
    """
    if remainder not in ("pad", "drop"):
        raise ValueError(f"remainder must be 'pad' or 'drop', got {remainder!r}")
    rng = np.random.default_rng([seed, epoch])
    batches: list[PlannedBatch] = []
    for bucket in sorted(rows_by_bucket):
        ids = np.asarray(rows_by_bucket[bucket], dtype=np.int64)
        if len(ids) == 0:
            continue
        bs = batch_sizes[bucket]
        ids = ids[rng.permutation(len(ids))]
        full = len(ids) // bs
        batches += [PlannedBatch(bucket, tuple(ids[i * bs:(i + 1) * bs].tolist())) for i in range(full)]
        rest = len(ids) - full * bs
        if rest and remainder == "pad":
            fill = np.resize(ids, bs - rest)  # wraps around (np.resize repeats) when the bucket is tiny
            batches.append(PlannedBatch(bucket, tuple(ids[full * bs:].tolist() + fill.tolist())))
    if not batches:
        raise ValueError("the epoch plan has no batch: no bucket holds enough samples for one batch")
    order = rng.permutation(len(batches))
    batches = [batches[i] for i in order]
    if remainder == "pad":
        per_rank = math.ceil(len(batches) / world_size)
        batches = batches + [batches[i % len(batches)] for i in range(per_rank * world_size - len(batches))]
    else:
        per_rank = len(batches) // world_size
        if per_rank == 0:
            raise ValueError(f"{len(batches)} batches cannot give each of {world_size} ranks one batch")
        batches = batches[: per_rank * world_size]
    return [batches[r::world_size] for r in range(world_size)]
