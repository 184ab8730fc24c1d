"""``reelforge shards verify``: the shards and the index agree, and every member decodes.

Errors (non-zero exit): a tar that is truncated or unreadable, a shard on disk missing from the index or
the other way round, sample keys/counts/offsets that differ from the index, and a member that fails to
decode in a sample the index does not already mark ``failed``, a key that appears twice in the dataset, and
a ``<key>.json`` whose ``status`` differs from the index's (a build's JSON states the clip's final status;
imported JSON's ``success`` counts as ``ok``; JSON without a ``status`` is not compared). Samples recorded as failed (e.g. bad
members found at import) are counted, not errors: the reader never serves them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from reelforge import storage
from reelforge.shards.access import ShardFiles
from reelforge.shards.index import dataset_root, read_index, resolve_index
from reelforge.shards.members import check_member
from reelforge.shards.spec import INDEXED_EXTS, SHARDS_SUBDIR, member_column
from reelforge.shards.tarscan import scan_tar


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    members: int = 0
    known_failed: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def verify_dataset(dataset: str | Path, decode: bool = True, full_decode: bool = True,
                   max_errors: int = 1000) -> VerifyReport:
    """Check ``dataset`` (a dataset dir or an index file, local or a URL such as ``s3://b/ds``).
    ``full_decode`` decodes every video frame."""
    storage.check_input_url(dataset)  # an unknown scheme or an unreachable bucket: one line, before any read
    index_path = resolve_index(dataset)
    report = VerifyReport()
    index = read_index(index_path)
    shard_dir = storage.join(dataset_root(index_path), SHARDS_SUBDIR)
    by_shard: dict[str, list[dict]] = {}
    for row in index.to_pylist():
        by_shard.setdefault(row["shard"], []).append(row)
    on_disk = {storage.basename(p) for p in storage.glob(storage.join(shard_dir, "*.tar"))}
    for name in sorted(on_disk - set(by_shard)):
        report.errors.append(f"{name}: on disk but not in the index")
    for name in sorted(set(by_shard) - on_disk):
        report.errors.append(f"{name}: in the index ({len(by_shard[name])} samples) but missing on disk")
    keys_seen: dict[str, str] = {}
    for name in sorted(set(by_shard) & on_disk):
        report.shards += 1
        # a shard on object storage is fetched once (one GET) and checked from the local copy
        with storage.local_source(storage.join(shard_dir, name)) as local:
            _verify_shard(Path(local), by_shard[name], report, decode, full_decode, keys_seen)
        if len(report.errors) >= max_errors:
            report.errors.append(f"stopped after {max_errors} errors")
            break
    return report


def _verify_shard(path: Path, rows: list[dict], report: VerifyReport, decode: bool, full: bool,
                  keys_seen: dict[str, str]) -> None:
    scan = scan_tar(path)
    if scan.error:
        report.errors.append(f"{path.name}: {scan.error}")
    for s in scan.samples:
        if s.key in keys_seen:
            report.errors.append(f"{path.name}: key {s.key} also in {keys_seen[s.key]}")
        keys_seen.setdefault(s.key, path.name)
    tar_keys = [s.key for s in scan.samples]
    idx_keys = [r["key"] for r in rows]
    if len(tar_keys) != len(idx_keys) or set(tar_keys) != set(idx_keys):
        missing = sorted(set(idx_keys) - set(tar_keys))[:5]
        extra = sorted(set(tar_keys) - set(idx_keys))[:5]
        report.errors.append(f"{path.name}: {len(tar_keys)} samples in tar vs {len(idx_keys)} in index"
                             f" (missing from tar: {missing}, not in index: {extra})")
    rows_by_key = {r["key"]: r for r in rows}
    files = ShardFiles(max_open=1)
    try:
        for sample in scan.samples:
            row = rows_by_key.get(sample.key)
            if row is None:
                continue
            report.samples += 1
            known_failed = row["status"] == "failed"
            report.known_failed += known_failed
            for ext in INDEXED_EXTS:
                m = sample.members.get(ext)
                col = member_column(ext)
                if (m.offset if m else None, m.size if m else None) != (row[f"{col}_offset"], row[f"{col}_size"]):
                    report.errors.append(f"{path.name}:{sample.key}.{ext}: offset/size differ from the index")
                    continue
                if m is None:
                    continue
                report.members += 1
                try:
                    data = files.pread(path, m.size, m.offset)  # = the index's offset/size (checked above)
                except OSError as exc:
                    report.errors.append(f"{path.name}:{m.name}: {exc}")
                    continue
                if decode and not known_failed:
                    try:
                        check_member(ext, data, full=full)
                    except ValueError as exc:
                        report.errors.append(f"{path.name}:{m.name}: {exc}")
                        continue
                if ext == "json" and not known_failed:
                    _check_json_status(path.name, m.name, data, row, report)
    finally:
        files.close()


def _check_json_status(shard: str, name: str, data: bytes, row: dict, report: VerifyReport) -> None:
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return  # reported by check_member when decoding; the index marks such samples failed
    if not isinstance(meta, dict) or "status" not in meta:
        return
    # video2dataset/img2dataset write "success" for what we call "ok"
    said = "ok" if meta["status"] == "success" else meta["status"]
    if said != row["status"]:
        report.errors.append(f"{shard}:{name}: JSON says status {meta['status']!r}, the index {row['status']!r}")
