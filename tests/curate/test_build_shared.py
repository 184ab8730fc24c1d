"""A build over the real media in ../shared/media: every input ends with a row, ok videos have clips,
the tars read with `tar` and webdataset, every mp4 decodes with decord to its recorded frame count,
and every score column is filled for every ok clip (aesthetic through a tiny CLIP in the real format)."""
from __future__ import annotations

import io
import json
import subprocess

import decord
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig, run_build

SCORES = ("aspect_ratio", "border_area", "exposure_mean", "sharpness", "laplacian_var", "motion_mean",
          "motion_jitter", "text_area", "nsfw", "aesthetic")


@pytest.fixture(scope="module")
def shared_build(ray_local, shared_media, tiny_clip_overrides, tmp_path_factory):
    out = tmp_path_factory.mktemp("shared_ds")
    cfg = load_config(BuildConfig, None, ["ray.dashboard=false", "ray.progress_bars=false",
                                          "curate.transcode.max_side=640", *tiny_clip_overrides])
    summary = run_build([str(shared_media)], out, cfg)
    return out, summary


def test_every_input_has_a_row_and_ok_videos_have_clips(shared_build, shared_media, ground_truth):
    out, summary = shared_build
    videos = {v["path"].rsplit("/", 1)[1]: v for v in pq.read_table(out / "videos.parquet").to_pylist()}
    inputs = {p.name for p in shared_media.iterdir() if p.suffix in (".mp4", ".mov", ".mkv")}
    assert set(videos) == inputs
    assert videos["decord_corrupted.mp4"]["status"] == "failed" and videos["decord_corrupted.mp4"]["reason"]
    for name, v in videos.items():
        assert v["status"] in ("ok", "filtered", "failed") and (v["status"] == "ok" or v["reason"]), name
        if v["status"] == "ok":
            assert v["num_clips"] > 0, name
    for name in ("sintel_trailer_10s.mp4", "sintel_trailer_30s.mp4", "psd_testvideo.mp4"):
        assert videos[name]["status"] == "ok" and videos[name]["frames"] == ground_truth[name]["frames"]
    assert videos["psd_delayed_start.mp4"]["start_time"] == pytest.approx(1.075)
    assert summary["inputs"] == len(inputs)


def test_shards_read_with_tar_webdataset_and_decord(shared_build):
    out, _ = shared_build
    tars = sorted((out / "shards").glob("*.tar"))
    assert tars
    for t in tars:
        names = subprocess.run(["tar", "tf", str(t)], capture_output=True, text=True, check=True).stdout.split()
        assert any(n.endswith(".mp4") for n in names)
    n = 0
    for sample in wds.WebDataset([str(t) for t in tars], shardshuffle=False):
        meta = json.loads(sample["json"])
        assert len(decord.VideoReader(io.BytesIO(sample["mp4"]))) == meta["num_frames"]
        n += 1
    assert n == sum(1 for c in pq.read_table(out / "clips.parquet").to_pylist() if c["shard"])


def test_every_score_column_filled_for_every_ok_clip(shared_build):
    out, summary = shared_build
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    ok = [c for c in clips if c["status"] == "ok"]
    assert ok
    for c in ok:
        assert not [k for k in SCORES if c.get(k) is None], c["clip_id"]
    assert summary["clips"] == len(clips)
