"""Work keyed by what produced it, and the output lock: re-runs with changed settings, the same files
under a new folder, a deleted `_work`, and a second build into an output in use.

Real builds on an embedded Ray over one generated video (three shots); each test mutates its own copy.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from reelforge.config import load_config
from reelforge.curate.buildstate import BuildStateError, OutputLock
from reelforge.curate.pipeline import BuildConfig, run_build, run_refilter
from reelforge.samples import generate_samples

BASE = ["ray.dashboard=false", "ray.progress_bars=false", "ray.num_cpus=2", "curate.split.min_seconds=0.3",
        "curate.filters.basic.min_duration_s=0.3", "shards.target_bytes=20000", "report=false"]
DEFAULT_YAML = Path(__file__).resolve().parents[2] / "configs" / "build" / "default.yaml"


def _cfg(extra=()):
    return load_config(BuildConfig, None, BASE + list(extra))


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    every = generate_samples(tmp_path_factory.mktemp("all"), preset="test")
    d = tmp_path_factory.mktemp("raw")
    src = next(p for p in every if p.name.startswith("t_cuts"))
    shutil.copy(src, d / src.name)
    return d


@pytest.fixture(scope="module")
def first(ray_local, raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds")
    run_build([str(raw)], out, _cfg())
    return out


@pytest.fixture
def ds(first, tmp_path):
    """A private copy of the first build (the tests change it)."""
    out = tmp_path / "ds"
    shutil.copytree(first, out)
    return out


def _clips(out):
    return {c["clip_id"]: c for c in pq.read_table(out / "clips.parquet").to_pylist()}


def _files(d: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(d.glob("*.tar"))}


def test_changed_clip_setting_stops_before_any_work_then_rebuild_redoes_it(ds, raw, capsys):
    before_clips = (ds / "clips.parquet").read_bytes()
    before_config = (ds / "config.yaml").read_text()
    work = _files(ds / "_work" / "shards")
    with pytest.raises(BuildStateError, match=r"curate\.split\.max_seconds: 10\.0 -> 0\.6.*--rebuild"):
        run_build([str(raw)], ds, _cfg(["curate.split.max_seconds=0.6"]))
    # the same through the command line: one line, exit 2, nothing touched
    from reelforge.cli import main

    rc = main(["build", str(DEFAULT_YAML), "--input", str(raw), "--output", str(ds)]
              + [a for s in BASE + ["curate.split.max_seconds=0.6"] for a in ("--set", s)])
    err = capsys.readouterr().err
    assert rc == 2 and "curate.split.max_seconds" in err and "--rebuild" in err and "Traceback" not in err
    assert (ds / "clips.parquet").read_bytes() == before_clips
    assert (ds / "config.yaml").read_text() == before_config
    assert _files(ds / "_work" / "shards") == work

    run_build([str(raw)], ds, _cfg(["curate.split.max_seconds=0.6"]), rebuild=True)
    clips = _clips(ds)
    assert clips and max(c["end_s"] - c["start_s"] for c in clips.values()) <= 0.6 + 1 / 24
    assert yaml.safe_load((ds / "config.yaml").read_text())["curate"]["split"]["max_seconds"] == 0.6
    # the old 10-s clips are gone from every table and from the training shards
    import webdataset as wds

    keys = {s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (ds / "shards").glob("*.tar")),
                                                   shardshuffle=False)}
    assert keys == {k for k, c in clips.items() if c["status"] == "ok"}


def test_threshold_change_on_a_rerun_redecides_without_redoing_work(ds, raw):
    work = _files(ds / "_work" / "shards")
    summary = run_build([str(raw)], ds, _cfg(["curate.filters.motion.min_motion=1.0"]))
    assert _files(ds / "_work" / "shards") == work  # nothing transcoded again
    clips = _clips(ds)
    assert summary["clips_ok"] == 0 and all(c["status"] != "ok" for c in clips.values())
    assert not list((ds / "shards").glob("*.tar")) and not (ds / "index.parquet").exists()
    assert yaml.safe_load((ds / "config.yaml").read_text())["curate"]["filters"]["motion"]["min_motion"] == 1.0


def test_refilter_refuses_settings_that_change_the_clips(ds):
    with pytest.raises(BuildStateError, match=r"curate\.transcode\.max_side: 1024 -> 320.*--rebuild"):
        run_refilter(ds, _cfg(["curate.transcode.max_side=320"]))
    # speed-only settings are not part of the work key
    run_refilter(ds, _cfg(["curate.transcode.threads=1", "curate.filters.nsfw.batch_size=3"]))


def test_same_files_under_a_new_folder_replace_the_old_paths(ds, raw, tmp_path):
    before = _clips(ds)
    moved = tmp_path / "moved"
    shutil.copytree(raw, moved)
    run_build([str(moved)], ds, _cfg())
    after = _clips(ds)
    assert set(after) == set(before)  # content-hashed ids: the same clips, not old + new
    assert all(c["video_path"].startswith(str(moved)) for c in after.values())
    assert [c["status"] for c in after.values()] == [before[k]["status"] for k in after]
    videos = pq.read_table(ds / "videos.parquet").to_pylist()
    assert [v["path"] for v in videos] == [str(p) for p in sorted(moved.iterdir())]
    assert all(v["status"] == "ok" and v["num_clips"] > 0 for v in videos)  # no false "no usable shot"


def test_deleting_work_never_deletes_the_published_shards(ds, raw):
    published = {p.name: p.read_bytes() for p in (ds / "shards").glob("*.tar")}
    assert published
    shutil.rmtree(ds / "_work")
    with pytest.raises(BuildStateError, match="no work record.*--rebuild"):
        run_build([str(raw)], ds, _cfg())
    assert {p.name: p.read_bytes() for p in (ds / "shards").glob("*.tar")} == published
    with pytest.raises(BuildStateError, match="no work record"):
        run_refilter(ds, _cfg())
    run_build([str(raw)], ds, _cfg(), rebuild=True)
    import webdataset as wds

    keys = {s["__key__"] for s in wds.WebDataset(sorted(str(p) for p in (ds / "shards").glob("*.tar")),
                                                   shardshuffle=False)}
    assert keys == {k for k, c in _clips(ds).items() if c["status"] == "ok"} and keys


def test_a_second_build_into_an_output_in_use_stops_at_once(ds, raw):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom reelforge.curate.buildstate import OutputLock\n"
         "lock = OutputLock(sys.argv[1]).__enter__()\nprint('locked', flush=True)\ntime.sleep(120)\n", str(ds)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        clips = (ds / "clips.parquet").read_bytes()
        with pytest.raises(BuildStateError, match=rf"in use by another build \(pid {holder.pid} on "):
            run_build([str(raw)], ds, _cfg())
        with pytest.raises(BuildStateError, match="in use"):
            run_refilter(ds, _cfg())
        assert (ds / "clips.parquet").read_bytes() == clips
    finally:
        holder.kill()  # SIGKILL: no clean-up runs, the kernel drops the lock
        holder.wait()
    with OutputLock(ds):  # not stuck
        pass


def test_a_slow_build_commits_on_time_not_only_on_size(ray_local, raw, tmp_path):
    # far from the size target, but older than max_open_seconds after each write: every clip is committed
    # (tar + its rows) as soon as it is written, so a kill loses at most that much work
    out = tmp_path / "ds"
    summary = run_build([str(raw)], out, _cfg(["shards.target_bytes=1000000000", "shards.max_open_seconds=1e-6"]))
    clips = _clips(out)
    with_media = [c for c in clips.values() if c["work_shard"]]
    assert len(with_media) >= 2 and summary["work_shards"] == len(with_media)
    assert len({c["work_shard"] for c in with_media}) == len(with_media)
    parts = sorted(p.name for p in (out / "_work" / "clips").rglob("*.parquet"))
    assert [p for p in parts if p.startswith("work-")] == sorted(f"{c['work_shard']}.parquet" for c in with_media)


def test_a_build_that_fails_on_its_input_leaves_no_output_folder(tmp_path):
    out = tmp_path / "new" / "ds"
    with pytest.raises(FileNotFoundError, match="input not found"):
        run_build([str(tmp_path / "no_such_input")], out, _cfg())
    assert not out.exists()          # it held only the lock it made
    existing = tmp_path / "mine"
    existing.mkdir()
    with pytest.raises(FileNotFoundError):
        run_build([str(tmp_path / "no_such_input")], existing, _cfg())
    assert existing.is_dir()         # a folder the user made stays
    with pytest.raises(RuntimeError):
        with OutputLock(out):
            (out / "work.txt").write_text("written")
            raise RuntimeError("a failure after writing")
    assert (out / "work.txt").exists()  # what was written stays
