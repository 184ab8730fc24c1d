"""Near-duplicate clips across the whole dataset by frame signature: no weights, no all-pairs comparison.

What counts as a near-duplicate: the same footage re-encoded at another size or bitrate, or trimmed.
Each clip carries a frame signature (``curate/stages/signature.py``): every quarter second, a 256-bit DCT
hash of the mean luma thumbnail over half a second and a 4x4 grid of mean chroma (a *tick*). Two ticks *match* when their hashes are
within ``max_hamming`` bits and their colours within ``max_color_diff`` levels. Two clips are
near-duplicates when, at one time offset, at least ``min_overlap`` of the shorter clip's ticks (and at
least ``min_ticks``) match: a trimmed copy matches along a diagonal, a different shot that merely shares
a background or a colour does not (its ticks do not line up at one offset, or do not match at all).

Search (the complexity is the point: a 1M-clip dataset takes minutes, not hours):
  1. Every tick of every clip is hashed into ``bands`` LSH tables, each keyed by ``bits`` bit positions
     drawn at random from the 256 (bit sampling LSH for Hamming distance). Two ticks at distance d share
     a table's key with probability ~(1 - d/256)^bits: with the defaults (24 tables x 32 bits), a pair at
     d = 8 (a typical re-encode) is found by some table with probability ~1, at d = 20 ~0.85, at d = 40
     ~0.1 per tick pair; a clip pair has many tick pairs, so it is missed only if all of them are.
     Unrelated ticks (d ~ 128) share a key with probability 2^-32 per table.
  2. Clip pairs that share a key in any table are candidates; each is verified with the exact compare
     above (its cost is O(ticks_a * ticks_b), ~20 x 20 for 10-s clips).
  3. Groups are resolved greedily, best clip first (highest source resolution, then source bitrate when
     known, then longest, then clip_id): a clip is a duplicate when a verified neighbour is already kept
     and covers at least ``min_overlap`` of *its* ticks (a long clip that contains a short better copy
     keeps its other footage), and its reason names that kept clip: never a clip that was itself dropped.
  Time: O(T * bands) to hash and O(T log T) per table to sort, T = ticks in the dataset (~4 per second
  of footage), plus O(candidates * ticks^2) to verify. Memory: O(T) — 68 bytes per tick for the
  signatures, a 32-byte copy of the hash words, one table's keys and order at a time. Measured
  (bench/bench_dedup.py): 1M clips, 20M ticks in 5.7 CPU-minutes on one core.
  A bucket holds each clip once. One larger than ``max_bucket`` clips (a clip re-uploaded a thousand
  times, or a title card many clips share) is not paired all with all (that is quadratic): each of its
  clips is paired with the bucket's ``HOT_PAIRS`` best clips in the keep order, which is enough to drop
  every copy of the best one, at O(size) cost; the count of such buckets is in the stats.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelforge.curate.manifest import write_parquet_atomic
from reelforge.curate.stages.signature import HASH_BITS, TICK_DTYPE, _HEADER, unpack_signature

SIGNATURE_COLUMN = "frame_signature"
SIGNATURE_SCHEMA = pa.schema([("clip_id", pa.string()), (SIGNATURE_COLUMN, pa.binary())])
# buckets at most this big are paired by offset in sorted order (vectorised); bigger ones one by one
SMALL_BUCKET = 16
# members of an oversized bucket are paired with this many of its best clips only
HOT_PAIRS = 8


@dataclass
class NearDupConfig:
    enabled: bool = True
    max_hamming: int = 40          # of 256 bits, per tick. Sintel re-encodes/trims: clip medians 0-23;
                                   # other shots >= 72, but two halves of one still-camera shot 32-48
                                   # (min_overlap keeps those apart: few ticks line up)
    max_color_diff: float = 12.0   # mean |U|,|V| difference over the 4x4 grid, in 0-255 levels
    min_overlap: float = 0.6       # fraction of a clip's ticks a kept clip matches at one offset
    min_ticks: int = 2             # and at least this many ticks (a 1-s clip has 2)
    bands: int = 24                # LSH tables
    bits: int = 32                 # bits sampled per table (<= 62)
    seed: int = 0
    max_bucket: int = 512          # bigger LSH buckets pair only with their best clips (module docstring)

    def __post_init__(self):
        if not 0 <= self.max_hamming < HASH_BITS:
            raise ValueError(f"near_dup: max_hamming must be in [0, {HASH_BITS}), got {self.max_hamming}")
        if not 0.0 < self.min_overlap <= 1.0:
            raise ValueError(f"near_dup: min_overlap must be in (0, 1], got {self.min_overlap}")
        if not 1 <= self.bits <= min(62, HASH_BITS):
            raise ValueError(f"near_dup: bits must be in [1, 62], got {self.bits}")
        if self.bands < 1 or self.min_ticks < 1 or self.max_bucket < 2 or self.max_color_diff < 0:
            raise ValueError("near_dup: bands and min_ticks must be >= 1, max_bucket >= 2, max_color_diff >= 0")

    def check(self, row: dict) -> str | None:
        """Reason for a row that :func:`apply_near_dup` marked (``near_dup_of`` and its figures)."""
        kept = row.get("near_dup_of")
        if not kept:
            return None
        return (f"near_dup: near-duplicate of {kept} (hamming {float(row.get('near_dup_hamming') or 0):.0f}"
                f"/{HASH_BITS} median, {float(row.get('near_dup_overlap') or 0):.0%} of ticks aligned)")


# ------------------------------------------------------------------------------------------ compare two clips

@dataclass(frozen=True)
class Match:
    overlap: float      # fraction of the shorter clip's ticks matched at the best offset (in a result
                        # of find_near_duplicates: of the dropped clip's ticks)
    ticks: int          # how many
    hamming: float      # median Hamming distance of those tick pairs
    offset: int         # tick offset of b against a


def compare(a: np.ndarray, b: np.ndarray, cfg: NearDupConfig) -> Match | None:
    """Best time-aligned match of two unpacked signatures (TICK_DTYPE arrays), or None when no tick
    matches. A trim is rarely a whole number of ticks, so a tick of ``a`` counts as matched at offset o
    when it matches ``b``'s tick at o or o + 1."""
    if len(a) == 0 or len(b) == 0:
        return None
    if len(a) > len(b):  # count ticks of the shorter clip: each is matched at most once
        m = compare(b, a, cfg)
        return None if m is None else Match(m.overlap, m.ticks, m.hamming, -m.offset)
    ham = np.bitwise_count(a["hash"][:, None, :] ^ b["hash"][None, :, :]).sum(-1)  # (na, nb)
    col = np.abs(a["color"][:, None, :].astype(np.int16) - b["color"][None, :, :].astype(np.int16)).mean(-1)
    ii, jj = np.nonzero((ham <= cfg.max_hamming) & (col <= cfg.max_color_diff))
    if len(ii) == 0:
        return None
    ta, tb = a["tick"].astype(np.int64), b["tick"].astype(np.int64)
    off = tb[jj] - ta[ii]  # (matches,)
    lo = int(off.min())
    width = int(off.max()) - lo + 2
    hit = np.full((width, len(a)), np.inf)  # best hamming of a's tick i at offset lo + k
    np.minimum.at(hit, (off - lo, ii), ham[ii, jj])
    either = np.minimum(hit, np.vstack([np.full((1, len(a)), np.inf), hit[:-1]]))  # at o or o + 1 (row k: o = k-1)
    found = np.isfinite(either)
    counts = found.sum(1)  # (width,) ticks matched at each offset
    # most ticks first; among offsets tied on that, the closest match (a fast shot can half-match at a
    # neighbouring offset too)
    total = np.where(found, either, 0.0).sum(1)
    k = int(np.lexsort((total, -counts))[0])
    n = int(counts[k])
    return Match(overlap=n / min(len(a), len(b)), ticks=n, hamming=float(np.median(either[k][found[k]])),
                 offset=lo + k - 1)


def is_near_duplicate(m: Match | None, cfg: NearDupConfig) -> bool:
    return m is not None and m.ticks >= cfg.min_ticks and m.overlap >= cfg.min_overlap


# ------------------------------------------------------------------------------------------ signatures table

class Signatures:
    """All clips' ticks in flat arrays (no Python object per clip): clip k owns ticks[start[k]:start[k+1]]."""

    def __init__(self, clip_ids: list[str] | pa.Array, start: np.ndarray, ticks: np.ndarray):
        # an Arrow string array stays one (a few bytes per id, not a Python object each)
        self.clip_ids, self.start, self.ticks = clip_ids, start, ticks

    def __len__(self) -> int:
        return len(self.clip_ids)

    def of(self, k: int) -> np.ndarray:
        return self.ticks[self.start[k]:self.start[k + 1]]

    @classmethod
    def from_arrow(cls, clip_ids: list[str] | pa.Array, column: pa.Array | pa.ChunkedArray) -> "Signatures":
        """From a binary column of packed signatures (nulls: clips without one). Headers are checked
        and cut out with numpy on the column's buffers, so a million signatures cost no Python loop."""
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks() if column.num_chunks else pa.array([], pa.binary())
        column = column.cast(pa.large_binary())
        n = len(column)
        lengths = np.nan_to_num(pc.binary_length(column).to_numpy(zero_copy_only=False)).astype(np.int64)
        if n == 0 or not lengths.sum():
            return cls(_ids(clip_ids), np.zeros(n + 1, np.int64), np.zeros(0, TICK_DTYPE))
        offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset:column.offset + n + 1]
        data = np.frombuffer(column.buffers()[2], np.uint8)
        present = lengths > 0
        for k in np.flatnonzero(present)[:1]:  # header of the first signature: version and tick length
            unpack_signature(data[offsets[k]:offsets[k] + lengths[k]].tobytes())
        hdr = _HEADER.itemsize
        heads = data[(offsets[:-1][present, None] + np.arange(hdr)).reshape(-1)].reshape(-1, hdr)  # (m, 4)
        if (heads != heads[:1]).any():
            raise ValueError("frame signatures of different versions in one table: rebuild the signatures")
        body = lengths - np.where(present, hdr, 0)
        if (body % TICK_DTYPE.itemsize).any():
            raise ValueError("a frame signature has a truncated tick (not a multiple of the tick size)")
        keep = np.ones(int(offsets[-1] - offsets[0]), bool)  # drop the header bytes, keep the ticks
        keep[(offsets[:-1][present, None] - offsets[0] + np.arange(hdr)).reshape(-1)] = False
        ticks = np.frombuffer(data[offsets[0]:offsets[-1]][keep].tobytes(), TICK_DTYPE)
        start = np.r_[0, np.cumsum(body // TICK_DTYPE.itemsize)].astype(np.int64)
        return cls(_ids(clip_ids), start, ticks)

    @classmethod
    def from_bytes(cls, clip_ids: list[str], signatures: Iterable[bytes | None]) -> "Signatures":
        return cls.from_arrow(clip_ids, pa.array([None if s is None else bytes(s) for s in signatures], pa.binary()))


def write_signatures(rows: Iterable[dict], path: str | Path) -> int:
    """Write the ``clip_id`` and ``frame_signature`` of rows that have one to ``path`` (atomic)."""
    ids, sigs = [], []
    for r in rows:
        s = r.get(SIGNATURE_COLUMN)
        # only packed bytes are signatures: a failed row's column can come back as None or NaN
        if isinstance(s, (bytes, bytearray, memoryview)) and r.get("clip_id") is not None:
            ids.append(str(r["clip_id"]))
            sigs.append(bytes(s))
    table = pa.table({"clip_id": pa.array(ids, pa.string()), SIGNATURE_COLUMN: pa.array(sigs, pa.binary())},
                     schema=SIGNATURE_SCHEMA)
    write_parquet_atomic(table, path)
    return len(ids)


def read_signatures(path: str | Path) -> pa.Table:
    return pq.read_table(path, columns=["clip_id", SIGNATURE_COLUMN])


# ------------------------------------------------------------------------------------------ the search

def band_positions(cfg: NearDupConfig) -> np.ndarray:
    """(bands, bits) bit positions each table samples; fixed by the seed."""
    rng = np.random.default_rng(cfg.seed)
    return np.stack([rng.choice(HASH_BITS, cfg.bits, replace=False) for _ in range(cfg.bands)])


def _band_keys(words: list[np.ndarray], positions: np.ndarray) -> np.ndarray:
    """The hash as 4 contiguous (T,) uint64 words -> (T,) int64 keys of the bits at ``positions`` (bit p:
    word p // 64, bit p % 64), shifted out of the words directly: no (T, 256) bit matrix."""
    keys = np.zeros(len(words[0]), np.uint64)
    one = np.uint64(1)
    for k, p in enumerate(positions):
        keys |= ((words[p // 64] >> np.uint64(p % 64)) & one) << np.uint64(k)
    return keys.view(np.int64)


def candidate_pairs(sigs: Signatures, cfg: NearDupConfig, rank: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """(P, 2) int64 clip index pairs (a < b) that share an LSH bucket in some table, and stats. ``rank``:
    each clip's place in the keep order (0 = kept first), used for oversized buckets."""
    n = len(sigs)
    rank = np.arange(n) if rank is None else np.asarray(rank)
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(sigs.start))  # (T,) clip of each tick
    words = [np.ascontiguousarray(sigs.ticks["hash"][:, w]) for w in range(HASH_BITS // 64)]
    stats = {"ticks": int(len(owner)), "oversized_buckets": 0, "clips_in_oversized_buckets": 0}
    if not len(owner):  # no clip with a signature (all failed, filtered or flat): nothing to pair
        stats["candidates"] = 0
        return np.zeros((0, 2), np.int64), stats
    found: list[np.ndarray] = []
    for positions in band_positions(cfg):
        keys = _band_keys(words, positions)
        # one entry per (key, clip): a clip's neighbouring ticks (a still shot: all of them) share keys,
        # and would otherwise fill buckets with pairs inside one clip. Ticks are stored clip by clip, so
        # a stable sort by key leaves each bucket ordered by clip.
        order = np.argsort(keys, kind="stable")
        sk, so = keys[order], owner[order]
        first = np.r_[True, (sk[1:] != sk[:-1]) | (so[1:] != so[:-1])]
        order, sk = order[first], sk[first]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        sizes = np.diff(np.r_[starts, len(sk)])
        if not len(sizes) or sizes.max() < 2:
            continue
        small = np.repeat(sizes < SMALL_BUCKET, sizes)
        codes = []
        for d in range(1, min(int(sizes.max()), SMALL_BUCKET)):
            idx = np.flatnonzero((sk[d:] == sk[:-d]) & small[:-d])
            codes.append(_pair_codes(owner[order[idx]], owner[order[idx + d]], n))
        for s, size in zip(starts[(sizes >= SMALL_BUCKET)], sizes[sizes >= SMALL_BUCKET]):
            members = owner[order[s:s + size]]
            if size > cfg.max_bucket:
                stats["oversized_buckets"] += 1
                stats["clips_in_oversized_buckets"] += int(size)
                best = members[np.argsort(rank[members], kind="stable")[:HOT_PAIRS]]
                codes.append(_pair_codes(np.repeat(best, size), np.tile(members, len(best)), n))
                continue
            i, j = np.triu_indices(int(size), 1)
            codes.append(_pair_codes(members[i], members[j], n))
        if codes:
            found.append(np.unique(np.concatenate(codes)))
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    stats["candidates"] = int(len(codes))
    return np.stack([codes // n, codes % n], axis=1), stats


def _pair_codes(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Clip pairs as one int64 each (lo * n + hi), pairs within one clip dropped."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    return lo[keep] * n + hi[keep]


def _ids(clip_ids) -> list[str] | pa.Array:
    if isinstance(clip_ids, pa.ChunkedArray):
        clip_ids = clip_ids.combine_chunks()
    return clip_ids if isinstance(clip_ids, pa.Array) else list(clip_ids)


def keep_order(clip_ids: list[str] | pa.Array, quality: list[tuple] | np.ndarray | None) -> np.ndarray:
    """Clip indices in the order they are considered for keeping: ``quality`` ascending (one tuple per
    clip, or an (N, k) array whose columns compare like the tuple's items), then clip_id. Vectorised
    for an array: no Python object per clip."""
    n = len(clip_ids)
    ids = clip_ids if isinstance(clip_ids, pa.Array) else pa.array(list(clip_ids), pa.string())
    id_rank = np.empty(n, np.int64)
    id_rank[pc.sort_indices(ids).to_numpy()] = np.arange(n)
    if quality is None:
        return np.argsort(id_rank, kind="stable")
    if isinstance(quality, np.ndarray):
        q = quality.reshape(n, -1)
        return np.lexsort((id_rank, *[q[:, k] for k in range(q.shape[1] - 1, -1, -1)]))
    return np.array(sorted(range(n), key=lambda i: (quality[i], int(id_rank[i]))), np.int64)


def find_near_duplicates(sigs: Signatures, quality: list[tuple] | np.ndarray | None = None,
                         cfg: NearDupConfig | None = None) -> tuple[dict[str, tuple[str, Match]], dict]:
    """``{duplicate clip_id: (kept clip_id, Match)}`` and search stats. ``quality``: one sort key per
    clip, *smaller is better* (see :func:`quality_key`; or an (N, k) array, :func:`keep_order`); the
    clip_id breaks ties."""
    cfg = cfg or NearDupConfig()
    n = len(sigs)
    if n < 2:
        return {}, {"ticks": int(len(sigs.ticks)), "candidates": 0, "verified_pairs": 0}
    visit = keep_order(sigs.clip_ids, quality)
    name = (lambda i: sigs.clip_ids[i].as_py()) if isinstance(sigs.clip_ids, pa.Array) else sigs.clip_ids.__getitem__
    rank = np.empty(n, np.int64)
    rank[visit] = np.arange(n)
    pairs, stats = candidate_pairs(sigs, cfg, rank)
    neighbours: dict[int, dict[int, Match]] = {}
    for a, b in pairs.tolist():
        m = compare(sigs.of(a), sigs.of(b), cfg)
        if is_near_duplicate(m, cfg):
            neighbours.setdefault(a, {})[b] = m
            neighbours.setdefault(b, {})[a] = m
    stats["verified_pairs"] = sum(len(v) for v in neighbours.values()) // 2
    # a clip is dropped only when a kept clip covers most of *it*: a long clip that merely contains a
    # short better copy stays (it holds footage the short one lacks)
    length = np.diff(sigs.start)
    kept = np.zeros(n, bool)
    dups: dict[str, tuple[str, Match]] = {}
    for i in visit.tolist():
        best = min(((-(m.ticks / length[i]), m.hamming, name(j), j, m)
                    for j, m in neighbours.get(i, {}).items() if kept[j]), default=None)
        if best is None or -best[0] < cfg.min_overlap:
            kept[i] = True
        else:
            m = best[4]
            dups[name(i)] = (best[2], Match(-best[0], m.ticks, m.hamming, m.offset))
    return dups, stats


def quality_key(row: dict) -> tuple:
    """Which copy is kept, smaller first: the highest source resolution, then the highest source bitrate
    (when the row knows it), then the longest clip."""
    pixels = int(row.get("src_width") or row.get("width") or 0) * int(row.get("src_height") or row.get("height") or 0)
    return (-pixels, -int(row.get("src_bit_rate") or 0), -float(row.get("duration_s") or 0.0))


def apply_near_dup(table: pa.Table | list[dict], signatures: str | Path | pa.Table,
                   cfg: NearDupConfig | None = None) -> pa.Table | list[dict]:
    """Mark near-duplicates among ``ok`` clips: set ``near_dup_of``/``near_dup_hamming``/
    ``near_dup_overlap``, status ``filtered`` and the reason from :meth:`NearDupConfig.check`. Other
    statuses are untouched; clips without a signature are never duplicates. ``signatures``: a
    signatures parquet path or its table. Returns the same type it was given."""
    cfg = cfg or NearDupConfig()
    if isinstance(signatures, (str, Path)):
        signatures = read_signatures(signatures)
    rows = table.to_pylist() if isinstance(table, pa.Table) else [dict(r) for r in table]
    for r in rows:
        r["near_dup_of"], r["near_dup_hamming"], r["near_dup_overlap"] = None, None, None
    if cfg.enabled:
        live = [r for r in rows if r.get("status", "ok") == "ok"]
        index = {cid: k for k, cid in enumerate(signatures.column("clip_id").to_pylist())}
        take = pa.array([index.get(r["clip_id"]) for r in live], pa.int64())
        sigs = Signatures.from_arrow([r["clip_id"] for r in live], signatures.column(SIGNATURE_COLUMN).take(take))
        dups, _ = find_near_duplicates(sigs, [quality_key(r) for r in live], cfg)
        for r in live:
            if r["clip_id"] in dups:
                kept, m = dups[r["clip_id"]]
                r["near_dup_of"], r["near_dup_hamming"], r["near_dup_overlap"] = kept, m.hamming, m.overlap
                r["status"], r["reason"] = "filtered", cfg.check(r)
    if isinstance(table, pa.Table):
        out = pa.Table.from_pylist(rows)
        fixed = {"near_dup_of": pa.string(), "near_dup_hamming": pa.float64(), "near_dup_overlap": pa.float64()}
        return out.cast(pa.schema([table.schema.field(f.name) if f.name in table.column_names
                                   else pa.field(f.name, fixed.get(f.name, f.type)) for f in out.schema]))
    return rows
