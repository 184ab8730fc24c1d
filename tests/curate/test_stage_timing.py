"""Every stage call records its CPU seconds per row (``cpu_s_<stage>``), batched stages included."""
from __future__ import annotations

import time

from reelforge.curate.stage import CPU_PREFIX, Stage, batch_len, rows_to_batch, row_at


class _Busy(Stage):
    name = "busy"
    outputs = ("x",)

    def process_row(self, row):
        t = time.process_time()
        while time.process_time() - t < 0.02:  # 20 ms of CPU per row
            pass
        return {"x": 1}


class _Batched(_Busy):
    name = "batched"

    def __call__(self, batch):
        rows = [dict(row_at(batch, i), x=2) for i in range(batch_len(batch))]
        t = time.process_time()
        while time.process_time() - t < 0.06:  # 60 ms for the whole batch
            pass
        return rows_to_batch(rows, like=batch)


def test_cpu_seconds_per_row_for_row_and_batched_stages():
    batch = {"status": ["ok", "ok", "failed"], "reason": ["", "", "bad"]}
    out = _Busy()(batch)
    assert out["x"] == [1, 1, None]
    # two rows did the work; the batch's CPU is shared among its three rows
    assert all(0.01 <= v <= 0.03 for v in out[CPU_PREFIX + "busy"])
    out = _Batched()(batch)
    assert out["x"] == [2, 2, 2] and all(0.015 <= v <= 0.04 for v in out[CPU_PREFIX + "batched"])


class _Cheap(Stage):
    """A cheap filter: removes rows whose ``v`` is below 1 (its config's check)."""

    name = "cheap"
    removes_early = True
    outputs = ("v2",)

    def __init__(self, score_removed=False):
        from types import SimpleNamespace

        self.cfg = SimpleNamespace(score_removed=score_removed,
                                   check=lambda row: "cheap: v < 1" if row["v"] < 1 else None)

    def process_row(self, row):
        return {"v2": row["v"] * 2}


class _Model(Stage):
    name = "nsfw"  # one of MODEL_STAGES
    outputs = ("nsfw",)

    def __init__(self):
        self.seen = []

    def __call__(self, batch):
        self.seen += list(batch["v"])
        return dict(batch, nsfw=[0.5] * batch_len(batch))


def test_model_stages_leave_rows_a_cheap_filter_removed_unscored():
    from reelforge.curate.stage import REMOVED_EARLY, UNSCORED

    batch = {"v": [2, 0, 3, 0], "status": ["ok", "ok", "ok", "failed"], "reason": [""] * 4}
    marked = _Cheap()(batch)
    assert marked[REMOVED_EARLY] == ["", "cheap: v < 1", "", ""]  # a failed row is not judged
    model = _Model()
    out = model(marked)
    assert model.seen == [2, 3, 0]  # the removed row never reached the model
    assert out["nsfw"] == [0.5, None, 0.5, 0.5] and out[UNSCORED] == ["", "nsfw", "", ""]
    assert out["v2"] == [4, 0, 6, None] and out[CPU_PREFIX + "nsfw"][1] >= 0
    # score_removed: the cheap filter marks nothing, the model scores every row
    model = _Model()
    out = model(_Cheap(score_removed=True)(batch))
    assert model.seen == [2, 0, 3, 0] and out[UNSCORED] == [""] * 4


def test_a_refilter_cannot_pass_a_clip_left_unscored():
    from reelforge.curate.filters import FiltersConfig, decide
    from reelforge.curate.stages.motion import MotionConfig

    row = {"status": "ok", "reason": None, "motion_mean": 0.0003, "motion_jitter": 0.0, "nsfw": None,
           "removed_early": "motion: motion_mean=0.0003 < min 0.0005", "unscored": "text_overlay,nsfw"}
    status, reason = decide(row, FiltersConfig())
    assert status == "filtered" and reason.startswith("motion:")  # the build's own decision: unchanged
    loose = FiltersConfig(motion=MotionConfig(min_motion=0.0001))
    status, reason = decide(row, loose)
    assert status == "filtered" and reason.startswith("text_overlay: not scored")
    scored = dict(row, removed_early="", unscored="")
    assert decide(scored, loose) == ("ok", None)


def test_nulls_that_come_back_as_nan_are_not_removals():
    """Ray's numpy batches can hand a null text column back as NaN (truthy): not a removal, not a name."""
    from reelforge.curate.stage import REMOVED_EARLY, UNSCORED

    nan = float("nan")
    batch = {"v": [2, 0], "status": ["ok", "ok"], "reason": ["", ""], REMOVED_EARLY: [nan, nan], UNSCORED: [nan, nan]}
    marked = _Cheap()(batch)
    assert marked[REMOVED_EARLY] == ["", "cheap: v < 1"]
    model = _Model()
    out = model(dict(marked, **{UNSCORED: [nan, nan]}))
    assert model.seen == [2] and out[UNSCORED][1] == "nsfw"


def test_a_row_removed_early_costs_a_model_stage_nothing():
    from reelforge.curate.stage import REMOVED_EARLY

    batch = {"v": [2, 0], "status": ["ok", "ok"], "reason": ["", ""], REMOVED_EARLY: ["", "cheap: v < 1"]}
    out = _Model()(batch)
    assert out[CPU_PREFIX + "nsfw"][1] == 0.0 and out[CPU_PREFIX + "nsfw"][0] >= 0.0


def test_parts_written_from_the_columns_concatenate():
    """Manifest parts are parquet files of these rows, concatenated at the finish: the columns must be
    text in every part, also in one where no row was removed (a null column came back from Ray as NaN,
    a float column that no longer concatenated with a text one)."""
    import pyarrow as pa

    from reelforge.curate.manifest import rows_to_table
    from reelforge.curate.stage import REMOVED_EARLY, UNSCORED

    none = _Model()(_Cheap()({"v": [2, 3], "status": ["ok", "ok"], "reason": ["", ""]}))
    some = _Model()(_Cheap()({"v": [2, 0], "status": ["ok", "ok"], "reason": ["", ""]}))
    tables = [rows_to_table([{k: b[k][i] for k in (REMOVED_EARLY, UNSCORED)} for i in range(2)]) for b in (none, some)]
    assert pa.concat_tables(tables).column(UNSCORED).to_pylist() == ["", "", "", "nsfw"]
