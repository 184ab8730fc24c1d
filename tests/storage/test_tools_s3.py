"""`reelforge shards export`, `reelforge shards import` and `reelforge encode` with their output (and
input) on object storage (a moto S3 server): the result verifies by URL, the readers serve it, and an
output that cannot work stops before any work."""
from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from reelforge import storage
from reelforge.cli import main
from reelforge.shards.index import read_index
from reelforge.shards.reader import ReaderConfig, ShardLoader, VideoShardDataset
from reelforge.shards.verify import verify_dataset
from reelforge.storage import StorageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))
from shard_fixtures import TEST_BUCKETS, write_captioned_dataset  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def local_ds(tmp_path_factory) -> Path:
    return write_captioned_dataset(tmp_path_factory.mktemp("ds") / "d", 4, 2, [3, 3])


@pytest.fixture
def remote_ds(s3, bucket, local_ds) -> str:
    url = f"s3://{bucket}/src"
    for f in sorted(local_ds.rglob("*")):
        if f.is_file():
            storage.write_bytes_atomic(f"{url}/{f.relative_to(local_ds).as_posix()}", f.read_bytes())
    return url


def _clip_ids(url) -> set[str]:
    return {r["clip_id"] for r in read_index(url).to_pylist() if r["status"] == "ok"}


def test_export_from_s3_to_s3(remote_ds, bucket, s3):
    out = f"s3://{bucket}/exported"
    assert main(["shards", "export", remote_ds, "--out", out, "--where", "width = 40",
                 "--caption-version", "v1"]) == 0
    assert verify_dataset(out).ok and _clip_ids(out) == {f"sq{i:02d}" for i in range(4)}
    assert {"clips.parquet", "index.parquet", "captions.parquet", "shards"} <= set(storage.listdir(out))
    assert not any(n.endswith(".tmp") for n in storage.listdir(f"{out}/shards"))
    batch = next(iter(ShardLoader(VideoShardDataset(out, ReaderConfig(buckets=TEST_BUCKETS)), num_workers=0)))
    assert batch["caption"][0] == f"stored {batch['clip_id'][0]}"
    from reelforge.shards.export import export_shards
    with pytest.raises(FileExistsError, match="is not empty"):  # a second export never mixes into the first
        export_shards(remote_ds, out)


def test_export_and_import_refuse_an_output_that_cannot_work_before_reading(remote_ds, s3, tmp_path, capsys):
    before = len(s3.requests())
    for bad, words in (("https://example.com/x", "read-only"), ("nosuch://b/x", "unknown URL scheme"),
                       ("s3://no-such-bucket-here/x", "does not exist")):
        assert main(["shards", "export", remote_ds, "--out", bad]) == 2
        assert main(["shards", "import", f"{remote_ds}/shards/", "--out", bad]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 2 and all(words in line and bad in line for line in err), err
    gets = [p for m, p in s3.requests()[before:] if m == "GET" and "/src/" in p]
    assert not gets  # nothing of the source was read


def test_import_from_s3_into_s3_copies_the_tars(remote_ds, local_ds, bucket):
    out = f"s3://{bucket}/imported"
    assert main(["shards", "import", f"{remote_ds}/shards/", "--out", out]) == 0
    assert storage.listdir(f"{out}/shards") == ["imported-000000.tar", "imported-000001.tar"]
    assert storage.size(f"{out}/shards/imported-000000.tar") == (local_ds / "shards" / "shard-000000.tar").stat().st_size
    rows = read_index(out).to_pylist()
    assert len(rows) == 6 and Counter(r["status"] for r in rows) == {"ok": 6}
    assert {r["source_tar"] for r in rows} == {f"{remote_ds}/shards/shard-00000{i}.tar" for i in range(2)}
    assert verify_dataset(out).ok


def test_import_from_s3_into_a_local_dir_downloads(remote_ds, tmp_path):
    out = tmp_path / "imp"
    summary = yaml.safe_load(_stdout_of(["shards", "import", f"{remote_ds}/shards/shard-000001.tar", "--out", str(out)]))
    assert summary["samples"] == 3
    tar = out / "shards" / "imported-000000.tar"
    assert tar.is_file() and not tar.is_symlink()
    assert verify_dataset(out).ok


def _stdout_of(argv) -> str:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(argv) == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_vae(tmp_path_factory) -> Path:
    import torch

    from reelforge.train.vae.export import save_exported
    from reelforge.train.vae.model import VAE_PRESETS, VideoVAE
    torch.manual_seed(0)
    return save_exported(VideoVAE(VAE_PRESETS["tiny"]()), tmp_path_factory.mktemp("vae") / "tiny")


def test_encode_from_s3_into_s3(remote_ds, bucket, tiny_vae, local_ds, tmp_path):
    import pyarrow.parquet as pq
    import torch

    from reelforge.config import to_dict
    from reelforge.shards.buckets import BucketConfig, BucketTable

    torch.set_num_threads(1)
    buckets = BucketTable(buckets=[BucketConfig(16, 16, 5, 2, "v")], fps=8.0, max_upscale=1.0, min_crop_keep=0.5)
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(to_dict(buckets)))
    out = f"s3://{bucket}/latents"
    assert main(["encode", remote_ds, "--vae", str(tiny_vae), "--out", out, "--batch-size", "2",
                 "--num-workers", "0", "--buckets", str(tmp_path / "b.yaml")]) == 0
    report = storage.read_parquet(f"{out}/encode.parquet").to_pylist()
    assert Counter(r["status"] for r in report) == {"ok": 6}
    assert json.loads(storage.read_bytes(f"{out}/latents.json"))["bucket_latent_shapes"] == {"v": [4, 2, 2, 2]}
    assert storage.exists(f"{out}/captions.parquet") and verify_dataset(out).ok
    batches = list(ShardLoader(VideoShardDataset(out, ReaderConfig(latents=True, buckets=buckets), 0, 1, seed=0)))
    assert sum(len(b["clip_id"]) for b in batches) == 6 and batches[0]["latent"].shape[1:] == (4, 2, 2, 2)
    # the same bytes as an encode from the local copy into a local dir
    local_out = tmp_path / "lat"
    assert main(["encode", str(local_ds), "--vae", str(tiny_vae), "--out", str(local_out), "--batch-size", "2",
                 "--num-workers", "0", "--buckets", str(tmp_path / "b.yaml")]) == 0
    assert pq.read_table(local_out / "encode.parquet").to_pylist() == report


def test_encode_to_an_output_that_cannot_work_stops_before_the_vae_loads(remote_ds, tmp_path, monkeypatch):
    import reelforge.train.vae.interface as interface

    monkeypatch.setattr(interface, "load_vae", lambda *a, **k: pytest.fail("the VAE was loaded"))
    with pytest.raises(StorageError, match="read-only"):
        from reelforge.train.encode import EncodeConfig, encode_dataset
        encode_dataset(remote_ds, "https://example.com/lat", EncodeConfig(vae=str(tmp_path)))
