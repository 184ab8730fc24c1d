"""Basic bounds: derived columns and the reasons they produce."""
import pytest

from reelforge.curate.stages.basic import BasicConfig, BasicStage


def _row(**kw):
    row = {"clip_id": "c", "status": "ok", "reason": None, "width": 320, "height": 240,
           "src_width": 640, "src_height": 480, "duration_s": 4.0, "fps": 25.0}
    row.update(kw)
    return row


def test_derived_columns_and_pass():
    out = BasicStage()(dict((k, [v]) for k, v in _row().items()))
    assert out["aspect_ratio"] == [pytest.approx(320 / 240)]
    assert out["short_side"] == [480]  # judged on the source, not the downscaled clip
    row = {k: v[0] for k, v in out.items()}
    assert BasicConfig().check(row) is None


@pytest.mark.parametrize("change, reason", [
    ({"duration_s": 0.5}, "basic: duration_s=0.5 < min 1"),
    ({"duration_s": 300.0}, "basic: duration_s=300 > max 120"),
    ({"src_width": 100, "src_height": 80}, "basic: short_side=80 < min 120"),
    ({"fps": 5.0}, "basic: fps=5 < min 10"),
    ({"width": 1000, "height": 200}, "basic: aspect_ratio=5 > max 2.5"),
])
def test_each_bound_names_filter_and_value(change, reason):
    row = _row(**change)
    row.update(BasicStage().process_row(row))
    assert BasicConfig().check(row) == reason


def test_filtered_rows_are_scored_failed_rows_are_not():
    batch = {k: [v, v] for k, v in _row().items()}
    batch["status"] = ["filtered", "failed"]
    out = BasicStage()(batch)
    assert out["aspect_ratio"][0] is not None and out["aspect_ratio"][1] is None


def test_config_validation():
    with pytest.raises(ValueError, match="max_duration_s"):
        BasicConfig(min_duration_s=10, max_duration_s=5)
    with pytest.raises(ValueError, match="min_aspect"):
        BasicConfig(min_aspect=3.0, max_aspect=2.0)
