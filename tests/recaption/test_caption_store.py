"""The caption store: versions side by side, one row per clip and version, resume bookkeeping, the default
version, the shards' own captions as versions; export --caption-version and both readers picking a version."""
from __future__ import annotations

import json
import tarfile

import pyarrow.parquet as pq
import pytest
from caption_fixtures import make_dataset
from shard_fixtures import TEST_BUCKETS, clip_row, write_dataset

from reelforge.shards import captions as store
from reelforge.shards.export import export_shards
from reelforge.shards.index import build_index, read_index
from reelforge.shards.reader import ReaderConfig, VideoShardDataset
from reelforge.shards.stream import StreamConfig, stream_dataset


def _add(root, version, texts: dict, status="ok"):
    store.write_part(root, version, [store.caption_row(c, version, t if status == "ok" else None, status,
                                                       None if status == "ok" else "empty output")
                                     for c, t in texts.items()])


def test_parts_merge_to_one_row_per_clip_and_version(tmp_path):
    root = tmp_path / "d"
    _add(root, "v1", {"a": "first a", "b": None}, status="failed")
    _add(root, "v1", {"a": "good a"})
    _add(root, "v1", {"a": "later a"})           # a duplicate commit (a crash between merge and cleanup)
    _add(root, "v2", {"a": "other a", "b": "other b"})
    assert store.done_clip_ids(root, "v1") == {"a"}  # parts count before any merge: a kill loses nothing
    store.merge(root)
    rows = pq.read_table(root / store.CAPTIONS_FILE).to_pylist()
    assert sorted((r["version"], r["clip_id"], r["status"], r["text"]) for r in rows) == [
        ("v1", "a", "ok", "good a"), ("v1", "b", "failed", None), ("v2", "a", "ok", "other a"),
        ("v2", "b", "ok", "other b")]
    assert not list((root / store.PARTS_SUBDIR).glob("*/*.parquet"))
    assert store.default_version(root) == "v1"      # the first version a dataset gets
    assert store.versions(root) == {"v1": 1, "v2": 2}
    store.set_default_version(root, "v2")
    assert store.default_version(root) == "v2" and store.captions_for(root) == {"a": "other a", "b": "other b"}
    with pytest.raises(KeyError, match="no caption version 'v9'"):
        store.set_default_version(root, "v9")
    with pytest.raises(ValueError, match="bad caption version"):
        store.write_part(root, "a/b", [])


def test_shard_captions_become_versions(tmp_path):
    clips = [clip_row("a", 48, 32, 16, 8, caption_source="sidecar", captions={"alt": "alt text a"}),
             clip_row("b", 48, 32, 16, 8, caption_source="sidecar")]
    root = write_dataset(tmp_path / "d", clips)
    build_index(root)
    assert store.import_shard_captions(root) == {"sidecar": 2, "alt": 1}
    assert store.default_version(root) == "sidecar"   # what <key>.txt held stays the default
    assert store.captions_for(root, "alt") == {"a": "alt text a"}
    assert store.import_shard_captions(root) == {}    # pairs already stored are left alone
    more = write_dataset(tmp_path / "d", clips + [clip_row("c", 48, 32, 16, 8, caption_source="sidecar")])
    build_index(more)  # the dataset grew: only the new clip's caption is read
    assert store.import_shard_captions(more) == {"sidecar": 1} and len(store.captions_for(more, "sidecar")) == 3


def _txt_and_json(out):
    got = {}
    for tar in sorted((out / "shards").glob("*.tar")):
        with tarfile.open(tar) as tf:
            for m in tf:
                key, ext = m.name.split(".", 1)
                got.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return {k: (v.get("txt", b"").decode(), json.loads(v["json"])) for k, v in got.items()}


def test_export_writes_the_chosen_version(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    store.import_shard_captions(root)
    _add(root, "dense", {"c00": "dense zero", "c01": "dense one"})
    store.merge(root)
    out = tmp_path / "e1"
    summary = export_shards(root, out, buckets=TEST_BUCKETS, caption_version="dense")
    got = _txt_and_json(out)
    assert summary["missing_caption_version"] == 1   # c02 has no dense caption: no .txt, never another version
    assert got["c00"][0] == "dense zero" and got["c02"][0] == ""
    assert got["c00"][1]["captions"] == {"dense": "dense zero", "sidecar": "caption of c00"}
    assert got["c00"][1]["caption_source"] == "dense"
    assert store.default_version(out) == "dense" and store.versions(out) == {"dense": 2, "sidecar": 3}
    assert read_index(out).to_pylist()[0]["caption_versions"] == "dense,sidecar"
    export_shards(root, tmp_path / "e2", buckets=TEST_BUCKETS)
    default = _txt_and_json(tmp_path / "e2")
    assert default["c00"][0] == "caption of c00"     # the dataset's default version (sidecar)
    with pytest.raises(ValueError, match="no caption version 'nope'"):
        export_shards(root, tmp_path / "e3", buckets=TEST_BUCKETS, caption_version="nope")


def test_readers_take_the_version_from_the_store(tmp_path):
    root = make_dataset(tmp_path / "d", n=4)
    build_index(root, TEST_BUCKETS)
    store.import_shard_captions(root)
    _add(root, "dense", {"c00": "dense zero", "c01": "dense one", "c02": "dense two"})
    store.merge(root)
    want = {"c00": "dense zero", "c01": "dense one", "c02": "dense two", "c03": "caption of c03"}
    indexed = {c: t for b in VideoShardDataset(root, ReaderConfig(caption_version="dense"), 0, 1)
               for c, t in zip(b["clip_id"], b["caption"])}
    assert indexed == want                                          # c03 falls back to .txt
    strict = {c: t for b in VideoShardDataset(root, ReaderConfig(caption_version="dense", caption_fallback=False), 0, 1)
              for c, t in zip(b["clip_id"], b["caption"])}
    assert strict["c03"] == "" and strict["c00"] == "dense zero"
    streamed = {c: t for b in stream_dataset(StreamConfig(dataset_dir=str(root), caption_version="dense",
                                                          resampled=False, shuffle_buffer=1), 0, 1)
                for c, t in zip(b["clip_id"], b["caption"])}
    assert streamed == want


def test_caption_command_lists_and_sets_the_default(tmp_path, capsys):
    from reelforge.cli import main
    root = make_dataset(tmp_path / "d", n=2)
    assert main(["caption", str(root), "--list"]) == 0  # a fresh build: its sidecars are in the shards only
    assert json.loads(capsys.readouterr().out) == {"default": None, "versions": {},
                                                   "in_shards_not_imported": {"sidecar": 2}}
    store.import_shard_captions(root)
    _add(root, "dense", {"c00": "dense zero"})
    store.merge(root)
    assert main(["caption", str(root), "--list"]) == 0
    assert json.loads(capsys.readouterr().out) == {"default": "sidecar", "versions": {"dense": 1, "sidecar": 2}}
    assert main(["caption", str(root), "--make-default", "dense"]) == 0
    assert store.default_version(root) == "dense"
    assert main(["caption", str(root), "--set", "recaption.frames.num_frame=4"]) == 2  # the bad key is named
    assert "recaption.frames.num_frame" in capsys.readouterr().err
