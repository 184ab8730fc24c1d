"""The one flat stage list: execution, decision and report order come from it; columns are checked and
skips recorded before Ray starts; configs/build/default.yaml names every key of the config tree."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from reelforge.config import ConfigError, load_config
from reelforge.curate import stage_list
from reelforge.curate.filters import FILTER_ORDER, build_filter_stages
from reelforge.curate.pipeline import BuildConfig, run_build, stage_specs
from reelforge.curate.stage import Stage
from reelforge.curate.stage_list import STAGES, StageEntry, StageListError, check_columns, skipped

DEFAULT_YAML = Path(__file__).resolve().parents[2] / "configs" / "build" / "default.yaml"


def test_execution_decisions_and_report_follow_the_one_list():
    from reelforge.curate.report import numbers as report

    filters = [e.name for e in STAGES if e.sections and e.sections[0].startswith("filters.")]
    assert list(FILTER_ORDER) == filters
    cfg = BuildConfig().curate
    ray_order = [s.cls.name for s in stage_specs(cfg, "video") + stage_specs(cfg, "clip")]
    assert ray_order == [e.name if e.cls is None else e.cls.name for e in STAGES if e.name in ray_order]
    assert [s.cls.name for s in build_filter_stages(cfg.filters)] == [n for n in ray_order if n in filters]
    assert report._SCORERS == tuple(e.cls for e in STAGES if e.cls is not None and e.name in filters)
    # every filter section of the config has a list entry and the other way round
    assert set(filters) == {f.name for f in dataclasses.fields(cfg.filters)}


def test_the_default_stages_fit_together():
    check_columns(BuildConfig().curate)


class _NeedsMissing(Stage):
    name = "needs_missing"
    inputs = ("mp4", "colour_grade")
    outputs = ("graded",)


def test_a_stage_needing_a_column_no_earlier_stage_makes_is_a_config_error(monkeypatch, tmp_path):
    entries = list(STAGES)
    entries.insert([e.name for e in entries].index("basic"), StageEntry("needs_missing", "clip", _NeedsMissing))
    monkeypatch.setattr(stage_list, "STAGES", tuple(entries))
    with pytest.raises(StageListError, match=r"'needs_missing' needs column\(s\) \['colour_grade'\]"):
        check_columns(BuildConfig().curate)
    assert issubclass(StageListError, ConfigError)  # the CLI prints it as a config error, exit 2
    out = tmp_path / "never"
    with pytest.raises(StageListError):
        run_build([str(tmp_path)], out, BuildConfig())
    assert not out.exists()  # stopped before the output was touched (and before Ray)


def test_enabled_stages_that_cannot_run_are_recorded_not_silent():
    cfg = BuildConfig().curate
    why = skipped(cfg)
    assert set(why) == {"aesthetic", "caption_match", "dedup"}
    assert "pretrained is empty" in why["caption_match"] and "no clip embeddings" in why["dedup"]
    assert "caption_match" not in [s.cls.name for s in stage_specs(cfg, "clip")]
    with_weights = load_config(BuildConfig, None, ["curate.filters.caption_match.pretrained=/w/clip.pt",
                                                   "curate.filters.aesthetic.pretrained=/w/clip.pt"]).curate
    assert "caption_match" in [s.cls.name for s in stage_specs(with_weights, "clip")]
    assert set(skipped(with_weights)) == {"aesthetic"} and "head" in skipped(with_weights)["aesthetic"]
    off = load_config(BuildConfig, None, ["curate.filters.caption_match.enabled=false"]).curate
    assert "caption_match" not in skipped(off)  # disabled is not skipped


def _keys(obj, prefix=""):
    out = set()
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        key = f"{prefix}{f.name}"
        out |= _keys(v, key + ".") if dataclasses.is_dataclass(v) else {key}
    return out


def _yaml_keys(d, prefix=""):
    out = set()
    for k, v in d.items():
        out |= _yaml_keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_default_yaml_names_every_key_of_the_config_tree():
    missing = _keys(BuildConfig()) - _yaml_keys(yaml.safe_load(DEFAULT_YAML.read_text()))
    assert not missing, f"configs/build/default.yaml lacks {sorted(missing)}"
