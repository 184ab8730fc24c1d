"""Captioning as the build's last step: kept clips only get captions (read from the published shards);
caption_match then scores the new captions with CLIP, its scores enter the decision and the funnel
(re-decided by --refilter without decoding), and where no CLIP weights are configured the reason is
recorded per clip."""
from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from caption_fixtures import job_config, make_dataset

from reelforge.config import load_config
from reelforge.curate.pipeline import BuildConfig, run_build, run_refilter
from reelforge.curate.stages.caption_match import CaptionMatchConfig
from reelforge.recaption.build import SCORES_FILE
from reelforge.samples import generate_samples
from reelforge.shards import captions as store


@pytest.fixture(scope="module")
def clip_overrides(tmp_path_factory):
    from reelforge.curate.clip_models import save_random_clip
    cfg_path, ckpt = save_random_clip(tmp_path_factory.mktemp("clip"), "recaption-tiny-clip")
    return ["curate.filters.caption_match.model=recaption-tiny-clip",
            f"curate.filters.caption_match.model_config={cfg_path}",
            f"curate.filters.caption_match.pretrained={ckpt}", "curate.filters.caption_match.min_similarity=-1",
            "curate.filters.caption_match.device=cpu"]


def _overrides(model):
    return ["ray.dashboard=false", "ray.progress_bars=false", "ray.num_cpus=2", "curate.split.min_seconds=0.5",
            "report=false", "recaption.enabled=true", f"recaption.captioner.model={model}",
            "recaption.captioner.batch_size=4", "recaption.captioner.generation.max_new_tokens=10",
            "recaption.captioner.generation.min_new_tokens=8", "recaption.frames.num_frames=4",
            "recaption.frames.max_pixels=3136", "recaption.min_words=1", "recaption.actors=1",
            "recaption.actor_cpus=0.5", "recaption.make_default=true"]


@pytest.mark.slow  # a whole build (transcode, scoring) plus captioning: ~1-2 min on 2 cores
def test_build_captions_kept_clips_only_and_caption_match_counts(tmp_path, tiny_vlm, clip_overrides, ray_session):
    raw = tmp_path / "raw"
    generate_samples(raw, preset="test")
    out = tmp_path / "ds"
    cfg = load_config(BuildConfig, None, _overrides(tiny_vlm) + clip_overrides)
    summary = run_build([str(raw)], out, cfg)
    clips = pq.read_table(out / "clips.parquet").to_pylist()
    kept = {r["clip_id"] for r in clips if r["status"] == "ok"}
    removed = {r["clip_id"] for r in clips if r["status"] != "ok"}
    assert kept and removed  # the test preset has clips the filters remove
    version = summary["recaption"]["captions"]["version"]
    rows = [r for r in store.all_rows(out) if r["version"] == version]
    assert {r["clip_id"] for r in rows} == kept  # every kept clip once, no removed clip
    assert store.default_version(out) == version
    # caption_match ran on the new captions (frames decoded from the shards: no aesthetic embeddings here)
    scored = {r["clip_id"]: r for r in clips if r.get("caption_version") == version}
    assert set(scored) == kept and summary["recaption"]["caption_match"]["scored"] >= 1
    assert all(r["caption_match"] is not None or r["caption_match_reason"] for r in scored.values())
    assert summary["funnel"]["caption_match"] == 0  # min_similarity=-1 keeps everything

    strict = load_config(BuildConfig, None, _overrides(tiny_vlm) + clip_overrides +
                         ["curate.filters.caption_match.min_similarity=1.0"])
    refiltered = run_refilter(out, strict)  # re-decided from the stored scores, nothing decoded again
    n_scored = sum(r["caption_match"] is not None for r in scored.values())
    assert refiltered["funnel"]["caption_match"] == n_scored
    after = {r["clip_id"]: r for r in pq.read_table(out / "clips.parquet").to_pylist()}
    assert all(after[c]["reason"].startswith("caption_match:") for c, r in scored.items() if r["caption_match"] is not None)


def test_caption_step_captions_kept_clips_and_records_why_caption_match_did_not_run(tmp_path, tiny_vlm, ray_session):
    """The build's caption step on a built dataset whose index has a filtered clip: only ok clips are
    captioned; with no CLIP weights configured each clip records why it was not scored, and the scores
    file merges into the clip rows the way the build's finish reads it."""
    import pyarrow as pa

    from reelforge.recaption.build import add_caption_scores, caption_build
    from reelforge.shards.index import build_index
    root = make_dataset(tmp_path / "d", n=3)
    clips = pq.read_table(root / "clips.parquet").to_pylist()
    clips[1]["status"] = "filtered"
    pq.write_table(pa.Table.from_pylist(clips), root / "clips.parquet")
    build_index(root)
    result = caption_build(root, job_config(tiny_vlm), CaptionMatchConfig())
    version = result["captions"]["version"]
    assert {r["clip_id"] for r in store.all_rows(root) if r["version"] == version} == {"c00", "c02"}
    assert result["caption_match"]["scored"] == 0 and "no CLIP weights configured" in result["caption_match"]["reasons"][0]
    rows = add_caption_scores(root, [{"clip_id": c} for c in ("c00", "c01", "c02")])
    assert [r.get("caption_version") for r in rows] == [version, None, version]
    assert rows[0]["caption_match"] is None and rows[0]["caption_match_reason"].startswith("caption_match: no CLIP")
    assert pq.read_table(root / SCORES_FILE).num_rows == 2
