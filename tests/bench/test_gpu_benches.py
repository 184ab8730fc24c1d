"""The GPU suite's command lines on CPU at tiny sizes: what must hold before device time is spent on them
(the device image has no Ray or PyAV, and imports the checkout through bench/gpu_suite.sh's symlinks)."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def test_suite_imports_the_checkout_through_its_symlink_folder(tmp_path):
    # every package-dir entry of pyproject.toml must be mapped (reelforge.configs once was not: the
    # captioning bench died on the GPU machine); -P keeps the checkout's own folder off sys.path
    env = {**os.environ, "OUT": str(tmp_path), "PY": sys.executable, "ONLY": "^env$"}
    subprocess.run(["bash", str(BENCH / "gpu_suite.sh"), "--tiny"], env=env, check=True, timeout=120,
                   capture_output=True)
    log = (tmp_path / "suite.log").read_text()
    assert "=== env rc=0" in log, log
    assert "/pkg/reelforge/recaption/captioner.py" in log, log


def test_bench_dit_writes_both_rows_with_honest_flops(tmp_path):
    out = tmp_path / "dit.jsonl"
    subprocess.run([sys.executable, str(BENCH / "bench_dit.py"), "--preset", "DiT-nano", "--latent", "2x8x8",
                    "--channels", "4", "--patch", "1", "2", "2", "--batch", "2", "--text-len", "8",
                    "--text-dim", "32", "--steps", "2", "--threads", "1", "--json", str(out)],
                   check=True, timeout=180, capture_output=True, cwd=ROOT)
    r = json.loads(out.read_text().splitlines()[-1])
    from reelforge.train.dit.model import DiTConfig, flops_per_sample
    cfg = DiTConfig.from_preset("DiT-nano", in_channels=4, text_dim=32, patch=[1, 2, 2])
    assert r["tokens_per_sample"] == 2 * 4 * 4
    assert r["gflop_per_sample"] == round(flops_per_sample(cfg, (2, 8, 8), 8) / 1e9, 2)
    for row in ("baseline", "trainer"):
        assert r[row]["step_s"] > 0 and r[row]["samples_per_s"] == pytest.approx(2 / r[row]["step_s"], rel=0.01)
    # the SDPA spy saw both attentions, with the cross-attention's text length
    assert any(s.startswith("self:") for s in r["sdpa_inputs"]) and any(s.startswith("cross:") for s in r["sdpa_inputs"])
    assert r["peak_tflops_datasheet"] is None and "mfu" not in r["trainer"]    # no MFU claimed on a CPU


def test_bench_caption_no_ray_without_pyav(tmp_path, monkeypatch):
    # as on the GPU machine: no PyAV, so synthetic frames, and the model alone in this process
    monkeypatch.setitem(sys.modules, "av", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = importlib.util.spec_from_file_location("bench_caption_under_test", BENCH / "bench_caption.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "caption.json"
    assert mod.main(["--no-ray", "--clips", "3", "--loop-clips", "2", "--batch", "1,3", "--tokens", "5",
                     "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["source"].startswith("synthetic")
    assert r["loop"]["clips"] == 2 and r["loop"]["tokens"] == 2 * 5      # every caption forced to 5 tokens
    assert {k: (v["clips"], v["tokens"]) for k, v in r["batched"].items()} == {"1": (3, 15), "3": (3, 15)}
    assert r["prompt_tokens_per_clip"] > 0
    with pytest.raises(SystemExit):       # a batch list only where it is used
        mod.main(["--batch", "1,3"])
