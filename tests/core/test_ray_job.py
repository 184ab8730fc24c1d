"""The build as a Ray job on a real three-node cluster (slow: starts `ray start` nodes on this machine).

A head and two more nodes, each with its own temp dir, ports and one CPU, so the build's tasks have to
spread; ``ray job submit --working-dir`` runs ``reelforge build`` on it. Checked: the job SUCCEEDED, tasks
finished on more than one node (Ray's state API), every input has a row and ``shards verify`` passes.
Every process the test started is stopped by PID (never ``ray stop``, which would take down every Ray on
the machine, other users' included) and none is left.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
OBJECT_STORE = 100 << 20   # per node: the test's clips are a few MB
# the job's working dir: a snapshot of the sources, not the checkout. Ray hashes a working dir and
# uploads it in two passes; a file edited in between (a shared tree) leaves the job a package name that
# was never uploaded. A user's `--working-dir .` also leaves these out (Ray's working_dir size limit)
SOURCES = ("pyproject.toml", "README.md", "reelforge", "curate", "recaption", "shards", "train", "configs")
# anchored ("/build"): a bare "build" would also drop configs/build/
EXCLUDES = ["/.git", "/.venv", "/.whl", "/out", "/build", "*.egg-info", "__pycache__"]


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _node_ports() -> list[str]:
    keys = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
    return [f"{k}={p}" for k, p in zip(keys, _free_ports(len(keys)))]


def _processes_of(temp_dirs: list[str]) -> dict[int, str]:
    """pid -> command line of every live process that names one of our temp dirs (GCS, raylets, agents:
    Ray hands each its node's temp or session dir), and of all their descendants (workers retitle
    themselves ``ray::IDLE`` and the like, so only their parentage says whose they are)."""
    procs = {}  # pid -> (ppid, command line)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":
            procs[int(entry.name)] = (int(fields[1]), cmd)
    ours = {pid for pid, (_, cmd) in procs.items() if any(d in cmd for d in temp_dirs)}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in ours} - ours
        ours |= more
        grew = bool(more)
    return {pid: procs[pid][1][:120] for pid in ours}


def _stop(temp_dirs: list[str]) -> dict[int, str]:
    """SIGTERM what we started (and its children), SIGKILL what is still there after 20 s; returns what
    survived."""
    seen: dict[int, str] = {}
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        seen.update(_processes_of(temp_dirs))
        for pid in list(seen):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                seen.pop(pid)
        deadline = time.time() + wait
        while seen and time.time() < deadline:
            time.sleep(0.5)
            seen = {pid: cmd for pid, cmd in seen.items() if _alive(pid)}
    return {**seen, **_processes_of(temp_dirs)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_node(args: list[str], env: dict, temp_dir: str, tries: int = 3) -> None:
    """``ray start`` with fresh ports; tried again after stopping what a failed try left. Ray waits a fixed
    30 s for a new raylet to register, which a machine under heavy load (CI, other jobs) can miss."""
    for attempt in range(tries):
        out = subprocess.run([*args, *_node_ports()], env=env, capture_output=True, text=True, timeout=180)
        if out.returncode == 0:
            return
        _stop([temp_dir])
    raise AssertionError(f"ray start failed {tries}x:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


def _run(args: list[str], env: dict, timeout: int = 180) -> subprocess.CompletedProcess:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args[:3]} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_build_through_ray_job_submit_on_three_nodes(tmp_path):
    from reelforge.samples import generate_samples

    generate_samples(tmp_path / "raw", preset="test")
    inputs = sorted(str(p) for p in (tmp_path / "raw").iterdir() if p.suffix != ".json" and p.suffix != ".txt")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(PATH=f"{BIN}:{env['PATH']}", RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0")
    # short paths: Ray's unix sockets live under the temp dir and a socket path has ~107 characters
    temp_dirs = [tempfile.mkdtemp(prefix=f"rf{i}", dir="/tmp") for i in range(3)]
    gcs_port, dash_port, client_port = _free_ports(3)
    ray = str(BIN / "ray")
    try:
        _start_node([ray, "start", "--head", f"--port={gcs_port}", "--num-cpus=1", f"--temp-dir={temp_dirs[0]}",
                     "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}",
                     f"--ray-client-server-port={client_port}", f"--object-store-memory={OBJECT_STORE}",
                     "--disable-usage-stats"], env, temp_dirs[0])
        for i in (1, 2):
            _start_node([ray, "start", f"--address=127.0.0.1:{gcs_port}", "--num-cpus=1", f"--temp-dir={temp_dirs[i]}",
                         f"--object-store-memory={OBJECT_STORE}", "--disable-usage-stats"], env, temp_dirs[i])
        address = f"http://127.0.0.1:{dash_port}"
        work = tmp_path / "src"
        work.mkdir()
        for name in SOURCES:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(ROOT / name, work / name)
        runtime_env = {"working_dir": str(work), "excludes": EXCLUDES}
        job = subprocess.run(
            [ray, "job", "submit", f"--address={address}", "--runtime-env-json", json.dumps(runtime_env), "--",
             "reelforge", "build", "configs/build/default.yaml", "--input", str(tmp_path / "raw"),
             "--output", str(tmp_path / "ds")],
            env=env, capture_output=True, text=True, timeout=900)
        log = job.stdout + job.stderr
        assert job.returncode == 0 and re.search(r"Job '\w+' succeeded", log), log[-5000:]
        assert "Ray cluster" in log  # the build joined the cluster instead of starting its own Ray
        assert "Running Dataset" not in log and "MapBatches(" not in log  # no Ray Data progress blocks

        tasks = json.loads(_run([ray, "list", "tasks", f"--address={address}", "--format=json", "--detail",
                                 "--limit=10000", "--filter", "state=FINISHED"], env).stdout)
        nodes = {t["node_id"] for t in tasks if t.get("node_id") and t.get("type") != "DRIVER_TASK"}
        assert len(nodes) >= 2, f"every finished task ran on one node: {nodes}"
    finally:
        left = _stop(temp_dirs)
        if not left:  # the nodes' session logs: kept only when something is still running in them
            for d in temp_dirs:
                shutil.rmtree(d, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"

    videos = pq.read_table(tmp_path / "ds" / "videos.parquet").to_pylist()
    assert sorted(v["path"] for v in videos) == inputs
    assert all(v["status"] in ("ok", "filtered") for v in videos), videos
    verify = subprocess.run([str(BIN / "reelforge"), "shards", "verify", str(tmp_path / "ds")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
