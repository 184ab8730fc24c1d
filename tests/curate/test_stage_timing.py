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
