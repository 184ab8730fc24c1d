"""The caption store: every caption version of every clip, side by side (``DIR/captions.parquet``).

One row per (clip, version): the text, whether it is usable (``status`` ok|failed, ``reason``), where it
came from (``source``: vlm, api, sidecar, import, json) and everything needed to reproduce it (``model``,
``template_id``, ``template_hash``, ``params`` as JSON, ``created_at``). A new captioning run adds a
version; nothing is overwritten. The shards' own captions (``<key>.txt``, written from sidecars or
imported alt-text, and the JSON ``captions`` object) enter the store as versions too
(``import_shard_captions``). The file's parquet metadata names the dataset's default version.

Writers commit rows in parts (``DIR/captions/parts/<version>/part-*.parquet``, each written atomically),
so a killed job loses only its uncommitted clips; ``merge`` folds the parts into ``captions.parquet``
(atomic replace, then the parts are removed; a crash in between leaves rows that the next merge dedups).
Per (clip, version) the store keeps one row: the first ``ok`` one, else the latest failure. One writer
per dataset at a time.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pyarrow as pa

from reelforge import storage
from reelforge.shards.spec import CAPTIONS_FIELD

CAPTIONS_FILE = "captions.parquet"
PARTS_SUBDIR = "captions/parts"
DEFAULT_KEY = b"reelforge.captions.default"
FORMAT_KEY = b"reelforge.format"
FORMAT_ID = "reelforge.captions.v1"

SCHEMA = pa.schema([
    ("clip_id", pa.string()), ("version", pa.string()), ("text", pa.string()),
    ("status", pa.string()), ("reason", pa.string()), ("source", pa.string()),
    ("model", pa.string()), ("template_id", pa.string()), ("template_hash", pa.string()),
    ("params", pa.string()), ("created_at", pa.float64()), ("attempts", pa.int64()), ("tokens", pa.int64()),
])


def caption_row(clip_id: str, version: str, text: str | None, status: str = "ok", reason: str | None = None,
                source: str = "vlm", model: str | None = None, template_id: str | None = None,
                template_hash: str | None = None, params: dict | None = None, attempts: int = 1,
                tokens: int | None = None) -> dict:
    return {"clip_id": clip_id, "version": version, "text": text, "status": status, "reason": reason,
            "source": source, "model": model, "template_id": template_id, "template_hash": template_hash,
            "params": json.dumps(params, sort_keys=True) if params is not None else None,
            "created_at": time.time(), "attempts": attempts, "tokens": tokens}


def _write_atomic(table: pa.Table, path: Path | str) -> Path | str:
    """Local: tmp + fsync + rename; object storage (a URL): one PUT (``storage.write_parquet``)."""
    storage.write_parquet(table, path)
    return path


def _check_version(version: str) -> None:
    if not version or "/" in version or "," in version or version.startswith("."):
        raise ValueError(f"bad caption version name {version!r} (no '/', ',' or leading '.')")


def write_part(dataset: str | Path, version: str, rows: list[dict]) -> Path | str | None:
    """Commit ``rows`` (``caption_row`` dicts of one version) as one atomically written part file."""
    _check_version(version)
    if not rows:
        return None
    name = f"part-{time.time_ns()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.parquet"
    return _write_atomic(pa.Table.from_pylist(rows, schema=SCHEMA),
                         storage.join(storage.as_path_or_url(dataset), *PARTS_SUBDIR.split("/"), version, name))


def _part_files(dataset: str | Path) -> list[str]:
    return storage.glob(storage.join(dataset, PARTS_SUBDIR, "*", "part-*.parquet"))


def _read_store(dataset: str | Path) -> tuple[pa.Table, dict]:
    path = storage.join(dataset, CAPTIONS_FILE)
    if not storage.exists(path):
        return SCHEMA.empty_table(), {}
    table = storage.read_parquet(path)
    return table.select(SCHEMA.names).cast(SCHEMA), dict(table.schema.metadata or {})


def _one_per_clip(rows: list[dict]) -> list[dict]:
    """Per (clip, version): the first ok row, else the latest failed one."""
    best: dict[tuple, dict] = {}
    for r in rows:
        k = (r["clip_id"], r["version"])
        cur = best.get(k)
        if cur is None or (cur["status"] != "ok" and (r["status"] == "ok" or r["created_at"] >= cur["created_at"])):
            best[k] = r
    return sorted(best.values(), key=lambda r: (r["version"], r["clip_id"]))


def all_rows(dataset: str | Path) -> list[dict]:
    """Every stored caption row, committed parts included (deduplicated per clip and version). Reads a
    local dataset or one on object storage (a URL)."""
    rows = _read_store(dataset)[0].to_pylist()
    for part in _part_files(dataset):
        rows += storage.read_parquet(part).cast(SCHEMA).to_pylist()
    return _one_per_clip(rows)


def merge(dataset: str | Path, default: str | None = None) -> Path | str:
    """Fold committed parts into ``captions.parquet`` (and set the default version when given). The
    dataset may be on object storage (a URL): the store is then one PUT, the parts deleted after it."""
    dataset = storage.as_path_or_url(dataset)
    _, meta = _read_store(dataset)
    parts = _part_files(dataset)
    rows = all_rows(dataset)
    meta[FORMAT_KEY] = FORMAT_ID.encode()
    if default is not None:
        _check_version(default)
        meta[DEFAULT_KEY] = default.encode()
    elif DEFAULT_KEY not in meta and rows:  # the first version a dataset gets is its default
        meta[DEFAULT_KEY] = min(rows, key=lambda r: r["created_at"])["version"].encode()
    table = pa.Table.from_pylist(rows, schema=SCHEMA).replace_schema_metadata(meta)
    path = _write_atomic(table, storage.join(dataset, CAPTIONS_FILE))
    for p in parts:
        storage.remove(p)
    return path


def has_store(dataset: str | Path) -> bool:
    return storage.exists(storage.join(dataset, CAPTIONS_FILE)) or bool(_part_files(dataset))


def default_version(dataset: str | Path) -> str | None:
    path = storage.join(dataset, CAPTIONS_FILE)
    if not storage.exists(path):
        return None
    value = (storage.read_parquet_schema(path).metadata or {}).get(DEFAULT_KEY)
    return value.decode() if value else None


def set_default_version(dataset: str | Path, version: str) -> None:
    if version not in versions(dataset):
        raise KeyError(f"no caption version {version!r} in {dataset} (have {sorted(versions(dataset))})")
    merge(dataset, default=version)


def versions(dataset: str | Path) -> dict[str, int]:
    """{version: number of ok captions}."""
    out: dict[str, int] = {}
    for r in all_rows(dataset):
        out.setdefault(r["version"], 0)
        out[r["version"]] += r["status"] == "ok"
    return out


def done_clip_ids(dataset: str | Path, version: str) -> set[str]:
    """Clips that already have an ok caption of ``version`` (merged or in committed parts)."""
    return {r["clip_id"] for r in all_rows(dataset) if r["version"] == version and r["status"] == "ok"}


def captions_for(dataset: str | Path, version: str | None = None) -> dict[str, str]:
    """{clip_id: text} of the ok captions of ``version`` (None: the default version; {} when none)."""
    version = version or default_version(dataset)
    if version is None:
        return {}
    return {r["clip_id"]: r["text"] for r in all_rows(dataset) if r["version"] == version and r["status"] == "ok"}


def captions_by_clip(dataset: str | Path) -> dict[str, dict[str, str]]:
    """{clip_id: {version: text}} of every ok caption."""
    out: dict[str, dict[str, str]] = {}
    for r in all_rows(dataset):
        if r["status"] == "ok":
            out.setdefault(r["clip_id"], {})[r["version"]] = r["text"]
    return out


def not_imported_counts(dataset: str | Path) -> dict[str, int]:
    """{version: clips} of the captions the shards carry that the store does not hold yet (imported as
    versions by the next caption run, :func:`import_shard_captions`): read from the index alone, so
    listing a fresh build's versions neither opens a tar nor writes to the dataset."""
    from reelforge.shards.index import read_index

    have = {(r["clip_id"], r["version"]) for r in all_rows(dataset)}
    out: dict[str, int] = {}
    for row in read_index(storage.as_path_or_url(dataset)).to_pylist():
        if row.get("status") == "failed":
            continue
        names = [row.get("caption_source") or "txt"] if row.get("txt_size") is not None else []
        names += [v for v in (row.get("caption_versions") or "").split(",") if v]
        for name in dict.fromkeys(names):
            if (row["clip_id"], name) not in have:
                out[name] = out.get(name, 0) + 1
    return out


def import_shard_captions(dataset: str | Path, index_rows: list[dict] | None = None) -> dict[str, int]:
    """Add the captions the shards carry as versions: ``<key>.txt`` under its ``caption_source``
    (``sidecar`` for build sidecars, ``import`` for other tools' alt-text, else ``txt``) and every entry
    of the JSON ``captions`` object under its own name. Only (clip, version) pairs the store lacks are
    read, so a call after new shards arrive adds their captions and costs nothing otherwise.
    Returns {version: rows added}."""
    from reelforge.shards.access import ShardFiles, open_member
    from reelforge.shards.index import read_index

    dataset = storage.as_path_or_url(dataset)
    rows = index_rows if index_rows is not None else read_index(dataset).to_pylist()
    have = {(r["clip_id"], r["version"]) for r in all_rows(dataset)}
    files, added, txt_versions = ShardFiles(), {}, {}
    out: list[dict] = []
    try:
        for row in rows:
            if row.get("status") == "failed":
                continue
            cid, found = row["clip_id"], {}
            txt_name = row.get("caption_source") or "txt"
            if row.get("txt_size") is not None and (cid, txt_name) not in have:
                try:
                    found[txt_name] = open_member(dataset, row, "txt", files).decode("utf-8")
                    txt_versions[txt_name] = txt_versions.get(txt_name, 0) + 1
                except (OSError, UnicodeDecodeError):
                    pass  # verify reports unreadable members; the store just lacks this caption
            json_names = [v for v in (row.get("caption_versions") or "").split(",") if v]
            if row.get("json_size") is not None and any((cid, v) not in have for v in json_names):
                try:
                    extra = json.loads(open_member(dataset, row, "json", files)).get(CAPTIONS_FIELD) or {}
                    found.update({k: v for k, v in extra.items() if isinstance(v, str) and (cid, k) not in have})
                except (OSError, ValueError):
                    pass
            for version, text in found.items():
                if not text.strip():
                    continue
                out.append(caption_row(cid, version, text.strip(),
                                       source="json" if version in json_names else (row.get("caption_source") or "txt")))
                added[version] = added.get(version, 0) + 1
    finally:
        files.close()
    for version in added:
        write_part(dataset, version, [r for r in out if r["version"] == version])
    if added:
        # what `<key>.txt` held stays what readers get by default, until someone names another default
        txt = max(txt_versions, key=txt_versions.get) if txt_versions else None
        merge(dataset, default=txt if default_version(dataset) is None and txt in added else None)
    return added


def store_captions(dataset: str | Path, version: str | None) -> dict[str, str] | None:
    """For the readers: {clip_id: text} of ``version`` when the dataset's caption store has that version,
    else None (the reader then takes the version from the JSON member's ``captions``, as without a store)."""
    if version is None or not has_store(dataset) or version not in versions(dataset):
        return None
    return captions_for(dataset, version)
