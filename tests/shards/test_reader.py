from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from reelforge.shards.buckets import BucketConfig, BucketTable
from reelforge.shards.index import build_index, read_index
from reelforge.shards.members import decode_image
from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset
from reelforge.shards.tarscan import read_member
from reelforge.shards.transform import image_to_bucket

from shard_fixtures import TEST_BUCKETS, clip_row, make_frames, write_dataset

# 4 images dropped: sq 6 + wide 3 + img 1 = 10 batches, which 2 ranks split evenly with no padding
EVEN = "clip_id NOT IN ('im04', 'im05', 'im06', 'im07')"


def run_epoch(root, cfg, world_size, workers, seed=0, epoch=0):
    """Per rank: the list of batches one epoch yields through a ShardLoader."""
    out = []
    for rank in range(world_size):
        ds = VideoShardDataset(root, cfg, rank, world_size, seed)
        ds.set_epoch(epoch)
        out.append(list(ShardLoader(ds, num_workers=workers)))
    return out


def test_every_sample_exactly_once_2_ranks_2_workers(tiny_dataset):
    per_rank = run_epoch(tiny_dataset, ReaderConfig(where=EVEN), world_size=2, workers=2)
    assert [len(b) for b in per_rank] == [5, 5]
    seen = Counter(c for batches in per_rank for b in batches for c in b["clip_id"])
    expected = {r["clip_id"] for r in read_index(tiny_dataset).to_pylist()} - {"im04", "im05", "im06", "im07"}
    assert set(seen) == expected and set(seen.values()) == {1}
    for batches in per_rank:
        for b in batches:
            bucket = TEST_BUCKETS[b["bucket"]]
            assert b["video"].shape == (bucket.batch_size, bucket.num_frames, 3, bucket.height, bucket.width)
            assert b["video"].dtype == torch.uint8 and not b["failed"]
            assert b["caption"] == [f"caption of {c}" for c in b["clip_id"]]
            assert {c[:2] for c in b["clip_id"]} == {{"sq": "sq", "wide": "wd", "img": "im"}[b["bucket"]]}


@pytest.mark.parametrize("world_size", [2, 3, 4])
@pytest.mark.parametrize("remainder", ["pad", "drop"])
def test_equal_batch_counts_with_uneven_shards(tiny_dataset, world_size, remainder):
    # tiny_dataset's shards hold 1, 9, 3, 2, 11 and 3 samples; buckets 12/2, 9/3, 8/4 samples/batch size
    cfg = ReaderConfig(remainder=remainder)
    counts = {len(VideoShardDataset(tiny_dataset, cfg, r, world_size).plan()) for r in range(world_size)}
    assert len(counts) == 1
    plans = [VideoShardDataset(tiny_dataset, cfg, r, world_size).plan() for r in range(world_size)]
    served = Counter(i for p in plans for b in p for i in b.rows)
    if remainder == "pad":  # every sample at least once; repeats only to fill batches / the last round
        assert len(served) == 29
    else:
        assert max(served.values()) == 1


def test_equal_batches_through_loader_when_a_bucket_is_smaller_than_its_batch(tmp_path):
    clips = [clip_row(f"a{i}", 40, 40, 12, 8) for i in range(5)] + [clip_row("w0", 64, 40, 12, 16)]
    root = write_dataset(tmp_path / "d", clips, shard_sizes=[4, 1, 1])
    build_index(root, TEST_BUCKETS)  # 'sq' 5 samples / bs 2, 'wide' 1 sample / bs 3
    per_rank = run_epoch(root, ReaderConfig(), world_size=3, workers=2)
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == 2
    seen = {c for batches in per_rank for b in batches for c in b["clip_id"]}
    assert seen == {"a0", "a1", "a2", "a3", "a4", "w0"}


def test_deterministic_and_reshuffled_per_epoch(tiny_dataset):
    def ids(seed, epoch, workers):
        return [b["clip_id"] for b in run_epoch(tiny_dataset, ReaderConfig(), 1, workers, seed, epoch)[0]]
    a = run_epoch(tiny_dataset, ReaderConfig(), 1, 2, seed=3)[0]
    b = run_epoch(tiny_dataset, ReaderConfig(), 1, 0, seed=3)[0]
    assert [x["clip_id"] for x in a] == [x["clip_id"] for x in b]  # workers do not change the order
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    assert ids(3, 1, 0) != ids(3, 0, 0)
    assert ids(4, 0, 0) != ids(3, 0, 0)
    assert sorted(sum(ids(3, 1, 0), [])) == sorted(sum(ids(3, 0, 0), []))


@pytest.mark.parametrize("workers", [0, 2])
def test_mid_epoch_resume_is_equivalent(tiny_dataset, workers):
    cfg = ReaderConfig()
    full = run_epoch(tiny_dataset, cfg, 2, workers, seed=7)[1] + run_epoch(tiny_dataset, cfg, 2, workers, 7, 1)[1]

    ds = VideoShardDataset(tiny_dataset, cfg, rank=1, world_size=2, seed=7)
    loader = ShardLoader(ds, num_workers=workers)
    first = []
    for batch in loader:  # stop mid-epoch while workers have prefetched ahead
        first.append(batch)
        if len(first) == 4:
            break
    state = json.loads(json.dumps(loader.state_dict()))  # checkpoints store it as plain data
    assert state["position"] == 4 and state["epoch"] == 0

    resumed = VideoShardDataset(tiny_dataset, cfg, rank=1, world_size=2, seed=7)
    loader2 = ShardLoader(resumed, num_workers=workers)
    loader2.load_state_dict(state)
    rest = list(loader2)
    rest += list(loader2)  # the next iter() runs epoch 1
    got = first + rest
    assert [b["clip_id"] for b in got] == [b["clip_id"] for b in full]
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(got, full))
    assert got[-1]["epoch"] == 1

    # a trainer that calls set_epoch(start_epoch) after loading the state still resumes mid-epoch
    again = VideoShardDataset(tiny_dataset, cfg, rank=1, world_size=2, seed=7)
    again.load_state_dict(state)
    again.set_epoch(0)
    assert [b["clip_id"] for b in again] == [b["clip_id"] for b in full[4:len(again)]]


def test_state_from_another_world_size_is_refused(tiny_dataset):
    state = VideoShardDataset(tiny_dataset, ReaderConfig(), 0, 2).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        VideoShardDataset(tiny_dataset, ReaderConfig(), 0, 3).load_state_dict(state)


def test_pixels_follow_the_crop_policy(tiny_dataset):
    ds = VideoShardDataset(tiny_dataset, ReaderConfig(kinds=["image"], random_offset=False), 0, 1)
    batch = next(iter(ds))
    rows = {r["clip_id"]: r for r in read_index(tiny_dataset).to_pylist()}
    r = rows[batch["clip_id"][0]]
    jpg = read_member(tiny_dataset / "shards" / r["shard"], r["jpg_offset"], r["jpg_size"])
    expected = image_to_bucket(jpg, TEST_BUCKETS["img"])  # (1, 32, 32, 3)
    assert torch.equal(batch["video"][0].permute(0, 2, 3, 1), torch.from_numpy(expected))
    assert decode_image(jpg).shape == (40, 40, 3)
    # video: the clip's flat colour survives decode + resize + crop (H.264 is lossy: tolerance)
    vds = VideoShardDataset(tiny_dataset, ReaderConfig(kinds=["video"], where="bucket = 'wide'"), 0, 1)
    vb = next(iter(vds))
    idx = int(vb["clip_id"][0][2:]) + 12  # conftest seeds a clip's frames with its sample number
    colour = make_frames(idx, 1, 64, 40)[0, -1, 0]
    got = vb["video"][0, 0, :, -1, 0].numpy().astype(int)
    assert np.abs(got - colour.astype(int)).max() <= 12


def test_float_output_and_caption_versions(tmp_path):
    clips = [clip_row("a", 40, 40, 12, 8, captions={"vlm": "a long caption"}), clip_row("b", 40, 40, 12, 8)]
    root = write_dataset(tmp_path / "d", clips)
    build_index(root, TEST_BUCKETS)
    batch = next(iter(VideoShardDataset(root, ReaderConfig(caption_version="vlm", dtype="float"), 0, 1)))
    assert batch["video"].dtype == torch.float32 and -1.0 <= batch["video"].min() <= batch["video"].max() <= 1.0
    assert dict(zip(batch["clip_id"], batch["caption"])) == {"a": "a long caption", "b": "caption of b"}
    strict = next(iter(VideoShardDataset(root, ReaderConfig(caption_version="vlm", caption_fallback=False), 0, 1)))
    assert dict(zip(strict["clip_id"], strict["caption"])) == {"a": "a long caption", "b": ""}


def test_undecodable_sample_keeps_the_batch_shape(tmp_path):
    clips = [clip_row(f"a{i}", 40, 40, 12, 8) for i in range(4)]
    root = write_dataset(tmp_path / "d", clips)
    build_index(root, TEST_BUCKETS)
    row = read_index(root).to_pylist()[1]
    tar = root / "shards" / row["shard"]
    data = bytearray(tar.read_bytes())
    data[row["mp4_offset"]:row["mp4_offset"] + row["mp4_size"]] = b"\x00" * row["mp4_size"]
    tar.write_bytes(bytes(data))
    batches = list(VideoShardDataset(root, ReaderConfig(), 0, 1))
    assert len(batches) == 2 and all(b["video"].shape == (2, 4, 3, 32, 32) for b in batches)
    assert sum((b["failed"] for b in batches), []) == ["a1"]
    assert "a1" not in sum((b["clip_id"] for b in batches), [])


def test_reader_config_validation():
    with pytest.raises(ValueError, match="kinds"):
        ReaderConfig(kinds=["audio"])
    with pytest.raises(ValueError, match="remainder"):
        ReaderConfig(remainder="wrap")
    with pytest.raises(ValueError, match="unique"):
        BucketTable(buckets=[BucketConfig(32, 32, 4, 2, "x"), BucketConfig(16, 16, 4, 2, "x")])
    with pytest.raises(ValueError, match="even"):
        BucketConfig(33, 32, 4, 2)


def test_reader_config_loads_from_yaml_tree():
    import yaml

    from reelforge.config import ConfigError, from_dict
    tree = {"buckets": yaml.safe_load(open(Path(__file__).resolve().parents[2] / "configs/buckets/default.yaml")),
            "where": "aesthetic >= 5", "remainder": "drop"}
    cfg = from_dict(ReaderConfig, tree)
    assert isinstance(cfg.buckets, BucketTable) and cfg.buckets["144x256x17"].batch_size == 7
    with pytest.raises(ConfigError, match="remainder"):
        from_dict(ReaderConfig, {"remainder": "wrap"})
