"""A default build (no CLIP weights configured) never imports torch: not in the driver's planning, not in
the per-video task that a worker builds (its model stages run on onnxruntime; the aesthetic stage only
records its skip). torch's import is 2-3 s of CPU per process (BENCHMARKS.md, issue 12)."""
import subprocess
import sys

SCRIPT = r"""
import sys
import numpy as np
from reelforge.cli import _load_build_config
from reelforge.curate.pipeline import stage_specs
from reelforge.curate.stage_list import skipped
from reelforge.curate.video_task import VideoTask

cfg = _load_build_config(None, [])
assert "aesthetic" in skipped(cfg.curate)
task = VideoTask(sys.argv[1], stage_specs(cfg.curate, "video"), stage_specs(cfg.curate, "clip"), cfg.shards)
from reelforge.curate.stages.aesthetic import AestheticStage
stage = AestheticStage(cfg.curate.filters.aesthetic)
out = stage({"status": ["ok"], "frames": [np.zeros((2, 32, 32, 3), np.uint8)]})
assert out["aesthetic_skip"][0].startswith("aesthetic: no CLIP weights"), out
print(sorted(m for m in ("torch", "open_clip") if m in sys.modules))
"""


def test_a_default_build_task_imports_no_torch(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout
