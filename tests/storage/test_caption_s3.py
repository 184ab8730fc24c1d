"""`reelforge caption` on a dataset on object storage (a moto S3 server): a tiny random Qwen2.5-VL saved
with save_pretrained captions the clips (read by ranged GETs in the Ray decode tasks), the caption store
is written into the bucket and serves the new version, and a re-run has nothing left to do."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from reelforge import storage
from reelforge.shards import captions as store
from reelforge.storage import StorageError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recaption"))  # caption_fixtures
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shards"))     # shard_fixtures
from caption_fixtures import job_config, make_dataset  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory) -> Path:
    from reelforge.recaption.random_model import build_vlm
    out = tmp_path_factory.mktemp("tiny-vlm")
    build_vlm("tiny", out)
    return out


def _upload(local: Path, url: str) -> None:
    for f in sorted(local.rglob("*")):
        if f.is_file():
            storage.write_bytes_atomic(f"{url}/{f.relative_to(local).as_posix()}", f.read_bytes())


@pytest.mark.slow  # a Ray of its own and a model load per actor: ~1-3 min on 2 busy cores
def test_caption_job_reads_and_writes_s3(ray_s3, s3, bucket, tmp_path, tiny_vlm_dir):
    from reelforge.recaption.job import caption_dataset

    url = f"s3://{bucket}/ds"
    _upload(make_dataset(tmp_path / "d", n=3, broken=(2,)), url)
    summary = caption_dataset(url, job_config(tiny_vlm_dir, make_default=True))
    version = summary["version"]
    assert summary["ok"] + summary["failed"] == 3 and summary["ok"] >= 1
    assert not list(Path.cwd().glob("s3:*"))  # no local folder named after the URL
    rows = {r["clip_id"]: r for r in store.all_rows(url) if r["version"] == version}
    assert set(rows) == {"c00", "c01", "c02"} and rows["c02"]["reason"].startswith("frames:")
    assert store.default_version(url) == version and storage.exists(f"{url}/{store.CAPTIONS_FILE}")
    assert not storage.glob(f"{url}/{store.PARTS_SUBDIR}/*/part-*.parquet")  # folded into the store
    ok = {c for c, r in rows.items() if r["status"] == "ok"}
    assert set(store.store_captions(url, version)) == ok  # what the readers serve for caption_version
    assert store.done_clip_ids(url, version) == ok          # what a re-run skips


def test_caption_job_io_on_s3_without_a_model(s3, bucket, tmp_path, monkeypatch):
    """The job's own I/O on the bucket (selection from the index, the shards' captions imported, parts
    committed as chunks finish, the merge) with the Ray captioner replaced by a stub."""
    from reelforge.recaption import job, runner
    from reelforge.recaption.postprocess import CaptionResult

    url = f"s3://{bucket}/ds"
    _upload(make_dataset(tmp_path / "d", n=3), url)
    seen = []

    def fake_caption_on_ray(dataset, rows, *a, **k):
        assert dataset == url
        for r in rows:
            seen.append(r["clip_id"])
            if r["clip_id"] == "c02":
                yield [CaptionResult(r["clip_id"], None, "failed", "stub: no caption", 1, 0)]
            else:
                yield [CaptionResult(r["clip_id"], f"a stub caption of {r['clip_id']}", "ok", None, 1, 5)]

    monkeypatch.setattr(runner, "caption_on_ray", fake_caption_on_ray)
    monkeypatch.setattr(job, "init_ray", lambda *a, **k: "existing")
    cfg = job.RecaptionConfig(part_clips=2, make_default=True, version="stub-v1")
    cfg.captioner.model = "random:tiny"  # the stub captions: no model loads (the hub default would be checked)
    summary = job.caption_dataset(url, cfg)
    assert (summary["ok"], summary["failed"], summary["todo"]) == (2, 1, 3) and sorted(seen) == ["c00", "c01", "c02"]
    assert set(store.versions(url)) == {"sidecar", "stub-v1"} and store.default_version(url) == "stub-v1"
    assert store.captions_for(url, "stub-v1") == {c: f"a stub caption of {c}" for c in ("c00", "c01")}
    assert not storage.glob(f"{url}/{store.PARTS_SUBDIR}/*/part-*.parquet")
    assert store.done_clip_ids(url, "stub-v1") == {"c00", "c01"}  # what a re-run skips


def test_caption_job_on_a_url_that_cannot_work_stops_before_ray(monkeypatch):
    from reelforge.recaption import job
    from reelforge.recaption.job import RecaptionConfig

    monkeypatch.setattr(job, "init_ray", lambda *a, **k: pytest.fail("Ray was started"))
    for bad, words in (("https://example.com/ds", "read-only"), ("nosuch://b/ds", "unknown URL scheme")):
        with pytest.raises(StorageError, match=words):
            job.caption_dataset(bad, RecaptionConfig())


def test_build_caption_scores_go_into_the_bucket(s3, bucket):
    """The build's captioning step writes caption_match.parquet beside the dataset on s3, and the finish
    reads it back into the clip rows."""
    from types import SimpleNamespace

    from reelforge.recaption.build import SCORES_FILE, add_caption_scores, score_caption_match

    url = f"s3://{bucket}/ds"
    summary = score_caption_match(url, "v1", {"a", "b"}, SimpleNamespace(enabled=False))
    assert summary["clips"] == 2 and storage.exists(f"{url}/{SCORES_FILE}")
    rows = add_caption_scores(url, [{"clip_id": "a"}, {"clip_id": "z"}])
    assert rows[0]["caption_version"] == "v1" and "disabled" in rows[0]["caption_match_reason"]
    assert "caption_version" not in rows[1]
