"""Publishing kept clips out of work shards, and the writer's guarantees publishing relies on."""
from __future__ import annotations

import json
import os
import time

import pytest
import webdataset as wds

from reelforge.shards import publish as publishing
from reelforge.shards.writer import ShardWriter, ShardWriterConfig


def _work(tmp_path, n=6):
    """Work shards with n samples: clip0..n-1, each mp4 + json (+ txt for even ones)."""
    work = tmp_path / "_work" / "shards"
    names = {}
    with ShardWriter(work, ShardWriterConfig(target_bytes=2048, prefix="work")) as w:
        for i in range(n):
            members = {"mp4": f"video-{i}".encode() * 50, "json": b'{"status": "ok"}'}
            if i % 2 == 0:
                members["txt"] = f"caption {i}".encode()
            names[f"clip{i}"] = w.write(f"clip{i}", members)
    return work, names


def _meta(row):
    return json.dumps({"clip_id": row["clip_id"], "status": "ok", "reason": None}).encode()


def test_publish_copies_only_the_given_clips_with_their_final_json(tmp_path):
    work, names = _work(tmp_path)
    rows = [{"clip_id": k, "work_shard": names[k]} for k in ("clip0", "clip3", "clip4")]
    res = publishing.publish(tmp_path, work, rows, _meta, ShardWriterConfig(target_bytes=1024), tmp_path / "_work")
    got = {s["__key__"]: s for s in wds.WebDataset(sorted(str(p) for p in (tmp_path / "shards").glob("*.tar")),
                                                     shardshuffle=False)}
    assert set(got) == {"clip0", "clip3", "clip4"} and set(res.shard_of) == set(got)
    assert got["clip3"]["mp4"] == b"video-3" * 50 and "txt" not in got["clip3"]  # bytes copied as they were
    assert got["clip4"]["txt"] == b"caption 4"
    assert json.loads(got["clip0"]["json"]) == {"clip_id": "clip0", "status": "ok", "reason": None}
    assert not (tmp_path / "shards.new").exists() and not (tmp_path / "shards.old").exists()
    # the same set again is not rewritten; a different set replaces the old one whole
    assert publishing.publish(tmp_path, work, rows, _meta, ShardWriterConfig(target_bytes=1024),
                              tmp_path / "_work").skipped
    first_names = set(res.shards)
    res = publishing.publish(tmp_path, work, rows[:1], _meta, ShardWriterConfig(target_bytes=1024),
                             tmp_path / "_work")
    # numbered after the previous set: a name never comes back with other content
    assert not first_names & set(res.shards) and {p.name for p in (tmp_path / "shards").glob("*")} == set(res.shards)
    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (tmp_path / "shards").glob("*.tar")),
                                                   shardshuffle=False)]
    assert keys == ["clip0"]


def test_a_clip_missing_from_the_work_shards_is_reported_not_fatal(tmp_path):
    work, names = _work(tmp_path)
    rows = [{"clip_id": "clip1", "work_shard": names["clip1"]}, {"clip_id": "clip9", "work_shard": names["clip1"]},
            {"clip_id": "clip2", "work_shard": "work-000099.tar"}]
    res = publishing.publish(tmp_path, work, rows, _meta, ShardWriterConfig(), tmp_path / "_work")
    assert set(res.shard_of) == {"clip1"}
    assert res.missing["clip9"].startswith("publish: no complete sample clip9 in work shard")
    assert res.missing["clip2"].startswith("publish: work shard") and res.missing["clip2"].endswith("is missing")
    keys = [s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (tmp_path / "shards").glob("*.tar")),
                                                   shardshuffle=False)]
    assert keys == ["clip1"]


def test_a_failed_publish_keeps_the_current_set(tmp_path, monkeypatch):
    work, names = _work(tmp_path)
    rows = [{"clip_id": k, "work_shard": names[k]} for k in ("clip1", "clip2")]
    publishing.publish(tmp_path, work, rows[:1], _meta, ShardWriterConfig(), tmp_path / "_work")
    before = {p.name: p.read_bytes() for p in (tmp_path / "shards").glob("*.tar")}

    def full_disk(self, key, members):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(publishing.ShardWriter, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        publishing.publish(tmp_path, work, rows, _meta, ShardWriterConfig(), tmp_path / "_work")
    assert {p.name: p.read_bytes() for p in (tmp_path / "shards").glob("*.tar")} == before
    assert not (tmp_path / "shards.new").exists()


@pytest.mark.parametrize("killed_at", ["staged", "between_renames", "before_cleanup"])
def test_recover_leaves_one_whole_set(tmp_path, killed_at):
    live, new, old = tmp_path / "shards", tmp_path / "shards.new", tmp_path / "shards.old"
    live.mkdir()
    (live / "shard-000000.tar").write_bytes(b"old set")
    new.mkdir()
    (new / "shard-000000.tar").write_bytes(b"new set")
    if killed_at in ("between_renames", "before_cleanup"):
        os.replace(live, old)
    if killed_at == "before_cleanup":
        os.replace(new, live)
    publishing.recover(tmp_path)
    assert not new.exists() and not old.exists()
    want = b"new set" if killed_at == "before_cleanup" else b"old set"
    assert (live / "shard-000000.tar").read_bytes() == want


def test_writer_refuses_a_key_it_already_wrote(tmp_path):
    w = ShardWriter(tmp_path, ShardWriterConfig(target_bytes=1024), known_keys={"earlier"})
    w.write("a", {"json": b"{}"})
    w.flush()
    with pytest.raises(ValueError, match="'a' was already written"):
        w.write("a", {"json": b"{}"})
    with pytest.raises(ValueError, match="'earlier' was already written"):
        w.write("earlier", {"json": b"{}"})
    w.close()


def test_writer_commits_an_open_shard_once_it_is_old(tmp_path):
    committed = []
    w = ShardWriter(tmp_path, ShardWriterConfig(target_bytes=10**9, max_open_seconds=0.2), on_commit=committed.append)
    w.write("a", {"json": b"{}"})
    assert not committed  # young and far from the target size: still open
    time.sleep(0.25)
    w.write("b", {"json": b"{}"})
    assert [s.keys for s in committed] == [["a", "b"]] and (tmp_path / committed[0].name).is_file()
    w.close()
