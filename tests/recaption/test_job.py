"""The captioning job on Ray over a built dataset: a run adds a version, another template adds a second,
a re-run continues its version, unreadable clips become failed rows, and a job killed mid-run (a real
SIGKILL of the process and its Ray) then re-run leaves every clip captioned exactly once per version."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from caption_fixtures import job_config, make_dataset
from shard_fixtures import TEST_BUCKETS

from reelforge.recaption.job import caption_dataset
from reelforge.shards import captions as store
from reelforge.shards.export import export_shards

ROOT = Path(__file__).resolve().parents[2]


def _rows(root, version):
    return [r for r in pq.read_table(root / store.CAPTIONS_FILE).to_pylist() if r["version"] == version]


def test_versions_side_by_side(tmp_path, tiny_vlm, ray_session):
    root = make_dataset(tmp_path / "d", n=5, broken=(3,))
    first = caption_dataset(root, job_config(tiny_vlm))
    v1 = first["version"]
    assert v1.startswith("dense-v1-") and first["ok"] + first["failed"] == 5 and first["ok"] >= 2
    rows = {r["clip_id"]: r for r in _rows(root, v1)}
    assert len(rows) == 5 and rows["c03"]["status"] == "failed" and rows["c03"]["reason"].startswith("frames:")
    ok = {c for c, r in rows.items() if r["status"] == "ok"}
    r0 = rows[sorted(ok)[0]]
    assert r0["model"] == str(tiny_vlm) and r0["template_id"] == "dense-v1" and r0["source"] == "vlm"
    assert r0["template_hash"] and '"max_new_tokens": 12' in r0["params"] and r0["tokens"] >= 8
    assert store.default_version(root) == "sidecar"  # the shards' .txt entered the store first

    second = caption_dataset(root, job_config(tiny_vlm, template="short-v1", make_default=True))
    v2 = second["version"]
    assert v2.startswith("short-v1-") and set(store.versions(root)) == {"sidecar", v1, v2}
    assert store.default_version(root) == v2
    for version in (v1, v2):  # export with either version: its captions are the .txt members
        out = tmp_path / f"export-{version}"
        export_shards(root, out, buckets=TEST_BUCKETS, caption_version=version)
        exported = {r["clip_id"]: r["text"] for r in pq.read_table(out / store.CAPTIONS_FILE).to_pylist()
                    if r["version"] == version and r["status"] == "ok"}
        from reelforge.shards.access import open_member
        from reelforge.shards.index import read_index
        txt = {r["clip_id"]: open_member(out, r, "txt").decode() for r in read_index(out).to_pylist() if r["txt_size"]}
        assert txt == exported and txt == store.captions_for(root, version)


def _caption_cmd(root: Path, model: Path) -> list[str]:
    sets = ["recaption.captioner.model=" + str(model), "recaption.captioner.batch_size=1",
            "recaption.captioner.generation.max_new_tokens=12", "recaption.captioner.generation.min_new_tokens=8",
            "recaption.frames.num_frames=4", "recaption.frames.max_pixels=3136", "recaption.min_words=1",
            "recaption.chunk_clips=1", "recaption.part_clips=1", "recaption.actors=1", "recaption.actor_cpus=0.5",
            "ray.num_cpus=2", "ray.dashboard=false", "ray.progress_bars=false"]
    return [sys.executable, "-m", "reelforge.cli", "caption", str(root)] + [a for s in sets for a in ("--set", s)]


@pytest.mark.slow  # two Ray start-ups in subprocesses: ~1 min on 2 busy cores; the in-process test below is the fast one
def test_killed_job_resumes_without_duplicates(tmp_path, tiny_vlm):
    root = make_dataset(tmp_path / "d", n=8)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["HF_HUB_OFFLINE"] = "1"
    parts = root / store.PARTS_SUBDIR
    proc = subprocess.Popen(_caption_cmd(root, tiny_vlm), cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            committed = [p for p in parts.glob("dense-v1-*/part-*.parquet")]
            if len(committed) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the job finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray it started, mid-run
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = {r["clip_id"]: r["created_at"] for p in parts.glob("*/part-*.parquet") for r in pq.read_table(p).to_pylist()}
    assert 2 <= len(before) < 8
    assert {r["version"] for r in pq.read_table(root / store.CAPTIONS_FILE).to_pylist()} == {"sidecar"}

    done = subprocess.run(_caption_cmd(root, tiny_vlm), cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    version = next(iter({p.parent.name for p in parts.glob("*/*")} or {v for v in store.versions(root) if v != "sidecar"}))
    rows = _rows(root, version)
    assert sorted(r["clip_id"] for r in rows) == [f"c0{i}" for i in range(8)]  # each clip exactly once
    assert all(r["created_at"] == before[r["clip_id"]] for r in rows if r["clip_id"] in before)  # not redone
    assert f"{len(before)} already captioned" in done.stdout
    assert not list(parts.glob("*/part-*.parquet"))


def test_interrupted_job_resumes_without_duplicates(tmp_path, tiny_vlm, ray_session, monkeypatch):
    """The in-process version of the kill: the job dies right after its second committed part."""
    root = make_dataset(tmp_path / "d", n=4)
    real, calls = store.write_part, []

    def dying_write_part(dataset, version, rows):
        path = real(dataset, version, rows)
        if version == "sidecar":  # the shards' own captions, imported (and merged) first
            return path
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed after two commits")
        return path

    monkeypatch.setattr(store, "write_part", dying_write_part)
    with pytest.raises(KeyboardInterrupt):
        caption_dataset(root, job_config(tiny_vlm, chunk_clips=1, part_clips=1))
    monkeypatch.setattr(store, "write_part", real)
    before = {r["clip_id"]: r["created_at"] for p in calls for r in pq.read_table(p).to_pylist()}
    assert len(before) == 2
    resumed = caption_dataset(root, job_config(tiny_vlm, chunk_clips=1, part_clips=1))
    assert resumed["skipped_done"] == 2 and resumed["todo"] == 2
    rows = _rows(root, resumed["version"])
    assert sorted(r["clip_id"] for r in rows) == [f"c0{i}" for i in range(4)]
    assert all(r["created_at"] == before[r["clip_id"]] for r in rows if r["clip_id"] in before)
