"""The output lock and the work record on object storage."""
from __future__ import annotations

import pytest

from reelforge import storage
from reelforge.curate.buildstate import BuildStateError, OutputLock, load_state, save_state


def test_one_build_per_remote_output(s3, bucket):
    out = f"s3://{bucket}/ds"
    with OutputLock(out):
        assert storage.exists(f"{out}/.lock")
        with pytest.raises(BuildStateError, match=r"is in use by another build \(pid \d+ on .*\).*If no build is "
                                                  r"running .*delete s3://.*/ds/\.lock"):
            with OutputLock(out):
                pass
    assert not storage.exists(f"{out}/.lock")
    with OutputLock(out):  # free again
        pass


def test_work_record_round_trip_on_s3(s3, bucket):
    work = f"s3://{bucket}/ds/_work"
    assert load_state(work) is None
    save_state(work, {"videos": {"curate.split.min_seconds": 1.0}})
    assert load_state(work)["settings"] == {"videos": {"curate.split.min_seconds": 1.0}}
