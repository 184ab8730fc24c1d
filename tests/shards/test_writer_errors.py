"""A full or read-only output: one clear error naming the path and what was committed, no ``.tmp`` left
behind, and a later writer (the resume) carries on after the last committed shard."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

from reelforge.shards.writer import ShardWriteError, ShardWriter, ShardWriterConfig

CFG = ShardWriterConfig(target_bytes=4096, max_open_seconds=0)


def test_disk_full_mid_shard_is_one_line_and_leaves_no_tmp(tmp_path):
    w = ShardWriter(tmp_path, CFG)
    w.write("a", {"bin": bytes(5000)})  # over target: committed as shard-000000.tar
    # the next shard's file is /dev/full: every write to it fails with a real ENOSPC from the kernel
    os.symlink("/dev/full", tmp_path / "shard-000001.tar.tmp")
    with pytest.raises(ShardWriteError) as info:
        w.write("b", {"bin": bytes(20_000)})
    err = info.value
    assert err.errno == errno.ENOSPC and err.shards == 1 and err.samples == 1
    assert str(err) == (f"cannot write {tmp_path / 'shard-000001.tar.tmp'}: No space left on device; committed "
                        f"before it: 1 shard(s), 1 sample(s); the unfinished shard was removed")
    assert sorted(os.listdir(tmp_path)) == ["shard-000000.tar"]
    # resume: a new writer continues after the committed shard, and the old one is intact
    with ShardWriter(tmp_path, CFG) as again:
        again.write("b", {"bin": bytes(20_000)})
    with tarfile.open(tmp_path / "shard-000000.tar") as t0, tarfile.open(tmp_path / "shard-000001.tar") as t1:
        assert t0.getnames() == ["a.bin"] and t1.getnames() == ["b.bin"]


def test_an_output_that_refuses_the_shard_file_is_a_clear_error(tmp_path, monkeypatch):
    w = ShardWriter(tmp_path, CFG)
    real_open = tarfile.open

    def read_only(name, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(name))
        return real_open(name, mode, *a, **k)

    monkeypatch.setattr(tarfile, "open", read_only)
    with pytest.raises(ShardWriteError, match=r"shard-000000\.tar\.tmp: Read-only file system; committed before "
                                              r"it: 0 shard\(s\), 0 sample\(s\)") as info:
        w.write("a", {"bin": b"x"})
    assert info.value.errno == errno.EROFS and not os.listdir(tmp_path)


def test_cli_prints_one_line_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    import reelforge.curate.pipeline as pipeline
    from reelforge.cli import main

    def full(*a, **k):
        raise ShardWriteError(tmp_path / "shard-000003.tar.tmp", OSError(errno.ENOSPC, "No space left on device"),
                              3, 120)

    monkeypatch.setattr(pipeline, "run_build", full)
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"reelforge: cannot write {tmp_path / 'shard-000003.tar.tmp'}: No space left on device; "
                          f"committed before it: 3 shard(s), 120 sample(s)")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "config.yaml"))

    monkeypatch.setattr(pipeline, "run_build", read_only)
    assert main(["build", "--input", str(tmp_path), "--output", str(tmp_path)]) == 3
    assert capsys.readouterr().err.startswith(f"reelforge: cannot write {tmp_path / 'config.yaml'}: Read-only file system")


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux unshare")
def test_a_real_full_and_a_real_read_only_filesystem(tmp_path):
    """A 64 KiB tmpfs in a private mount namespace (no root needed): ENOSPC, then EROFS, from the kernel."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = f"""
import errno, os, sys
from reelforge.shards.writer import ShardWriteError, ShardWriter, ShardWriterConfig
cfg = ShardWriterConfig(target_bytes=4096, max_open_seconds=0)
w = ShardWriter({str(mnt)!r}, cfg)
try:
    for i in range(100):
        w.write(f"k{{i}}", {{"bin": bytes(10_000)}})
except ShardWriteError as e:
    print("FULL", e.errno == errno.ENOSPC, e.shards, sorted(os.listdir({str(mnt)!r}))[-1], e)
os.system("mount -o remount,ro {mnt}")
try:
    ShardWriter({str(mnt)!r}, cfg).write("late", {{"bin": b"x"}})
except ShardWriteError as e:
    print("RO", e.errno == errno.EROFS, e)
"""
    script = tmp_path / "fill.py"
    script.write_text(code)
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {mnt} && "
                           f"{sys.executable} {script}"], capture_output=True, text=True, timeout=60)
    if "mount" in proc.stderr and proc.returncode:
        pytest.skip(f"no private mount namespace here: {proc.stderr.strip()[:200]}")
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stderr
    full = next(ln for ln in lines if ln.startswith("FULL"))
    assert full.split()[1] == "True" and int(full.split()[2]) >= 3
    assert full.split()[3].endswith(".tar")  # the last file is a committed shard, never a .tmp
    ro = next(ln for ln in lines if ln.startswith("RO"))
    assert ro.split()[1] == "True" and "Read-only file system" in ro
