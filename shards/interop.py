"""Import shards written by other tools, so the reader, export and verify work on them unchanged.

Supported layouts (both written with ``webdataset.TarWriter``, one ``NNNNN.tar`` per shard with a
``NNNNN.parquet`` and ``NNNNN_stats.json`` beside it, keys like ``000010023``):

- video2dataset: ``<key>.mp4`` + ``<key>.txt`` + ``<key>.json`` (url, key, status, caption, ... metadata)
- img2dataset / CC12M-style: ``<key>.jpg`` + ``<key>.txt`` + ``<key>.json`` (url, key, status, width, height,
  original_width, original_height, sha256, ...)

The tars are linked (or copied) into ``OUT/shards/`` as ``imported-NNNNNN.tar``; every sample is probed
(frames, fps, size) into ``OUT/clips.parquet``; ``build_index`` then writes ``OUT/index.parquet``. A member
that is not what its extension says (an ``.mp4`` that does not decode, a ``.jpg`` that is no JPEG,
a caption that is not UTF-8) makes its sample ``status=failed`` with the reason; the import goes on.
So does a member the scan refuses (``shards/tarscan.py``): an absolute name or one with ``..`` (which
would write outside the folder if extracted), a symlink or hard link, a repeated key or member, the
member a truncated tar breaks off in — each marks its own sample, not the one before it.

Sources and ``OUT`` may be URLs (``s3://bucket/v2d/``): a tar on object storage is downloaded once (into
the temp dir) to be scanned and probed, and where a link cannot exist (either side remote) the tar is
copied: uploaded whole in one PUT, or downloaded into a local ``OUT``.
"""
from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa

from reelforge import storage
from reelforge.shards.buckets import BucketTable
from reelforge.shards.index import build_index
from reelforge.shards.members import check_member, decode_image, probe_video
from reelforge.shards.spec import CAPTION_EXT, CLIPS_FILE, IMAGE_EXT, META_EXT, SHARDS_SUBDIR, VIDEO_EXT
from reelforge.shards.tarscan import scan_tar

IMPORT_PREFIX = "imported"


def _find_tars(sources: list[str | Path]) -> list[Path | str]:
    """The tars named by ``sources`` (tars or folders of them): ``Path``s, or URL strings on object storage."""
    tars: list[Path | str] = []
    for src in sources:
        p = storage.as_path_or_url(src)
        if str(p).endswith(".tar") and storage.exists(p) and not storage.isdir(p):
            tars.append(p)
        elif storage.isdir(p):
            tars += storage.glob(storage.join(p, "*.tar"))
        else:
            raise FileNotFoundError(f"{p}: not a .tar file or a folder of them")
    if not tars:
        raise FileNotFoundError(f"no .tar files in {[str(s) for s in sources]}")
    return tars


def _probe_sample(f, sample) -> dict:
    """Metadata of one foreign sample; ``status``/``reason`` say whether its members are what they claim."""
    row: dict = {"status": "ok", "reason": None}
    bad = [sample.error] if sample.error else []  # a refused, repeated or truncated member (see tarscan)
    for ext, m in sample.members.items():
        data = os.pread(f.fileno(), m.size, m.offset)
        try:
            if ext == VIDEO_EXT:
                meta = probe_video(data)
                row.update(meta, kind="video", duration_s=meta["num_frames"] / meta["fps"] if meta["fps"] else None)
            elif ext == IMAGE_EXT:
                check_member(ext, data)
                h, w = decode_image(data).shape[:2]
                row.update(width=w, height=h, kind="image")
            elif ext == META_EXT:
                obj = json.loads(data.decode("utf-8"))
                if isinstance(obj, dict):
                    row.update(url=obj.get("url"), source_status=obj.get("status"))
            elif ext in (CAPTION_EXT, "latent.npy"):
                check_member(ext, data)
        except (ValueError, UnicodeDecodeError) as exc:
            bad.append(f"bad member {m.name}: {exc}")
    if VIDEO_EXT not in sample.members and IMAGE_EXT not in sample.members:
        bad.append(f"no {VIDEO_EXT} or {IMAGE_EXT} member")
    if bad:
        row["status"], row["reason"] = "failed", "; ".join(bad)[:500]
    return row


def _place(local_tar: str, src: Path | str, dest: Path | str, copy: bool) -> None:
    """Put a source tar (its bytes at ``local_tar``) at ``dest``: a symlink where both are local and
    ``copy`` is off, else a copy that appears whole (tmp + rename on disk, one PUT on object storage)."""
    if not copy and not storage.is_remote(src) and not storage.is_remote(dest):
        os.symlink(Path(src).resolve(), dest)
        return
    with storage.staged_write(dest) as tmp:
        shutil.copyfile(local_tar, tmp)


def import_shards(sources: list[str | Path], out_dir: str | Path, copy: bool = False,
                  buckets: BucketTable | None = None) -> dict:
    """Link/copy foreign tars into ``out_dir``, probe every sample, write clips.parquet and the index.
    Sources and ``out_dir`` may be URLs; a remote side means the tars are copied (a link cannot point
    across stores)."""
    for src in sources:
        storage.check_input_url(src)
    storage.check_output_url(out_dir)   # before anything is read or written
    out = storage.as_path_or_url(out_dir)
    shard_dir = storage.join(out, SHARDS_SUBDIR)
    if storage.listdir(shard_dir):
        raise FileExistsError(f"{shard_dir} is not empty: import into a new dataset dir")
    tars = _find_tars(sources)
    storage.makedirs(shard_dir)
    rows, seen_ids = [], set()
    for n, src in enumerate(tars):
        name = f"{IMPORT_PREFIX}-{n:06d}.tar"
        with storage.local_source(src) as local:
            _place(local, src, storage.join(shard_dir, name), copy)
            scan = scan_tar(local)
            where = str(Path(src).resolve()) if isinstance(src, Path) else src
            with open(local, "rb") as f:
                for sample in scan.samples:
                    row = {"shard": name, "key": sample.key, "source_tar": where, "caption_source": "import",
                           **_probe_sample(f, sample)}
                    # keys repeat across runs of other tools: prefix with the shard only when they collide
                    clip_id = sample.key.replace("/", "_").replace(".", "_")
                    row["clip_id"] = clip_id if clip_id not in seen_ids else f"{Path(name).stem}_{clip_id}"
                    seen_ids.add(row["clip_id"])
                    rows.append(row)
    if not rows:
        raise ValueError(f"no samples in {[str(s) for s in sources]}")
    columns = list(dict.fromkeys(k for r in rows for k in r))  # from_pylist alone keeps the first row's keys
    storage.write_parquet(pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in rows]),
                          storage.join(out, CLIPS_FILE))
    index = build_index(out, buckets)
    return {"shards": len({r["shard"] for r in rows}), "samples": len(rows),
            "kinds": dict(Counter(r.get("kind") for r in rows if r["status"] == "ok")),
            "failed": sum(r["status"] == "failed" for r in rows), "index": str(index)}
