import tarfile

import pytest
import webdataset as wds

from reelforge.shards.writer import ShardWriter, ShardWriterConfig


def test_target_size_atomic_names_and_commit_callback(tmp_path):
    committed = []
    w = ShardWriter(tmp_path, ShardWriterConfig(target_bytes=4096, prefix="shard"), on_commit=committed.append)
    for i in range(10):
        w.write(f"clip{i:03d}", {"mp4": bytes(1500), "json": b'{"i": %d}' % i})
        # never a half-written tar under a final name
        for p in tmp_path.glob("*.tar"):
            assert p.name in {c.name for c in committed}
    w.close()
    names = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert names == sorted(c.name for c in committed) and len(names) >= 3
    assert not list(tmp_path.glob("*.tmp"))
    keys = [s["__key__"] for s in wds.WebDataset([str(tmp_path / n) for n in names], shardshuffle=False)]
    assert keys == [f"clip{i:03d}" for i in range(10)]
    with tarfile.open(tmp_path / names[0]) as tf:
        assert tf.getnames()[:2] == ["clip000.mp4", "clip000.json"]


def test_failure_mid_shard_leaves_nothing_and_resume_continues_numbering(tmp_path):
    with pytest.raises(RuntimeError):
        with ShardWriter(tmp_path, ShardWriterConfig(target_bytes=10_000)) as w:
            w.write("a", {"mp4": bytes(20_000)})   # committed (over target)
            w.write("b", {"mp4": bytes(100)})      # open shard
            raise RuntimeError("killed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard-000000.tar"]
    w2 = ShardWriter(tmp_path, ShardWriterConfig(target_bytes=10_000))
    assert w2.write("c", {"mp4": b"x"}) == "shard-000001.tar"
    w2.close()


def test_bad_keys_rejected(tmp_path):
    w = ShardWriter(tmp_path)
    with pytest.raises(ValueError):
        w.write("a.b", {"mp4": b""})
