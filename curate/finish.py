"""The build's finish: one dataset-wide decision over every clip, streamed so the driver's memory does not
grow with the clips (issue 16). Run at the end of a build and by ``--refilter``.

The clip rows live in the manifest's parts (``_work/clips/<content>/``). They are read a content at a
time, in the order clips.parquet lists them (video path, then start frame), and handled in chunks of
about ``CHUNK_ROWS`` rows, as Arrow tables:

1. decide   — each chunk: the caption scores of the last captioning run joined in, the thresholds
              (``filters.apply_filters``), ``ok`` without media made ``failed``; the embeddings and frame
              signatures go to their own tables; the decided chunk is spilled to a scratch file.
              Kept in memory meanwhile, for the next step only: each surviving clip's id, frame signature
              and three quality numbers (what the near-duplicate search compares; the embeddings of the
              survivors are spilled, the search maps them from disk).
2. pairs    — near-duplicates by frame signature, then embedding dedup, over the survivors: the one
              step that needs every clip together (``curate/near_dup.py``, ``curate/dedup.py``). Only
              the duplicates found are kept.
3. write    — the spilled chunks are read back with the pairs applied, twice: once to hash what the
              publish would write (unchanged: nothing is copied), once to publish the kept clips
              (``shards.publish.Publication``, streamed) and write clips.parquet a row group at a time.

So what grows with the clips is the near-duplicate search's input — per surviving clip its id (~40
bytes), its signature (4 + 68 bytes per quarter second of footage) and 24 bytes of quality — and the
search's own per-tick arrays (``curate/near_dup.py``); everything else is per chunk or per video.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reelforge import storage
from reelforge.curate.filters import FiltersConfig, apply_filters, funnel
from reelforge.curate.malloc import release_arrow
from reelforge.curate.manifest import EMBEDDING_COLUMN, Manifest, clip_id_for, rows_to_table
from reelforge.curate.near_dup import SIGNATURE_COLUMN, SIGNATURE_SCHEMA
from reelforge.curate.stage import CPU_PREFIX
from reelforge.curate.video_task import sample_json, spans_of
from reelforge.shards import publish as publishing

# clip rows decided, published and written per step: the finish's working set (a few MB of rows)
CHUNK_ROWS = 1024
VIDEO_CHUNK = 1024   # video rows read back, marked and written per step
SCRATCH = "finish.tmp"   # under _work for a local output (a disk sized for the dataset, not /tmp)
CLIPS_FILE = "clips.parquet"
NEAR_COLUMNS = {"near_dup_of": pa.string(), "near_dup_hamming": pa.float64(), "near_dup_overlap": pa.float64()}
DEDUP_COLUMNS = {"dedup_of": pa.string(), "dedup_cosine": pa.float64()}
LIVE_EMBEDDINGS = pa.schema([("clip_id", pa.string()), ("embedding", pa.list_(pa.float32())),
                             ("aesthetic", pa.float64())])
NO_MEDIA = "transcode: no clip media was written for this clip"


def _mark_duplicate(v: dict, first: dict[str, str]) -> dict:
    """Same bytes under two names: the first path (sorted) is the original; a copy becomes ``filtered``
    with ``duplicate_of`` and a reason naming the original, and plans no clips. Rows come in path order;
    ``first``: sha256 -> original path, so far.

    Decided on every run from the current inputs (never stored in ``_work``), so dropping the original
    from the inputs makes the copy the original next time.
    """
    sha = v.get("sha256")
    if v.get("status") == "ok" and sha:
        if sha in first:
            return dict(v, status="filtered", duplicate_of=first[sha],
                        reason=f"duplicate: same bytes as {first[sha]} (sha256 {sha[:16]}...)")
        first[sha] = v["path"]
    return v


class Videos:
    """The current video rows, read back from the manifest's parts a chunk at a time in path order, exact
    copies marked (``_mark_duplicate``); iterable again (the finish reads them twice).

    Held for the whole finish: each current path and where its row lives (``Manifest.video_places``,
    ~250 bytes a video), and while iterating, each original's sha256 (~200 bytes an ``ok`` video); the
    rows themselves (~7 KB a video as dicts) only ``VIDEO_CHUNK`` at a time.
    """

    def __init__(self, manifest: Manifest, current: set[str] | None = None):
        self.manifest = manifest
        self.parts, self.places = manifest.video_places(current)
        self.paths = sorted(self.places)

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[dict]:
        first: dict[str, str] = {}
        for lo in range(0, len(self.paths), VIDEO_CHUNK):
            places = [self.places[p] for p in self.paths[lo:lo + VIDEO_CHUNK]]
            for v in self.manifest.read_videos(self.parts, places):
                yield _mark_duplicate(v, first)


# ---------------------------------------------------------------------------------------------- reading

def content_rows(manifest: Manifest, video: dict) -> pa.Table | None:
    """The committed clip rows of one current ``ok`` video: only the ids its split plans (clip ids are
    content hashes: the same file under a new path plans the same ids, and its rows take the new path),
    each once (the first part wins), sorted by start frame."""
    planned = {clip_id_for(video["sha256"], s["start_frame"], s["end_frame"]) for s in spans_of(video)}
    work = manifest.content(video["sha256"])
    table = concat([storage.read_parquet(p) for p in storage.glob(work.path("*.parquet"))])
    if table is None or "clip_id" not in table.column_names:
        return None
    seen: set[str] = set()
    keep = []
    for i, cid in enumerate(table.column("clip_id").to_pylist()):
        if cid in planned and cid not in seen:
            seen.add(cid)
            keep.append(i)
    table = _set(table.take(keep), "video_path", pa.array([video["path"]] * len(keep), pa.string()))
    return table.sort_by("start_frame") if "start_frame" in table.column_names else table


def chunks(manifest: Manifest, videos: list[dict], rows: int | None = None) -> Iterator[pa.Table]:
    """The current clip rows, in ``videos``' order (sorted by path), about ``rows`` (``CHUNK_ROWS``) at a time."""
    rows = rows or CHUNK_ROWS
    buf, n = [], 0
    for v in videos:
        if v.get("status") != "ok" or not v.get("sha256"):
            continue
        t = content_rows(manifest, v)
        if t is None or not t.num_rows:
            continue
        buf.append(t)
        n += t.num_rows
        if n >= rows:
            yield concat(buf)
            buf, n = [], 0
    if buf:
        yield concat(buf)


def concat(tables: list[pa.Table]) -> pa.Table | None:
    """One table; columns typed differently in different parts become what ``rows_to_table`` makes of
    the mixed values (text), as one table of those rows would."""
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return None
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return rows_to_table([r for t in tables for r in t.to_pylist()])


def unify(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for every chunk (columns in first-seen order); a column typed differently in two
    chunks in a way Arrow cannot promote becomes text."""
    if not schemas:
        return pa.schema([])
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        fields: dict[str, pa.DataType] = {}
        for s in schemas:
            for f in s:
                have = fields.get(f.name)
                if have is None or pa.types.is_null(have):
                    fields[f.name] = f.type
                elif not pa.types.is_null(f.type) and have != f.type:
                    try:
                        fields[f.name] = pa.unify_schemas([pa.schema([(f.name, have)]), pa.schema([f])],
                                                          promote_options="permissive").field(0).type
                    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                        fields[f.name] = pa.string()
        return pa.schema(list(fields.items()))


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types (absent columns null)."""
    cols = []
    for f in schema:
        if f.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                col = pa.array([None if v is None else str(v) for v in col.to_pylist()], f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _set(table: pa.Table, name: str, column) -> pa.Table:
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, column)
    return table.append_column(name, column)


def _floats(table: pa.Table, name: str) -> np.ndarray:
    """A numeric column as float64, null (or absent, or not numeric) as 0."""
    if name not in table.column_names:
        return np.zeros(table.num_rows)
    try:
        return table.column(name).cast(pa.float64()).fill_null(0.0).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return np.zeros(table.num_rows)


# ---------------------------------------------------------------------------------------------- 1. decide

@dataclass
class Decided:
    """What step 1 leaves: the spilled chunks and the survivors' search inputs."""
    chunks: list[Path] = field(default_factory=list)
    schemas: list[pa.Schema] = field(default_factory=list)
    embeddings: int = 0   # rows written to embeddings.parquet / signatures.parquet
    signatures: int = 0
    any_ok: bool = False  # some clip passed the thresholds (else nothing can be a duplicate)
    sig_ids: list[pa.Array] = field(default_factory=list)     # survivors with a signature, in stream order
    sig_bytes: list[pa.Array] = field(default_factory=list)
    sig_quality: list[np.ndarray] = field(default_factory=list)   # (n, 3) quality_key's numbers
    live_embeddings: int = 0


class _Tables:
    """Parquet files written a chunk at a time; a file is opened on its first rows."""

    def __init__(self):
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, path, table: pa.Table) -> None:
        if not table.num_rows:
            return
        w = self.writers.get(str(path))
        if w is None:
            w = self.writers[str(path)] = pq.ParquetWriter(str(path), table.schema)
        w.write_table(table)

    def close(self) -> None:
        for w in self.writers.values():
            w.close()


def add_caption_scores(table: pa.Table, scores: pa.Table | None) -> pa.Table:
    """``caption_match`` of the last captioning run (``recaption/build.py``) onto the clips it scored."""
    if scores is None or not table.num_rows:
        return table
    idx = pc.index_in(table.column("clip_id"), value_set=scores.column("clip_id"))
    hit = pc.is_valid(idx)
    for name in ("caption_match", "caption_match_reason", "caption_version"):
        new = scores.column(name).take(idx)
        if name in table.column_names:
            try:
                new = pc.if_else(hit, new, table.column(name).cast(new.type))
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                pass  # the run's scores win where the types disagree
        table = _set(table, name, new)
    return table


def decide(table: pa.Table, filters: FiltersConfig, captions: pa.Table | None, d: Decided, side: dict,
           out: _Tables, scratch: Path) -> None:
    """Step 1 on one chunk (see the module docstring)."""
    table = add_caption_scores(table, captions)
    # which clip duplicates which depends on which clips survive: recomputed, never carried over
    table = table.drop_columns([c for c in (*NEAR_COLUMNS, *DEDUP_COLUMNS) if c in table.column_names])
    emb = table.column(EMBEDDING_COLUMN) if EMBEDDING_COLUMN in table.column_names else None
    has_emb = None
    if emb is not None:
        try:
            emb = emb.cast(pa.list_(pa.float32()))
            has_emb = pc.fill_null(pc.greater(pc.list_value_length(emb), 0), False)
            rows = pa.table({"clip_id": table.column("clip_id"), "embedding": emb}).filter(has_emb)
            out.write(side["embeddings"], rows)
            d.embeddings += rows.num_rows
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            emb = None  # not vectors (a failed row's text): no clip of this chunk has an embedding
        table = table.drop_columns([EMBEDDING_COLUMN])
    sig = table.column(SIGNATURE_COLUMN) if SIGNATURE_COLUMN in table.column_names else None
    if sig is not None:
        # only packed bytes are signatures: a failed row's column can come back as text
        if pa.types.is_binary(sig.type) or pa.types.is_large_binary(sig.type):
            sig = sig.cast(pa.binary())
            rows = pa.table({"clip_id": table.column("clip_id"), SIGNATURE_COLUMN: sig},
                            schema=SIGNATURE_SCHEMA).filter(pc.is_valid(sig))
            out.write(side["signatures"], rows)
            d.signatures += rows.num_rows
        else:
            sig = None
        table = table.drop_columns([SIGNATURE_COLUMN])

    table = apply_filters(table, filters)
    ok = pc.equal(table.column("status"), "ok")
    if "work_shard" in table.column_names:
        media = pc.fill_null(pc.greater(pc.utf8_length(table.column("work_shard").cast(pa.string())), 0), False)
    else:
        media = pa.repeat(False, table.num_rows)
    lost = pc.and_(ok, pc.invert(media))
    if pc.any(lost).as_py():  # a clip that passed but has nothing to publish
        table = _set(table, "status", pc.if_else(lost, "failed", table.column("status")))
        table = _set(table, "reason", pc.if_else(lost, NO_MEDIA, table.column("reason").cast(pa.string())))
        ok = pc.and_(ok, media)
    if pc.any(ok).as_py():
        d.any_ok = True
        if sig is not None:
            live = pc.and_(ok, pc.is_valid(sig))
            ids = table.column("clip_id").filter(live).combine_chunks()
            d.sig_ids.append(ids.cast(pa.string()))
            d.sig_bytes.append(sig.filter(live).combine_chunks())
            px = np.where(_floats(table, "src_width") != 0, _floats(table, "src_width"), _floats(table, "width")) * \
                np.where(_floats(table, "src_height") != 0, _floats(table, "src_height"), _floats(table, "height"))
            q = np.stack([-np.trunc(px), -np.trunc(_floats(table, "src_bit_rate")), -_floats(table, "duration_s")], 1)
            d.sig_quality.append(q[np.asarray(live, dtype=bool)])
        if emb is not None:
            live = pc.and_(ok, has_emb)
            aesthetic = table.column("aesthetic") if "aesthetic" in table.column_names else pa.nulls(table.num_rows)
            try:
                aesthetic = aesthetic.cast(pa.float64())
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                aesthetic = pa.nulls(table.num_rows, pa.float64())
            rows = pa.table({"clip_id": table.column("clip_id").cast(pa.string()), "embedding": emb,
                             "aesthetic": aesthetic}, schema=LIVE_EMBEDDINGS).filter(live)
            out.write(scratch / "live-embeddings.parquet", rows)
            d.live_embeddings += rows.num_rows
    path = scratch / f"decided-{len(d.chunks):06d}.parquet"
    pq.write_table(table, path)
    d.chunks.append(path)
    d.schemas.append(table.schema)
    release_arrow()   # the chunk's Arrow memory: the pool would keep it


# ---------------------------------------------------------------------------------------------- 2. pairs

@dataclass
class Pairs:
    near: dict[str, tuple] | None = None    # None: the search did not run (no columns are added)
    dedup: dict[str, tuple] | None = None


def find_pairs(d: Decided, filters: FiltersConfig, scratch: Path) -> Pairs:
    """Near-duplicates by frame signature first (the cheap, exact-footage test), then embedding dedup over
    the clips that survive it; each only when enabled and some clip has its input."""
    from reelforge.curate.dedup import find_duplicates
    from reelforge.curate.near_dup import Signatures, find_near_duplicates

    pairs = Pairs()
    if not d.any_ok:
        return pairs  # nothing survives the thresholds: nothing can be a duplicate of anything
    if filters.near_dup.enabled and d.signatures:
        pairs.near = {}
        if d.sig_ids:
            ids = pa.concat_arrays(d.sig_ids)
            sigs = Signatures.from_arrow(ids, pa.concat_arrays(d.sig_bytes))
            d.sig_ids, d.sig_bytes = [], []  # the search holds its own flat copy of the ticks
            found, _ = find_near_duplicates(sigs, np.concatenate(d.sig_quality), filters.near_dup)
            pairs.near = {k: (kept, m.hamming, m.overlap) for k, (kept, m) in found.items()}
    if filters.dedup.enabled and d.embeddings:
        pairs.dedup = {}
        path = scratch / "live-embeddings.parquet"
        if d.live_embeddings:
            gone = pa.array(list(pairs.near or ()), pa.string())
            head = pq.read_table(path, columns=["clip_id", "aesthetic"])
            keep = pc.invert(pc.is_in(head.column("clip_id"), value_set=gone))
            ids = head.column("clip_id").filter(keep).combine_chunks()
            quality = head.column("aesthetic").filter(keep).to_numpy()
            del head
            if len(ids):
                def stream():  # the survivors' embeddings, a row group at a time (a disk memmap in the search)
                    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS, columns=["clip_id", "embedding"]):
                        batch = batch.filter(pc.invert(pc.is_in(batch.column("clip_id"), value_set=gone)))
                        if batch.num_rows:
                            flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
                            yield flat.astype(np.float32).reshape(batch.num_rows, -1)
                found = find_duplicates(ids, stream(), quality, filters.dedup)
                pairs.dedup = {k: (kept, cos) for k, (kept, cos) in found.items()}
    return pairs


def apply_pairs(table: pa.Table, pairs: Pairs, filters: FiltersConfig) -> pa.Table:
    """The duplicates found, onto one decided chunk: their columns, and ``filtered`` with the reason."""
    ids = table.column("clip_id").to_pylist()
    status, reason = table.column("status").to_pylist(), table.column("reason").cast(pa.string()).to_pylist()
    for found, columns, section in ((pairs.near, NEAR_COLUMNS, filters.near_dup),
                                    (pairs.dedup, DEDUP_COLUMNS, filters.dedup)):
        if found is None:
            continue
        values = [found.get(c, (None,) * len(columns)) for c in ids]
        for k, (name, typ) in enumerate(columns.items()):
            table = _set(table, name, pa.array([v[k] for v in values], typ))
        for i, c in enumerate(ids):
            if c in found:
                status[i], reason[i] = "filtered", section.check(dict(zip(columns, found[c])))
    table = _set(table, "status", pa.array(status, pa.string()))
    return _set(table, "reason", pa.array(reason, pa.string()))


# ---------------------------------------------------------------------------------------------- the finish

@dataclass
class Totals:
    """What the summary and videos.parquet say about the clips, counted as they stream by."""
    clips: int = 0
    ok: int = 0
    funnel: dict = field(default_factory=lambda: funnel([]))
    per_video: Counter = field(default_factory=Counter)
    kept: Counter = field(default_factory=Counter)
    cpu: dict = field(default_factory=dict)

    def add(self, table: pa.Table) -> None:
        self.clips += table.num_rows
        ok = pc.equal(table.column("status"), "ok")
        self.ok += int(pc.sum(ok).as_py() or 0)
        for name, n in funnel(table).items():
            self.funnel[name] = self.funnel.get(name, 0) + n
        paths = table.column("video_path")
        self.per_video.update(dict(zip(*[c.to_pylist() for c in pc.value_counts(paths).flatten()])))
        self.kept.update(dict(zip(*[c.to_pylist() for c in pc.value_counts(paths.filter(ok)).flatten()])))
        for name in table.column_names:
            if name.startswith(CPU_PREFIX):
                self.cpu[name] = self.cpu.get(name, 0.0) + float(_floats(table, name).sum())


def decide_and_publish(out, cfg, manifest: Manifest, videos: Iterable[dict], check=lambda: None
                       ) -> tuple[Totals, publishing.PublishResult]:
    """Steps 1-3 for the current ``videos`` (sorted by path, exact copies marked: ``Videos``): writes
    embeddings.parquet, signatures.parquet, DIR/shards and clips.parquet; returns the counts and the
    publish's result. ``check`` runs before the side tables are committed and before the publish (it
    raises to stop: the output lock lost)."""
    filters = cfg.curate.filters
    remote = storage.is_remote(out)
    scratch = Path(tempfile.mkdtemp(prefix="reelforge-finish-")) if remote else Path(storage.join(manifest.work, SCRATCH))
    if not remote:
        shutil.rmtree(scratch, ignore_errors=True)  # a killed finish's (the output lock makes it ours)
        scratch.mkdir(parents=True)
    try:
        captions_path = storage.join(out, "caption_match.parquet")  # recaption/build.py SCORES_FILE
        captions = storage.read_parquet(captions_path).combine_chunks() if storage.exists(captions_path) else None
        d, side, tables = Decided(), {"embeddings": scratch / "embeddings.parquet",
                                      "signatures": scratch / "signatures.parquet"}, _Tables()
        try:
            for chunk in chunks(manifest, videos):
                decide(chunk, filters, captions, d, side, tables, scratch)
        finally:
            tables.close()
        del captions
        check()
        for name, n in (("embeddings", d.embeddings), ("signatures", d.signatures)):
            if n:  # read again by every decision: a refilter, the report, `reelforge dedup`
                storage.commit_file(side[name], storage.join(out, f"{name}.parquet"))
            else:
                storage.remove(storage.join(out, f"{name}.parquet"))
        pairs = find_pairs(d, filters, scratch)
        d.sig_ids = d.sig_bytes = d.sig_quality = []
        schema = unify(d.schemas)
        for columns, found in ((NEAR_COLUMNS, pairs.near), (DEDUP_COLUMNS, pairs.dedup)):
            if found is not None:
                schema = unify([schema, pa.schema(list(columns.items()))])
        schema = pa.schema([f for f in schema if f.name != "shard"] + [pa.field("shard", pa.string())])

        def final() -> Iterator[tuple[pa.Table, list[dict], list[bytes]]]:
            for path in d.chunks:
                t = conform(apply_pairs(pq.read_table(path), pairs, filters), schema)
                kept = t.filter(pc.equal(t.column("status"), "ok")).drop_columns(["shard"]).to_pylist()
                yield t, kept, [sample_json(r) for r in kept]

        digest = publishing.Digest(cfg.shards)
        for _, kept, metas in final():
            for r, m in zip(kept, metas):
                digest.add(r, m)
        digest = digest.hexdigest()
        same = publishing.unchanged(out, manifest.work, digest)
        if same is not None:
            try:
                return _write(out, final(), schema, publishing.RecordedClips(manifest.work, same), same,
                              check=check)
            except publishing.RecordMismatch:
                pass  # the record's clip table was edited by hand: publish again
        pub = publishing.Publication(out, manifest.work_shards, cfg.shards, manifest.work)
        try:
            return _write(out, final(), schema, pub, None, digest, check)
        except BaseException:
            pub.abort()
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _write(out, final, schema: pa.Schema, placer, same: publishing.PublishResult | None,
           digest: str | None = None, check=lambda: None) -> tuple[Totals, publishing.PublishResult]:
    """Step 3's second read: each chunk's kept clips published (or found in the record), its rows written
    to clips.parquet as one row group. clips.parquet appears after the shards it names."""
    totals = Totals()
    with storage.staged_write(storage.join(out, CLIPS_FILE)) as tmp:
        writer = pq.ParquetWriter(tmp, schema)
        try:
            for t, kept, metas in final:
                if same is not None:
                    shard_of, missing = placer.take([r["clip_id"] for r in kept])
                else:
                    shard_of, missing = placer.add(kept, metas)
                ids = t.column("clip_id").to_pylist()
                t = _set(t, "shard", pa.array([shard_of.get(c) for c in ids], pa.string()))
                if missing:  # its work tar was deleted or damaged by hand
                    status, reason = t.column("status").to_pylist(), t.column("reason").to_pylist()
                    for i, c in enumerate(ids):
                        if c in missing:
                            status[i], reason[i] = "failed", missing[c]
                    t = _set(_set(t, "status", pa.array(status, pa.string())), "reason", pa.array(reason, pa.string()))
                t = conform(t, schema)
                writer.write_table(t)
                totals.add(t)
                release_arrow()
        finally:
            writer.close()
        check()  # the last moment before DIR/shards and clips.parquet are replaced
        result = same if same is not None else placer.commit(digest)
    return totals, result


def video_row(v: dict, totals: Totals) -> dict:
    """videos.parquet's row of one video: its clip counts; an ``ok`` video without a clip is ``filtered``
    with why."""
    v = {k: val for k, val in v.items() if k != "clip_spans"}
    v["num_clips"] = totals.per_video.get(v["path"], 0)
    v["num_clips_ok"] = totals.kept.get(v["path"], 0)
    if v["status"] == "ok" and v["num_clips"] == 0:
        # decodable, but every frame lies in a transition or a cut margin: nothing to train on
        v["status"] = "filtered"
        v["reason"] = (f"split: no shot outside transitions and cut margins "
                       f"({v.get('frames', 0)} frames, {len(json.loads(v.get('transitions') or '[]'))} transitions)")
    return v


@dataclass
class VideoCounts:
    """What the summary says about the videos, counted as videos.parquet is written."""
    inputs: int = 0
    ok: int = 0
    filtered: int = 0      # no usable shot (exact copies apart)
    duplicate: int = 0
    failed: int = 0
    failed_by_reason: Counter = field(default_factory=Counter)
    source_seconds: float = 0.0
    cpu: dict = field(default_factory=dict)   # cpu_s_<stage> of the video stages, summed

    def add(self, v: dict) -> None:
        self.inputs += 1
        status = v["status"]
        self.ok += status == "ok"
        self.filtered += status == "filtered" and not v.get("duplicate_of")
        self.duplicate += bool(v.get("duplicate_of"))
        if status == "failed":
            # group failures by what went wrong, not by which file: the path is replaced in the reason
            self.failed += 1
            self.failed_by_reason[(v["reason"] or "").replace(v["path"], "<file>")[:90]] += 1
        if status == "ok":
            self.source_seconds += float(v.get("duration_s") or 0)
        for k, val in v.items():
            if k.startswith(CPU_PREFIX):
                self.cpu[k] = self.cpu.get(k, 0.0) + float(val or 0.0)


def write_videos(path, videos: Iterable[dict], totals: Totals) -> VideoCounts:
    """videos.parquet from ``videos`` (``video_row`` of each), ``VIDEO_CHUNK`` rows a row group, committed
    when complete; returns the counts. Chunks are spilled first, so every row group gets the one schema
    of all of them (as ``unify`` makes it for clips.parquet)."""
    counts = VideoCounts()
    scratch = Path(tempfile.mkdtemp(prefix="reelforge-videos-"))
    try:
        spilled, schemas, buf = [], [], []

        def spill():
            t = rows_to_table(buf)
            spilled.append(scratch / f"videos-{len(spilled):06d}.parquet")
            pq.write_table(t, spilled[-1])
            schemas.append(t.schema)
            buf.clear()

        for v in videos:
            v = video_row(v, totals)
            counts.add(v)
            buf.append(v)
            if len(buf) >= VIDEO_CHUNK:
                spill()
        if buf or not spilled:
            spill()
        schema = unify(schemas)
        with storage.staged_write(path) as tmp:
            with pq.ParquetWriter(tmp, schema) as writer:
                for p in spilled:
                    writer.write_table(conform(pq.read_table(p), schema))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return counts
