from __future__ import annotations

import shutil

import pytest

from reelforge.shards.cli import main
from reelforge.shards.index import build_index
from reelforge.shards.stats import dataset_stats
from reelforge.shards.verify import verify_dataset

from shard_fixtures import TEST_BUCKETS, clip_row, write_dataset


@pytest.fixture()
def small(tmp_path):
    root = write_dataset(tmp_path / "d", [clip_row(f"c{i}", 48, 48, 12, 8) for i in range(5)], shard_sizes=[2, 3])
    build_index(root, TEST_BUCKETS)
    return root


def test_verify_passes_on_good_dataset(small, capsys):
    report = verify_dataset(small)
    assert report.ok, report.errors
    assert (report.shards, report.samples, report.members) == (2, 5, 15)
    assert main(["shards", "verify", str(small)]) == 0


def test_verify_catches_truncated_tar(small, capsys):
    from reelforge.shards.index import read_index
    last = read_index(small).to_pylist()[-1]  # cut the shard inside its last video
    tar = small / "shards" / last["shard"]
    tar.write_bytes(tar.read_bytes()[: last["mp4_offset"] + last["mp4_size"] // 2])
    assert not verify_dataset(small).ok
    assert main(["shards", "verify", str(small)]) == 1
    assert "truncated" in capsys.readouterr().err


def test_verify_catches_count_mismatch_and_corrupt_member(small, tmp_path):
    other = tmp_path / "o"
    shutil.copytree(small, other)
    (other / "shards" / "shard-000000.tar").unlink()
    errors = verify_dataset(other).errors
    assert any("missing on disk" in e for e in errors)
    # flip bytes inside an mp4 payload (same size: tar structure intact, decode fails)
    from reelforge.shards.index import read_index
    row = read_index(small).to_pylist()[0]
    tar = small / "shards" / row["shard"]
    data = bytearray(tar.read_bytes())
    data[row["mp4_offset"]:row["mp4_offset"] + row["mp4_size"]] = b"\x00" * row["mp4_size"]
    tar.write_bytes(bytes(data))
    errors = verify_dataset(small).errors
    assert any(row["key"] + ".mp4" in e for e in errors)


def test_stats(tiny_dataset, capsys):
    s = dataset_stats(tiny_dataset)
    assert s["samples"] == 29 and s["status"] == {"ok": 29}
    assert s["buckets"]["sq"] == {"samples": 12, "batch_size": 2, "batches": 6, "full_batches": 6}
    assert s["buckets"]["img"]["batches"] == 2
    assert s["buckets"]["wide"] == {"samples": 9, "batch_size": 3, "batches": 3, "full_batches": 3}
    assert s["numeric"]["aesthetic"]["mean"] == pytest.approx(5.0)
    assert main(["shards", "stats", str(tiny_dataset), "--json"]) == 0
    assert '"samples": 29' in capsys.readouterr().out
