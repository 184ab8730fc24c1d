"""`reelforge build` into a real full, then read-only, filesystem: one line naming the path and what was
committed, exit 3, no ``.tmp`` left; after space is freed the same command resumes to exactly the clips
of an uninterrupted build. A 160 KiB tmpfs in a private mount namespace (``unshare -rm``: no root)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

SETS = ["ray.num_cpus=2", "ray.dashboard=false", "ray.progress_bars=false", "shards.target_bytes=60000",
        "curate.split.min_seconds=0.5", "report=false"]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare")
def test_full_then_read_only_output_then_exact_resume(tmp_path):
    from reelforge.samples import generate_samples

    raw = tmp_path / "raw"
    generate_samples(raw, preset="test")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    build = " ".join([str(Path(sys.executable).parent / "reelforge"), "build", "--input", str(raw), "--output",
                      str(mnt / "ds")] + [f"--set {s}" for s in SETS])
    script = f"""
mount -t tmpfs -o size=160k tmpfs {mnt} || exit 100
{build} > {tmp_path}/1.out 2> {tmp_path}/1.err; echo "full rc=$?"
find {mnt} -name '*.tmp*' | sed 's/^/left: /'
mount -o remount,ro {mnt}
{build} > {tmp_path}/2.out 2> {tmp_path}/2.err; echo "read-only rc=$?"
mount -o remount,rw,size=50m {mnt}
{build} > {tmp_path}/3.out 2> {tmp_path}/3.err; echo "resumed rc=$?"
cp {mnt}/ds/clips.parquet {tmp_path}/resumed.parquet
"""
    proc = subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=900)
    if proc.returncode == 100 or "unshare:" in proc.stderr:
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()[:200]}")
    assert proc.stdout.splitlines()[:3] == ["full rc=3", "read-only rc=3", "resumed rc=0"], proc.stdout

    def ours(name):  # our lines on stderr (Ray's own log lines aside)
        return [ln for ln in (tmp_path / name).read_text().splitlines() if ln.startswith("reelforge:")]

    (full,) = ours("1.err")
    assert "No space left on device; committed before it:" in full and "Traceback" not in (tmp_path / "1.err").read_text()
    assert full.startswith(f"reelforge: cannot write {mnt}/ds/")
    (ro,) = ours("2.err")
    assert ro.startswith(f"reelforge: cannot write {mnt}/ds") and "Read-only file system" in ro

    clean = tmp_path / "clean"
    subprocess.run(build.replace(str(mnt / "ds"), str(clean)).split(), check=True, capture_output=True, timeout=900)
    ids = lambda p: sorted((r["clip_id"], r["status"]) for r in pq.read_table(p).to_pylist())  # noqa: E731
    assert ids(tmp_path / "resumed.parquet") == ids(clean / "clips.parquet")
