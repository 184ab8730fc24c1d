"""Shards in video2dataset and img2dataset layouts (written with webdataset.TarWriter, as those tools do)."""
from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
import webdataset as wds

from reelforge.shards.cli import main
from reelforge.shards.export import export_shards
from reelforge.shards.index import read_index, select
from reelforge.shards.interop import import_shards
from reelforge.shards.reader import ReaderConfig, VideoShardDataset
from reelforge.shards.tarscan import scan_tar
from reelforge.shards.verify import verify_dataset

from shard_fixtures import TEST_BUCKETS, encode_jpg, encode_mp4, make_frames


def write_tool_shard(path, samples):
    """One shard as video2dataset/img2dataset write it: TarWriter({"__key__", ext: data}), keys SSSSSIIII."""
    with open(path, "wb") as f:
        w = wds.TarWriter(f)
        for s in samples:
            w.write(s)
        w.close()


@pytest.fixture()
def v2d_dir(tmp_path):
    d = tmp_path / "v2d"
    d.mkdir()
    for shard in range(2):
        samples = []
        for i in range(3):
            key = f"{shard:05d}{i:04d}"
            meta = {"url": f"https://example.com/{key}.mp4", "key": key, "status": "success", "error_message": None,
                    "caption": f"video {key}"}
            samples.append({"__key__": key, "mp4": encode_mp4(make_frames(shard * 3 + i, 12, 64, 40), 16),
                            "txt": f"video {key}", "json": json.dumps(meta, indent=4)})
        if shard == 1:  # an ".mp4" that is really a JPEG: recorded as bad, not fatal
            samples[1]["mp4"] = encode_jpg(64, 40, 0)
        write_tool_shard(d / f"{shard:05d}.tar", samples)
        pq.write_table(__import__("pyarrow").table({"key": [s["__key__"] for s in samples]}), d / f"{shard:05d}.parquet")
        (d / f"{shard:05d}_stats.json").write_text(json.dumps({"count": 3, "successes": 3}))
    return d


@pytest.fixture()
def i2d_dir(tmp_path):
    d = tmp_path / "cc12m"
    d.mkdir()
    samples = []
    for i in range(5):
        key = f"00000{i:04d}"
        meta = {"url": f"https://example.com/{i}.jpg", "caption": f"image {i}", "key": key, "status": "success",
                "error_message": None, "width": 40, "height": 40, "original_width": 400, "original_height": 400,
                "exif": "{}", "sha256": "0" * 64}
        samples.append({"__key__": key, "jpg": encode_jpg(40, 40, i), "txt": f"image {i}", "json": json.dumps(meta)})
    samples[3]["jpg"] = b"<html>not found</html>"
    write_tool_shard(d / "00000.tar", samples)
    return d


def test_import_video2dataset(v2d_dir, tmp_path):
    summary = import_shards([v2d_dir], tmp_path / "ds", buckets=TEST_BUCKETS)
    assert summary["samples"] == 6 and summary["failed"] == 1 and summary["kinds"] == {"video": 5}
    rows = {r["clip_id"]: r for r in read_index(tmp_path / "ds").to_pylist()}
    bad = rows["000010001"]
    assert bad["status"] == "failed" and "000010001.mp4" in bad["reason"]
    good = rows["000000002"]
    assert (good["width"], good["height"], good["num_frames"], good["fps"], good["bucket"]) == (64, 40, 12, 16.0, "wide")
    assert good["url"] == "https://example.com/000000002.mp4"
    report = verify_dataset(tmp_path / "ds")
    assert report.ok, report.errors
    assert report.known_failed == 1
    batches = list(VideoShardDataset(tmp_path / "ds", ReaderConfig(), 0, 1))
    assert {c for b in batches for c in b["clip_id"]} == {c for c in rows if c != "000010001"}
    assert batches[0]["caption"][0].startswith("video ")


def test_import_img2dataset_and_joint_training(i2d_dir, v2d_dir, tmp_path, capsys):
    assert main(["shards", "import", str(i2d_dir), str(v2d_dir), "--out", str(tmp_path / "ds")]) == 0
    table = read_index(tmp_path / "ds")
    assert table.num_rows == 11
    bad = [r for r in table.to_pylist() if r["status"] == "failed"]
    assert {r["key"] for r in bad} == {"000000003", "000010001"}
    # keys collide between the two tools' shards: the later ones get a prefix
    assert len(set(table["clip_id"].to_pylist())) == 11
    ok = select(tmp_path / "ds")
    assert sorted(set(ok["kind"].to_pylist())) == ["image", "video"]
    # joint image-video training from the imported set, with the test bucket table
    ds = VideoShardDataset(tmp_path / "ds", ReaderConfig(buckets=TEST_BUCKETS), 0, 1)
    shapes = {b["bucket"]: tuple(b["video"].shape) for b in ds}
    assert shapes == {"img": (4, 1, 3, 32, 32), "wide": (3, 4, 3, 24, 40)}


def test_export_groups_shards_by_bucket(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "train"
    summary = export_shards(tiny_dataset, out, where="kind = 'video' OR clip_id IN ('im00', 'im01')",
                            target_bytes=30_000)
    assert summary["samples"] == 12 + 9 + 2
    index = read_index(out)
    for shard in set(index["shard"].to_pylist()):  # one bucket per shard, named after it
        buckets = {r["bucket"] for r in index.to_pylist() if r["shard"] == shard}
        assert len(buckets) == 1 and shard.startswith(buckets.pop() + "-")
    assert len(set(index["shard"].to_pylist())) > 3  # target_bytes split the larger buckets
    assert verify_dataset(out).ok
    # JSON members carry the spec fields; shards stay plain WebDataset
    sample = next(iter(wds.WebDataset(str(sorted((out / "shards").glob("sq-*.tar"))[0]), shardshuffle=False)))
    meta = json.loads(sample["json"])
    assert meta["format"] == "reelforge.shard.v1" and meta["aesthetic"] == 5.0 and "mp4" in sample
    assert main(["shards", "export", str(tiny_dataset), "--out", str(tmp_path / "t2"), "--where",
                 "fps >= 16"]) == 0
    assert set(read_index(tmp_path / "t2")["bucket"].to_pylist()) == {"wide"}


def test_our_shards_read_with_plain_webdataset(tiny_dataset):
    tars = sorted(str(p) for p in (tiny_dataset / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(tars, shardshuffle=False))
    assert len(samples) == 29
    assert sum("mp4" in s for s in samples) == 21 and sum("jpg" in s for s in samples) == 8
    assert sum(len(scan_tar(t).samples) for t in tars) == 29


def test_export_of_imported_shards_is_spec_conformant(v2d_dir, tmp_path):
    import_shards([v2d_dir], tmp_path / "ds", buckets=TEST_BUCKETS)
    summary = export_shards(tmp_path / "ds", tmp_path / "train")
    assert summary["samples"] == 5  # the bad member's sample stays behind
    assert verify_dataset(tmp_path / "train").ok
    sample = next(iter(wds.WebDataset(str(next((tmp_path / "train" / "shards").glob("*.tar"))), shardshuffle=False)))
    meta = json.loads(sample["json"])
    assert meta["format"] == "reelforge.shard.v1" and meta["url"].startswith("https://example.com/")
    assert {"clip_id", "num_frames", "fps", "width", "height", "duration_s"} <= set(meta)


def _member(tar, name, data=b"", kind=None, link=""):
    import io
    import tarfile

    info = tarfile.TarInfo(name)
    if kind:
        info.type, info.linkname = kind, link
    else:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if not kind else None)


def _hostile_tar(path):
    """Good samples around each kind of bad member, as a careless or hostile tool might write them."""
    import tarfile

    mp4 = encode_mp4(make_frames(0, 12, 64, 40), 16)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for key, bad in [("good0", None), ("../up", "traversal"), ("good1", None), ("/tmp/abs", "absolute"),
                         ("good2", None), ("sym", "symlink"), ("good3", None), ("hard", "hardlink"),
                         ("good4", None)]:
            if bad == "symlink":
                _member(tar, f"{key}.mp4", kind=tarfile.SYMTYPE, link="/etc/passwd")
            elif bad == "hardlink":
                _member(tar, f"{key}.mp4", kind=tarfile.LNKTYPE, link="good0.mp4")
            else:
                _member(tar, f"{key}.mp4", mp4)
            _member(tar, f"{key}.txt", f"caption {key}".encode())
        _member(tar, "good1.mp4", mp4)  # key good1 again, later: two samples with one key


def test_hostile_members_are_refused_on_their_own_sample(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _hostile_tar(src / "00000.tar")
    scan = scan_tar(src / "00000.tar")
    assert scan.error is None
    errors = {s.key: s.error for s in scan.samples}
    assert [s.key for s in scan.samples] == ["good0", "../up", "good1", "/tmp/abs", "good2", "sym", "good3", "hard",
                                             "good4", "good1"]
    assert errors["../up"].startswith("refused member '../up.mp4': '..' in the name (path traversal out of the "
                                      "extraction folder); refused member '../up.txt'")
    assert errors["/tmp/abs"].startswith("refused member '/tmp/abs.mp4': absolute name")
    assert errors["sym"] == "refused member 'sym.mp4': a symlink to '/etc/passwd' (its bytes are not in the tar)"
    assert list(scan.samples[5].members) == list(scan.samples[7].members) == ["txt"]  # refused: not listed
    assert errors["hard"].startswith("refused member 'hard.mp4': a hard link to 'good0.mp4'")
    assert scan.samples[-1].error == "key 'good1' repeats: sample #9 of the tar, first seen as sample #2"
    assert all(s.error is None for s in scan.samples[:-1] if s.key.startswith("good"))

    import_shards([src], tmp_path / "ds", buckets=TEST_BUCKETS)
    rows = read_index(tmp_path / "ds").to_pylist()
    failed = {(r["key"], r["reason"].split(":")[0]) for r in rows if r["status"] == "failed"}
    assert failed == {("../up", "refused member '../up.mp4'"), ("/tmp/abs", "refused member '/tmp/abs.mp4'"),
                      ("sym", "refused member 'sym.mp4'"), ("hard", "refused member 'hard.mp4'"),
                      ("good1", "key 'good1' repeats")}
    # the neighbours of every bad member are fine (the first good1 among them)
    assert sum(r["status"] == "ok" for r in rows) == 5


def test_a_truncated_member_marks_its_own_sample(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    samples = [{"__key__": f"k{i}", "mp4": encode_mp4(make_frames(i, 12, 64, 40), 16), "txt": f"video {i}"}
               for i in range(3)]
    write_tool_shard(src / "00000.tar", samples)
    tar = src / "00000.tar"
    scan = scan_tar(tar)
    cut = scan.samples[2].members["mp4"].offset + 100  # inside k2's video
    tar.write_bytes(tar.read_bytes()[:cut])
    scan = scan_tar(tar)
    assert scan.error.startswith("truncated: member k2.mp4 ends at")
    assert [(s.key, s.error is not None) for s in scan.samples] == [("k0", False), ("k1", False), ("k2", True)]
    import_shards([src], tmp_path / "ds", buckets=TEST_BUCKETS)
    status = {r["key"]: (r["status"], r["reason"]) for r in read_index(tmp_path / "ds").to_pylist()}
    assert status["k0"] == ("ok", None) and status["k1"] == ("ok", None)  # not k1 (the sample before it)
    assert status["k2"][0] == "failed" and status["k2"][1].startswith("truncated: member k2.mp4")
