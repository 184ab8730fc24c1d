"""The same build command as a Ray job on a `ray start` cluster (slow: starts a real head node)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_build_through_ray_job_submit(tmp_path):
    from reelforge.samples import generate_samples

    generate_samples(tmp_path / "raw", preset="test")
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", RAY_AUTH_MODE="token")
    subprocess.run([str(BIN / "ray"), "start", "--head", "--num-cpus", "2", "--dashboard-host", "127.0.0.1",
                    "--disable-usage-stats"], check=True, env=env, capture_output=True, timeout=120)
    try:
        job = subprocess.run(
            [str(BIN / "ray"), "job", "submit", "--address", "http://127.0.0.1:8265", "--working-dir", str(ROOT),
             "--", "reelforge", "build", "configs/build/default.yaml", "--input", str(tmp_path / "raw"),
             "--output", str(tmp_path / "ds"), "--set", "ray.progress_bars=false"],
            env=env, capture_output=True, text=True, timeout=600)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "Ray cluster" in job.stdout
    finally:
        subprocess.run([str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120)
    videos = pq.read_table(tmp_path / "ds" / "videos.parquet")
    assert videos.num_rows == 4
