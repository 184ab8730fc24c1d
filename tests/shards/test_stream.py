"""The streaming (WebDataset pipeline) reader: equal batches per rank, determinism, resume, bad members."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from reelforge.config import ConfigError, from_dict
from reelforge.shards import loader as loader_mod
from reelforge.shards.index import build_index, read_index
from reelforge.shards.reader import ReaderConfig, VideoShardDataset
from reelforge.shards.stream import StreamConfig, StreamLoader, shard_name, stream_dataset

from shard_fixtures import TEST_BUCKETS, clip_row, encode_mp4, make_frames, write_dataset

PREFIX = {"sq": "sq", "wide": "wd", "img": "im"}


def config(root, **kw) -> StreamConfig:
    kw = {"shuffle_buffer": 8, "shuffle_initial": 4, **kw}
    return StreamConfig(dataset_dir=str(root), **kw)


def run(cfg, rank=0, world_size=1, workers=0, epoch=0) -> list[dict]:
    ds = stream_dataset(cfg, rank, world_size)
    ds.set_epoch(epoch)
    return list(StreamLoader(ds, num_workers=workers))


def ids(batches) -> list[list[str]]:
    return [b["clip_id"] for b in batches]


@pytest.mark.parametrize("workers", [0, 2])
def test_equal_batches_per_rank_with_uneven_shards(tiny_dataset, workers):
    # shards of 1, 9, 3, 2, 11 and 3 samples; one pass of the index = sq 6 + wide 3 + img 2 = 11 batches
    per_rank = [run(config(tiny_dataset), r, 2, workers) for r in range(2)]
    assert [len(b) for b in per_rank] == [6, 6] and len(stream_dataset(config(tiny_dataset), 0, 2)) == 6
    assert ids(per_rank[0]) != ids(per_rank[1])  # each rank draws its own shards
    odd = [run(config(tiny_dataset, batches_per_epoch=5), r, 2, workers) for r in range(2)]
    assert [len(b) for b in odd] == [5, 5]  # 5 over 2 workers: shares 3 + 2, still exact
    for batches in per_rank + odd:
        assert [b["position"] for b in batches] == list(range(len(batches)))
        for b in batches:
            bucket = TEST_BUCKETS[b["bucket"]]
            assert b["video"].shape == (bucket.batch_size, bucket.num_frames, 3, bucket.height, bucket.width)
            assert b["video"].dtype == torch.uint8 and not b["failed"]
            assert {c[:2] for c in b["clip_id"]} == {PREFIX[b["bucket"]]}  # one bucket per batch
            assert b["caption"] == [f"caption of {c}" for c in b["clip_id"]]


def test_joint_image_video_and_index_status(tmp_path):
    clips = [clip_row(f"sq{i}", 40, 40, 12, 8) for i in range(4)] + [clip_row("sqf", 40, 40, 12, 8, status="filtered")]
    images = [{"clip_id": f"im{i}", "width": 40, "height": 40} for i in range(4)]
    root = write_dataset(tmp_path / "d", clips, shard_sizes=[2, 3], images=images)
    build_index(root, TEST_BUCKETS)
    batches = run(config(root, batches_per_epoch=24))
    assert {b["bucket"] for b in batches} == {"sq", "img"}
    seen = {c for b in batches for c in b["clip_id"]}
    assert seen == {"sq0", "sq1", "sq2", "sq3", "im0", "im1", "im2", "im3"}  # the index's status=filtered is out
    video_only = run(config(root, batches_per_epoch=4, kinds=["video"], where="clip_id != 'sq0'"))
    assert {c for b in video_only for c in b["clip_id"]} == {"sq1", "sq2", "sq3"}


def test_same_pixels_and_captions_as_the_indexed_reader(tmp_path):
    clips = [clip_row(f"c{i}", 40 + 8 * (i % 2), 40, 20, 8, captions={"vlm": f"long {i}"} if i % 3 else {})
             for i in range(6)]
    root = write_dataset(tmp_path / "d", clips, shard_sizes=[2, 4])
    build_index(root, TEST_BUCKETS)
    options = {"caption_version": "vlm", "dtype": "float"}
    indexed = {}
    for b in VideoShardDataset(root, ReaderConfig(**options), 0, 1, seed=5):
        indexed.update({c: (v, t) for c, v, t in zip(b["clip_id"], b["video"], b["caption"])})
    streamed = run(config(root, seed=5, batches_per_epoch=6, **options))
    assert sum(len(b["clip_id"]) for b in streamed) == 12
    for b in streamed:  # same temporal offset per (seed, epoch, clip), same resize, crop and caption choice
        assert b["video"].dtype == torch.float32
        for c, v, t in zip(b["clip_id"], b["video"], b["caption"]):
            assert torch.equal(v, indexed[c][0]) and t == indexed[c][1]
    assert {t for v, t in indexed.values()} == {"long 1", "long 2", "caption of c0", "long 4", "long 5", "caption of c3"}


@pytest.mark.parametrize("workers", [0, 2])
def test_deterministic_per_seed_and_epoch(tiny_dataset, workers):
    a = run(config(tiny_dataset, seed=3), 1, 2, workers)
    b = run(config(tiny_dataset, seed=3), 1, 2, workers)
    assert ids(a) == ids(b) and all(torch.equal(x["video"], y["video"]) for x, y in zip(a, b))
    assert ids(run(config(tiny_dataset, seed=3), 1, 2, workers, epoch=1)) != ids(a)
    assert ids(run(config(tiny_dataset, seed=4), 1, 2, workers)) != ids(a)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_the_same_stream(tiny_dataset, workers):
    cfg = config(tiny_dataset, seed=7)
    loader = StreamLoader(stream_dataset(cfg, 1, 2), num_workers=workers)
    full = list(loader) + list(loader)  # the second iter() runs epoch 1
    assert [b["epoch"] for b in full] == [0] * 6 + [1] * 6

    loader = StreamLoader(stream_dataset(cfg, 1, 2), num_workers=workers)
    first = []
    for batch in loader:  # stop at an odd position: with 2 workers the resumed epoch starts on worker 1
        first.append(batch)
        if len(first) == 3:
            break
    state = json.loads(json.dumps(loader.state_dict()))  # checkpoints store plain data
    assert (state["epoch"], state["position"], state["streams"]) == (0, 3, max(1, workers))

    resumed = StreamLoader(stream_dataset(cfg, 1, 2), num_workers=workers)
    resumed.load_state_dict(state)
    resumed.dataset.set_epoch(0)  # a trainer calling set_epoch(start_epoch) keeps the position
    got = first + list(resumed) + list(resumed)
    assert ids(got) == ids(full) and [b["position"] for b in got] == [b["position"] for b in full]
    assert all(torch.equal(x["video"], y["video"]) for x, y in zip(got, full))

    other = stream_dataset(cfg, 1, 2)
    other.num_workers = 3  # as StreamLoader(num_workers=3) sets it
    with pytest.raises(ValueError, match="worker streams"):  # mid-epoch the stream depends on the worker count
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="seed"):
        StreamLoader(stream_dataset(config(tiny_dataset, seed=8), 1, 2), num_workers=workers).load_state_dict(state)


def test_resume_skips_consumed_batches_without_decoding(tiny_dataset, monkeypatch):
    cfg = config(tiny_dataset, seed=7)
    full = run(cfg, 0, 2)
    decoded = []
    for name in ("video_to_bucket", "image_to_bucket"):  # decoding lives in the shared loader core
        real = getattr(loader_mod, name)
        monkeypatch.setattr(loader_mod, name, lambda *a, _real=real, **k: decoded.append(1) or _real(*a, **k))
    ds = stream_dataset(cfg, 0, 2)
    ds.load_state_dict({**ds.state_dict(), "position": 3})
    rest = list(StreamLoader(ds))
    assert ids(rest) == ids(full[3:])
    assert len(decoded) == sum(len(b["clip_id"]) for b in full[3:])


def test_plain_dataloader_with_two_workers(tiny_dataset):
    cfg = config(tiny_dataset, batches_per_epoch=7)
    plain = list(DataLoader(stream_dataset(cfg, 0, 2), batch_size=None, num_workers=2))
    assert [b["position"] for b in plain] == list(range(7))  # round-robin over workers = position order
    assert ids(plain) == ids(run(cfg, 0, 2, workers=2))


def test_single_pass_serves_every_sample_once(tiny_dataset):
    cfg = config(tiny_dataset, resampled=False)
    per_rank = [run(cfg, r, 2, workers=2) for r in range(2)]
    seen = Counter(c for batches in per_rank for b in batches for c in b["clip_id"])
    expected = {r["clip_id"] for r in read_index(tiny_dataset).to_pylist()}
    assert set(seen) == expected and set(seen.values()) == {1}
    assert all(len({c[:2] for c in b["clip_id"]}) == 1 for batches in per_rank for b in batches)
    ds = stream_dataset(cfg, 0, 2)
    with pytest.raises(TypeError):
        len(ds)
    with pytest.raises(ValueError, match="mid-pass"):
        ds.load_state_dict({**ds.state_dict(), "position": 2})


def test_shards_behind_pipe_and_fsspec_urls(tiny_dataset):
    import fsspec
    tars = sorted((tiny_dataset / "shards").glob("*.tar"))
    assert [t.name for t in tars] == [f"shard-{i:06d}.tar" for i in range(6)]
    fs = fsspec.filesystem("memory")
    for t in tars:
        fs.pipe(f"/stream-test/{t.name}", t.read_bytes())
    index = str(tiny_dataset / "index.parquet")  # a local copy of the index beside remote shards
    results = []
    for urls in ([f"{tiny_dataset}/shards/shard-{{000000..000005}}.tar"],  # brace pattern
                 [f"pipe:cat {t}" for t in tars],
                 [f"memory://stream-test/{t.name}" for t in tars]):
        cfg = StreamConfig(urls=urls, index=index, batches_per_epoch=4, shuffle_buffer=8, shuffle_initial=4)
        results.append(ids(run(cfg)))
    assert len(results[0]) == 4 and results[0] == results[1] == results[2]


@pytest.fixture()
def damaged_shards(tmp_path):
    """8 'sq' clips in shards of 3, 3, 2: a0's JSON is not JSON, a4's mp4 is zeros, the last shard is cut
    inside a7's mp4; a fourth shard (written like video2dataset) has JSON status 'failed' and 'success'."""
    root = write_dataset(tmp_path / "d", [clip_row(f"a{i}", 40, 40, 12, 8) for i in range(8)], shard_sizes=[3, 3, 2])
    build_index(root, TEST_BUCKETS)  # only to find member offsets; the stream below gets no index
    rows = {r["clip_id"]: r for r in read_index(root).to_pylist()}
    for cid, member, fill in (("a0", "json", b"#"), ("a4", "mp4", b"\x00")):
        tar = root / "shards" / rows[cid]["shard"]
        data = bytearray(tar.read_bytes())
        offset, size = rows[cid][f"{member}_offset"], rows[cid][f"{member}_size"]
        data[offset:offset + size] = fill * size
        tar.write_bytes(bytes(data))
    last = root / "shards" / rows["a7"]["shard"]
    last.write_bytes(last.read_bytes()[:rows["a7"]["mp4_offset"] + 100])
    with open(root / "shards" / "foreign-000000.tar", "wb") as f:
        w = wds.TarWriter(f)
        for key, status in (("s0", "failed"), ("s1", "success")):
            meta = {"clip_id": key, "status": status, "width": 40, "height": 40, "num_frames": 12, "fps": 8.0}
            w.write({"__key__": key, "mp4": encode_mp4(make_frames(9, 12, 40, 40), 8), "json": json.dumps(meta),
                     "txt": f"caption of {key}"})
        w.close()
    return sorted(str(p) for p in (root / "shards").glob("*.tar"))


def test_bad_members_warn_and_continue(damaged_shards):
    cfg = StreamConfig(urls=damaged_shards, buckets=TEST_BUCKETS, resampled=False, shuffle_buffer=1)
    with pytest.warns(UserWarning):  # wds.warn_and_continue: the bad JSON member and the truncated tar
        batches = list(stream_dataset(cfg))
    # foreign s0/s1 first (sorted names), then a1 a2 | a3 a4 | a5 a6; a4 fails to decode, its slot is a copy
    assert ids(batches) == [["s1", "a1"], ["a2", "a3"], ["a5", "a5"], ["a6"]]
    assert [b["failed"] for b in batches] == [[], [], ["a4"], []]
    assert batches[-1]["video"].shape[0] == 1  # a single pass flushes the bucket's short last batch
    with pytest.raises(ValueError):  # a0's JSON member
        list(stream_dataset(StreamConfig(urls=damaged_shards, buckets=TEST_BUCKETS, resampled=False, handler="raise")))
    resampled = StreamConfig(urls=damaged_shards, buckets=TEST_BUCKETS, batches_per_epoch=6, handler="ignore")
    assert len(list(stream_dataset(resampled))) == 6  # resampled: broken shards cost samples, never batches


def test_a_resampled_stream_with_nothing_usable_stops(tiny_dataset):
    tars = [str(t) for t in sorted((tiny_dataset / "shards").glob("*.tar"))[:4]]  # videos only
    cfg = StreamConfig(urls=tars, buckets=TEST_BUCKETS, kinds=["image"], batches_per_epoch=2, shuffle_buffer=1)
    with pytest.raises(RuntimeError, match="no usable sample"):  # instead of reading shards forever
        list(stream_dataset(cfg))


def test_config_validation_and_yaml_tree(tiny_dataset):
    with pytest.raises(ValueError, match="urls"):
        StreamConfig()
    with pytest.raises(ValueError, match="not both"):
        StreamConfig(urls=["x.tar"], batches_per_epoch=2, samples_per_epoch=8)
    with pytest.raises(ValueError, match="handler"):
        StreamConfig(urls=["x.tar"], handler="skip")
    with pytest.raises(ValueError, match="batches_per_epoch"):  # no index: the epoch length is unknown
        stream_dataset(StreamConfig(urls=[str(next((tiny_dataset / "shards").glob("*.tar")))], buckets=TEST_BUCKETS))
    with pytest.raises(ValueError, match="where"):
        stream_dataset(StreamConfig(urls=["x.tar"], buckets=TEST_BUCKETS, batches_per_epoch=1, where="fps > 1"))
    cfg = from_dict(StreamConfig, {"dataset_dir": str(tiny_dataset), "samples_per_epoch": 29, "handler": "raise"})
    assert len(stream_dataset(cfg)) == 11  # 29 samples at the index's mean of 29/11 per batch
    with pytest.raises(ConfigError, match="handler"):
        from_dict(StreamConfig, {"urls": ["x.tar"], "handler": "skip"})
    assert shard_name("pipe:aws s3 cp s3://bucket/train/sq-000003.tar -") == "sq-000003.tar"
    assert shard_name("https://host/data/shard-000001.tar?token=1") == "shard-000001.tar"
