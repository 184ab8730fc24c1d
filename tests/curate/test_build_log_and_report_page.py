"""A build as a job log sees it, and its report as a browser shows it.

The build runs as its own process, stdout and stderr a pipe (as under ``ray job submit``), joined to the
test session's Ray through ``RAY_ADDRESS`` (as a job's entrypoint is). Its log must be a few lines per
phase plus the summary: no Ray Data progress blocks. Its ``report.html`` is then opened in headless
Chromium (Debian's ``chromium``; skipped where absent) over the DevTools protocol: the page loads with no
console error or failed resource, every thumbnail decodes, a screenshot is taken, and the funnel on the
page matches ``clips.parquet``.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

BIN = Path(sys.executable).parent
# what Ray Data prints when its progress is on (a block of these every few seconds in a non-tty)
RAY_DATA_PROGRESS = ("Running Dataset", "Dataset dataset_", "MapBatches(", "Execution plan", "Starting execution")


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    import ray

    from reelforge.samples import generate_samples

    root = tmp_path_factory.mktemp("logged_build")
    generate_samples(root / "raw", preset="test")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_ADDRESS=ray.get_runtime_context().gcs_address, RAY_AUTH_MODE="token",
               REELFORGE_PROGRESS_SECONDS="5")
    t0 = time.time()
    out = subprocess.run([str(BIN / "reelforge"), "build", "--input", str(root / "raw"), "--output", str(root / "ds"),
                          "--set", "curate.split.min_seconds=0.5"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    return root / "ds", out.stdout, time.time() - t0


def test_job_log_has_one_line_per_phase_and_the_summary(built):
    ds, log, wall = built
    lines = [ln for ln in log.replace("\r", "\n").splitlines() if ln.strip()]
    leaked = [ln for ln in lines if any(p in ln for p in RAY_DATA_PROGRESS)]
    assert not leaked, "\n".join(leaked[:20])
    summary = lines.index("== reelforge build summary ==")
    progress = [ln for ln in lines[:summary] if ln.startswith(("videos:", "clips:"))]
    assert progress and progress[-1].split(":")[0] in ("videos", "clips") and "done" in progress[-1]
    # one line every 5 s per phase at most, plus its last line; the summary is one screen
    assert len(progress) <= wall / 5 + 4, progress
    assert len(lines[:summary]) <= len(progress) + 8, "\n".join(lines[:summary])
    assert len(lines) - summary <= 40 and (ds / "report.html").is_file()


# ---- the report in Chromium, over the DevTools protocol ------------------------------------------------

FUNNEL_JS = """(() => {
  const t = [...document.querySelectorAll('table')].find(t => t.rows[0] && t.rows[0].cells[0].textContent === 'step');
  return JSON.stringify([...t.rows].slice(1).map(r => [r.cells[0].textContent, Number(r.cells[1].textContent)]));
})()"""
IMAGES_JS = "JSON.stringify([...document.images].map(i => [i.complete, i.naturalWidth]))"


async def _inspect(ws_url: str, page_url: str, png: Path) -> dict:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.ws_connect(ws_url, max_msg_size=0) as ws:
        ids, errors, replies = iter(range(1, 10_000)), [], {}

        async def call(method: str, **params) -> dict:
            i = next(ids)
            await ws.send_json({"id": i, "method": method, "params": params})
            while i not in replies:
                await pump()
            return replies.pop(i)

        async def pump() -> None:
            msg = json.loads((await ws.receive(timeout=60)).data)
            if "id" in msg:
                replies[msg["id"]] = msg.get("result", msg.get("error"))
            elif msg.get("method") == "Runtime.exceptionThrown":
                errors.append(msg["params"]["exceptionDetails"].get("text"))
            elif msg.get("method") == "Runtime.consoleAPICalled" and msg["params"]["type"] in ("error", "assert"):
                errors.append(str(msg["params"]["args"]))
            elif msg.get("method") == "Log.entryAdded" and msg["params"]["entry"]["level"] == "error":
                errors.append(msg["params"]["entry"].get("text"))
            elif msg.get("method") == "Page.loadEventFired":
                replies["load"] = True

        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call("Page.navigate", url=page_url)
        while "load" not in replies:
            await pump()
        funnel = json.loads((await call("Runtime.evaluate", expression=FUNNEL_JS))["result"]["value"])
        images = json.loads((await call("Runtime.evaluate", expression=IMAGES_JS))["result"]["value"])
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        png.write_bytes(base64.b64decode(shot["data"]))
        return {"funnel": funnel, "images": images, "errors": errors}


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")


def test_report_in_headless_chromium(built, tmp_path):
    from reelforge.curate.filters import filter_name

    ds, _, _ = built
    profile = tmp_path / "profile"
    browser = subprocess.Popen([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,900",
                                "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not port_file.is_file() or len(port_file.read_text().split()) < 2:
            assert time.time() < deadline and browser.poll() is None, "chromium did not start"
            time.sleep(0.2)
        port = port_file.read_text().split()[0]
        import urllib.request
        pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        ws_url = next(p["webSocketDebuggerUrl"] for p in pages if p["type"] == "page")
        png = tmp_path / "report.png"
        seen = asyncio.run(_inspect(ws_url, (ds / "report.html").resolve().as_uri(), png))
    finally:
        browser.terminate()
        browser.wait(timeout=30)

    assert seen["errors"] == []
    assert seen["images"] and all(done and width > 0 for done, width in seen["images"]), seen["images"]
    import cv2
    shot = cv2.imread(str(png))
    assert shot is not None and shot.shape[1] >= 1000 and shot.shape[0] > 900 and shot.std() > 10

    clips = pq.read_table(ds / "clips.parquet", columns=["status", "reason"]).to_pylist()
    status = Counter(r["status"] for r in clips)
    removed = Counter(filter_name(r["reason"]) for r in clips if r["status"] == "filtered")
    page = dict((name.split(" (")[0], n) for name, n in seen["funnel"])
    assert page["planned"] == len(clips) and page["kept"] == status["ok"] and page["failed"] == status["failed"]
    assert {k[len("removed by "):]: v for k, v in page.items() if k.startswith("removed by ") and v} == dict(removed)
    assert status["ok"] > 0 and sum(removed.values()) > 0  # the funnel has something to show
