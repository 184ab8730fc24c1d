"""Thresholds over score columns: apply, funnel, and re-filtering a built dataset without decoding."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from reelforge.config import ConfigError, from_dict
from reelforge.curate.dedup import write_embeddings
from reelforge.curate.filters import FILTER_ORDER, FiltersConfig, apply_filters, build_filter_stages, decide_all, funnel
from reelforge.curate.stages.aesthetic import AestheticStage
from reelforge.curate.stages.basic import BasicStage


def _row(cid, **scores):
    row = {"clip_id": cid, "status": "ok", "reason": None, "duration_s": 4.0, "short_side": 240, "fps": 25.0,
           "aspect_ratio": 1.33, "border_area": 0.0, "exposure_mean": 0.4, "exposure_dark_frac": 0.0,
           "exposure_bright_frac": 0.0, "sharpness": 0.3, "motion_mean": 0.01, "motion_jitter": 0.0,
           "aesthetic": 5.5, "text_area": 0.0, "nsfw": 0.01, "caption_match": None}
    row.update(scores)
    return row


ROWS = [
    _row("good"),
    _row("dark_static", exposure_mean=0.02, motion_mean=0.0),  # two failures: the earlier filter names it
    _row("static", motion_mean=0.0001),
    _row("ugly", aesthetic=3.9),
    _row("subs", text_area=0.05),
    _row("broken", status="failed", reason="transcode: no frame decoded"),
    _row("short_span", status="filtered", reason="split: shorter than 2 s"),  # another stage's call
    _row("was_static", status="filtered", reason="motion: motion_mean=0.0001 < min 0.0005", motion_mean=0.01),
]


def test_first_failing_filter_in_order_gives_the_reason():
    out = {r["clip_id"]: r for r in apply_filters(ROWS, FiltersConfig())}
    assert out["good"]["status"] == "ok" and out["good"]["reason"] is None
    assert out["dark_static"]["reason"] == "exposure: exposure_mean=0.02 < min 0.08"
    assert out["static"]["reason"] == "motion: motion_mean=0.0001 < min 0.0005"
    assert out["ugly"]["reason"] == "aesthetic: aesthetic=3.9 < min 4.5"
    assert out["subs"]["reason"] == "text_overlay: text_area=0.05 > max 0.01"
    assert out["broken"]["status"] == "failed"
    assert out["short_span"]["reason"] == "split: shorter than 2 s"
    assert out["was_static"]["status"] == "ok"  # its score now passes: re-judged, not sticky


def test_funnel_counts_each_filter():
    counts = funnel(apply_filters(ROWS, FiltersConfig()))
    assert list(counts)[:len(FILTER_ORDER)] == list(FILTER_ORDER)
    assert counts["exposure"] == 1 and counts["motion"] == 1 and counts["aesthetic"] == 1
    assert counts["text_overlay"] == 1 and counts["split"] == 1 and counts["nsfw"] == 0


def test_disabled_filters_do_not_judge():
    cfg = from_dict(FiltersConfig, {"motion": {"enabled": False}, "aesthetic": {"min_score": 3.0}})
    out = {r["clip_id"]: r for r in apply_filters(ROWS, cfg)}
    assert out["static"]["status"] == "ok" and out["ugly"]["status"] == "ok"
    assert [s.cls.name for s in build_filter_stages(cfg)] == ["basic", "borders", "exposure", "aesthetic",
                                                             "text_overlay", "nsfw", "near_dup"]


def test_table_in_table_out_with_the_same_schema():
    table = pa.Table.from_pylist(ROWS)
    out = apply_filters(table, FiltersConfig())
    assert out.schema == table.schema and out.num_rows == table.num_rows
    assert out.column("status").to_pylist() == [r["status"] for r in apply_filters(ROWS, FiltersConfig())]


def test_redeciding_reruns_dedup_over_the_survivors(tmp_path):
    # (the dataset-level refilter, which rewrites shards, index and summary too, is tested in
    # test_consistency.py; this is the decision it makes)
    rng = np.random.default_rng(0)
    rows = apply_filters(ROWS, FiltersConfig())
    emb = rng.standard_normal((len(rows), 16)).astype(np.float32)
    emb[2] = emb[0] + 0.01  # "static" is a near copy of "good"
    for r, e in zip(rows, emb):
        r["clip_embedding"] = e.tolist()
    write_embeddings(rows, tmp_path / "embeddings.parquet")
    rows = [{k: v for k, v in r.items() if k != "clip_embedding"} for r in rows]

    # loosen motion: "static" survives the filters and is then a duplicate of the better "good"
    cfg = from_dict(FiltersConfig, {"motion": {"min_motion": 0.0}})
    out = decide_all(rows, cfg, tmp_path / "embeddings.parquet")
    by_id = {r["clip_id"]: r for r in out}
    assert len(out) == len(ROWS)  # every row kept
    assert by_id["static"]["reason"].startswith("dedup: cosine=") and by_id["static"]["dedup_of"] == "good"
    counts = funnel(out)
    assert counts["dedup"] == 1 and counts["motion"] == 0 and counts["exposure"] == 1
    # deciding again from the decided rows gives the same answer (old dedup columns are recomputed)
    assert funnel(decide_all(out, cfg, tmp_path / "embeddings.parquet")) == counts
    # without embeddings, no dedup: "static" stays
    assert {r["clip_id"]: r["status"] for r in decide_all(rows, cfg, None)}["static"] == "ok"


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="motion.max_jiter"):
        from_dict(FiltersConfig, {"motion": {"max_jiter": 0.1}})
    with pytest.raises(ConfigError, match="exposure"):
        from_dict(FiltersConfig, {"exposure": {"min_mean": 0.9, "max_mean": 0.2}})


def test_stage_specs_build_without_loading_models():
    specs = build_filter_stages(FiltersConfig())
    assert specs[0].cls is BasicStage and any(s.cls is AestheticStage for s in specs)
    assert all(s.cls.resources(*s.args).batch_size >= 1 for s in specs)
