"""An S3-compatible server for the storage tests: moto's server mode, started by the test on 127.0.0.1.

``s3`` (session) starts ``moto_server`` on a free port as a subprocess, points the standard AWS
variables at it (fake credentials, ``AWS_ENDPOINT_URL``), and stops only the process it started. Its
request log (werkzeug's access log: one line per HTTP request, ``"GET /bucket/key …"``) is kept so a
test can count what the server really served. ``bucket`` gives each test a fresh bucket; ``ray_s3`` a Ray whose workers see the server.

``azurite`` (session) does the same for Azure Blob with Microsoft's emulator (``npm install azurite``;
found as ``$AZURITE_BLOB`` or ``azurite-blob`` on PATH, skipped when absent, as when adlfs is not
installed), with the emulator's well-known account in ``AZURE_STORAGE_CONNECTION_STRING``;
``container`` gives each test a fresh container.
"""
from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_SESSION_TOKEN": "", "AWS_SECURITY_TOKEN": ""}


@dataclass
class S3Server:
    endpoint: str
    log_path: Path

    def requests(self) -> list[tuple[str, str]]:
        """Every ``(method, path)`` the server has answered so far (query strings stripped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            m = re.search(r'"(?:\x1b\[[0-9;]*m)*(GET|PUT|POST|HEAD|DELETE) (\S+) HTTP', line)
            if m:
                out.append((m.group(1), m.group(2).split("?", 1)[0]))
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    pytest.importorskip("moto", reason="moto is not installed (pip install 'moto[server]'): no S3 server to test on")
    pytest.importorskip("s3fs", reason="s3fs is not installed: s3:// URLs cannot be opened")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("moto") / "requests.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-c", "from moto.server import main; main()", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
        os.environ.update(AWS_ENV, AWS_ENDPOINT_URL=endpoint)
        try:
            yield S3Server(endpoint, log_path)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        _stop(proc, log)


def _stop(proc: subprocess.Popen, log) -> None:
    """End a server this session started (never one it did not), then close its log."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


_names = itertools.count()


@pytest.fixture
def bucket(s3) -> str:
    """A new empty bucket on the test server; returns its name."""
    import s3fs

    name = f"reelforge-test-{os.getpid()}-{next(_names)}"
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.mkdir(name)
    return name


@pytest.fixture(scope="module")
def ray_s3(s3):
    """A Ray of our own whose workers have the S3 variables: a Ray started earlier in the session would
    not have them, and ``address="local"`` keeps a plain ``ray.init`` from joining a cluster that another
    test started with ``ray start`` on this machine."""
    import os

    import ray

    from reelforge.cluster import quiet_ray_data, shutdown_ray

    shutdown_ray()
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    ray.init(address="local", num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env},
             logging_level="WARNING")
    quiet_ray_data()
    yield
    shutdown_ray()


# the emulator's fixed development account (documented by Microsoft; it opens nothing real)
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.fixture(scope="session")
def azurite(tmp_path_factory):
    pytest.importorskip("adlfs", reason="adlfs is not installed (pip install adlfs): az:// URLs cannot be opened")
    exe = os.environ.get("AZURITE_BLOB") or shutil.which("azurite-blob")
    if not exe:
        pytest.skip("the Azure Blob emulator is not installed (npm install azurite; put azurite-blob on PATH "
                    "or its path in AZURITE_BLOB)")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("azurite") / "azurite.log"
    log = open(log_path, "wb")
    # (--inMemoryPersistence never came up here: the blobs go to the test's temp dir instead)
    proc = subprocess.Popen([exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--disableTelemetry",
                             "--skipApiVersionCheck", "--loose", "--location", str(log_path.parent)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
    try:
        deadline = time.monotonic() + 60   # node starts it in 3 s on an idle box, 17 s at load 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"azurite did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
        saved = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
        os.environ["AZURE_STORAGE_CONNECTION_STRING"] = (
            f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={endpoint};")
        try:
            yield endpoint
        finally:
            if saved is None:
                os.environ.pop("AZURE_STORAGE_CONNECTION_STRING", None)
            else:
                os.environ["AZURE_STORAGE_CONNECTION_STRING"] = saved
    finally:
        _stop(proc, log)


@pytest.fixture
def container(azurite) -> str:
    """A new empty container on the emulator; returns its name (3-63 lowercase letters, digits, dashes)."""
    import adlfs

    name = f"reelforge-test-{os.getpid()}-{next(_names)}"
    adlfs.AzureBlobFileSystem(skip_instance_cache=True).mkdir(name)
    return name
